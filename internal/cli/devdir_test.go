package cli

import (
	"log/slog"
	"os"
	"testing"
)

// TestDevDirRemovedOnPanic: a panic in dev's goroutine unwinds through the
// deferred remove, so the directory is gone even though the panic
// continues; ForcedExit removes a directory whose dev is still running.
func TestDevDirRemovedOnPanic(t *testing.T) {
	tmp := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	var path string
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		dd, err := newDevDir(tmp, log)
		if err != nil {
			t.Fatal(err)
		}
		defer dd.remove()
		path = dd.path
		panic("a bug in dev")
	}()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after a panic the directory %s still exists (stat: %v)", path, err)
	}

	dd, err := newDevDir(tmp, log)
	if err != nil {
		t.Fatal(err)
	}
	if stale, ok := staleDevDir(dd.path); ok && stale {
		t.Error("a running dev's directory is reported stale")
	}
	ForcedExit()
	if _, err := os.Stat(dd.path); !os.IsNotExist(err) {
		t.Errorf("after ForcedExit the directory %s still exists (stat: %v)", dd.path, err)
	}
	dd.remove() // later calls do nothing
}
