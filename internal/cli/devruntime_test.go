package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/devdbtest"
)

// TestStateCommandsFindRunningDev: with a running dev recorded in the
// runtime file, dlq and checkpoints reach its devdb without -c or
// MONGODB_URI; a stale record (dead pid) or an explicit -c is ignored.
func TestStateCommandsFindRunningDev(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	dir := t.TempDir()
	cfgPath := writeConfig(t, okConfig) // its mongodb.uri is unreachable
	env := func(lookup map[string]string) (Env, *bytes.Buffer, *bytes.Buffer) {
		var out, errb bytes.Buffer
		return Env{Stdout: &out, Stderr: &errb, RuntimeDir: dir, Version: "v0",
			LookupEnv: func(k string) (string, bool) { v, ok := lookup[k]; return v, ok }}, &out, &errb
	}
	e, _, _ := env(nil)
	forget, err := writeDevRuntime(e, srv.URI(), cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // no triggers.yaml here

	e, out, errb := env(nil)
	if code := Run(context.Background(), []string{"dlq", "list"}, e); code != ExitOK {
		t.Fatalf("dlq list with a running dev: exit %d\n%s%s", code, out, errb)
	}
	if !strings.Contains(out.String(), "no dead letters") || !strings.Contains(errb.String(), "using the running 'changehook dev'") {
		t.Errorf("dlq list output:\n%s%s", out, errb)
	}

	e, out, errb = env(nil)
	if code := Run(context.Background(), []string{"checkpoints", "list"}, e); code != ExitOK {
		t.Fatalf("checkpoints list with a running dev: exit %d\n%s%s", code, out, errb)
	}

	// MONGODB_URI set: the user chose a deployment; the record is not used.
	e, out, errb = env(map[string]string{"MONGODB_URI": "mongodb://127.0.0.1:1/"})
	if code := Run(context.Background(), []string{"dlq", "list"}, e); code == ExitOK || strings.Contains(errb.String(), "using the running") {
		t.Errorf("MONGODB_URI set, yet the dev record was used: exit %d\n%s%s", code, out, errb)
	}

	// A dead pid: the record is stale.
	b, _ := json.Marshal(devRuntime{PID: 1 << 30, URI: srv.URI(), Config: cfgPath})
	if err := os.WriteFile(filepath.Join(dir, devRuntimeFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := readDevRuntime(e); ok {
		t.Error("a record whose process is gone was used")
	}
	// forget removes only its own record.
	forget()
	if _, err := os.Stat(filepath.Join(dir, devRuntimeFile)); err != nil {
		t.Errorf("forget removed another process's record: %v", err)
	}
}
