package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// TestParseErrorsCutTheInput: the errors of the parsers that the admin API
// and the CLI share quote at most the start of what they were given, so
// that a 300 KB query does not come back as a 600 KB error.
func TestParseErrorsCutTheInput(t *testing.T) {
	long := strings.Repeat("x", 100000)
	nested := strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000)
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"document key", func() error { _, err := store.ParseDocumentKey(nested); return err }},
		{"since", func() error { _, err := store.ParseSince(long, time.Now()); return err }},
		{"dead-letter cursor", func() error { _, err := store.ParseDeadLetterCursor("dlc_" + long); return err }},
		{"history cursor", func() error { return store.ValidateAttemptFilter(store.AttemptFilter{After: long}) }},
		{"partition key", func() error { return store.ValidateAttemptFilter(store.AttemptFilter{Trigger: "a/" + long}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); len(msg) > 2000 || !strings.Contains(msg, " bytes)") {
				t.Errorf("error of %d bytes, want the input cut and marked: %.300s", len(msg), msg)
			}
		})
	}
}
