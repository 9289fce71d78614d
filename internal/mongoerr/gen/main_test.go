package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedUpToDate fails when code_string.go differs from what the
// generator writes for codes.go: run `go generate ./internal/mongoerr`.
func TestGeneratedUpToDate(t *testing.T) {
	want, err := generate("../codes.go")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../code_string.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("code_string.go is stale: run go generate ./internal/mongoerr")
	}
}
