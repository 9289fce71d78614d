package proccpu

import (
	"runtime"
	"testing"
	"time"
)

// TestSelfGrows checks that work done by the process shows up in Self.
func TestSelfGrows(t *testing.T) {
	switch runtime.GOOS {
	case "windows", "plan9", "js", "wasip1":
		t.Skip("the process's CPU time is not read on " + runtime.GOOS)
	}
	before := Self()
	x := uint64(1)
	for i := 0; i < 1000 && Self()-before < 2*time.Millisecond; i++ {
		for range 100_000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	if Self() <= before {
		t.Fatalf("Self did not grow after busy work (x=%d)", x)
	}
}
