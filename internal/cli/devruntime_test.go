package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/demo"
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
	forget, err := writeDevRuntime(e, devRuntime{URI: srv.URI(), Config: cfgPath})
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

// runWith runs the command line in-process with its runtime directory (where
// a running dev is recorded) set to rtDir.
func runWith(t *testing.T, rtDir string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := Env{Stdout: &out, Stderr: &errb, Version: "v0", RuntimeDir: rtDir,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	code := Run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// TestFileCommandsFindRunningDev: test and validate, run without -c where
// there is no triggers.yaml, use the configuration of a running dev (the
// README's capture, test --events, validate --events tour in a second
// terminal), saying so on stderr; ./triggers.yaml, when it exists, and -c
// win over it.
func TestFileCommandsFindRunningDev(t *testing.T) {
	rtDir := t.TempDir()
	e := Env{RuntimeDir: rtDir, LookupEnv: func(string) (string, bool) { return "", false }}
	forget, err := writeDevRuntime(e, devRuntime{URI: "mongodb://127.0.0.1:1/?directConnection=true", Config: demo.ConfigName})
	if err != nil {
		t.Fatal(err)
	}
	defer forget()
	dir := t.TempDir()
	t.Chdir(dir)
	events := filepath.Join(dir, "events.jsonl")
	ev := `{"_id": {"_data": "82AB"}, "operationType": "update", "ns": {"db": "lessons", "coll": "inventory"}, "documentKey": {"_id": "apples"}, "fullDocument": {"_id": "apples", "type": "apples", "quantity": 7}}`
	if err := os.WriteFile(events, []byte(ev+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const using = "using the configuration of the running 'changehook dev' (pid "

	code, out, errOut := runWith(t, rtDir, nil, "test", "--trigger", "low_stock", "--events", "events.jsonl")
	if code != ExitOK || !strings.Contains(out, "Only 7 apples left!") || !strings.Contains(errOut, using) {
		t.Errorf("test --events with a running dev: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runWith(t, rtDir, nil, "validate", "--events", "events.jsonl")
	if code != ExitOK || !strings.Contains(out, demo.ConfigName+" is valid") || !strings.Contains(out, "low_stock: matched, payload ok") ||
		!strings.Contains(errOut, using) {
		t.Errorf("validate --events with a running dev: exit %d\n%s%s", code, out, errOut)
	}

	// ./triggers.yaml exists: it is the configuration.
	if err := os.WriteFile(filepath.Join(dir, DefaultConfigFile), []byte(okConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runWith(t, rtDir, nil, "validate")
	if code != ExitOK || !strings.HasPrefix(out, DefaultConfigFile+" is valid") || strings.Contains(errOut, "running") {
		t.Errorf("validate with ./triggers.yaml and a running dev: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.Remove(filepath.Join(dir, DefaultConfigFile)); err != nil {
		t.Fatal(err)
	}
	// -c names the file, even a missing one.
	code, _, errOut = runWith(t, rtDir, nil, "validate", "-c", "other.yaml")
	if code != ExitFailure || strings.Contains(errOut, "running") || !strings.Contains(errOut, "other.yaml does not exist") {
		t.Errorf("validate -c other.yaml with a running dev: exit %d\n%s", code, errOut)
	}
	// No dev running and no file: what to do.
	code, _, errOut = runWith(t, t.TempDir(), nil, "test", "--trigger", "low_stock", "--events", "events.jsonl")
	if code != ExitFailure || !strings.Contains(errOut, "does not exist, and no 'changehook dev' is running") {
		t.Errorf("test without a file or a dev: exit %d\n%s", code, errOut)
	}
}

// TestMissingConfigSaysWhatToDo: every command that reads the
// configuration says, when the file does not exist, where it looked and
// how to get one, without repeating "load configuration: load config".
func TestMissingConfigSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	rtDir := t.TempDir() // no dev running
	for _, args := range [][]string{
		{"run"}, {"dev", "--addr", "127.0.0.1:0"}, {"validate"}, {"test", "--event", "-"}, {"capture", "low_stock"},
		{"dlq", "list"}, {"checkpoints", "list"}, {"history"}, {"cluster", "status"}, {"pause", "low_stock"},
		{"run", "-c", "prod.yaml"}, {"dlq", "list", "-c", "prod.yaml"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runWith(t, rtDir, nil, args...)
			file := filepath.Join(dir, DefaultConfigFile)
			starter := "'changehook init'"
			if slices.Contains(args, "-c") {
				file, starter = filepath.Join(dir, "prod.yaml"), "'changehook init -c prod.yaml'"
			}
			if code != ExitFailure {
				t.Errorf("exit %d, want %d\n%s%s", code, ExitFailure, out, errOut)
			}
			for _, want := range []string{"configuration file " + file + " does not exist", "-c FILE", starter, "'changehook dev --demo'"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if strings.Contains(errOut, "load config") || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr:\n%s", errOut)
			}
		})
	}
}

// TestMongoURIFromTheEnvironment: a file without mongodb.uri connects to
// MONGODB_URI (the README's Kubernetes and systemd examples set only the
// variable), and the URI's password is never printed.
func TestMongoURIFromTheEnvironment(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	cfg := writeConfig(t, `
triggers:
  - name: orders
    database: shop
    webhook: { url: "http://127.0.0.1:1/orders" }
`)
	rtDir := t.TempDir()
	code, out, errOut := runWith(t, rtDir, map[string]string{"MONGODB_URI": srv.URI()}, "checkpoints", "list", "-c", cfg)
	if code != ExitOK {
		t.Errorf("checkpoints list with MONGODB_URI: exit %d\n%s%s", code, out, errOut)
	}
	unreachable := "mongodb://user:hunter2@127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=200"
	code, out, errOut = runWith(t, rtDir, map[string]string{"MONGODB_URI": unreachable}, "run", "-c", cfg, "--admin-addr", "off")
	if code != ExitFailure || !strings.Contains(errOut, "cannot reach MongoDB at mongodb://user:xxxxx@127.0.0.1:1/") {
		t.Errorf("run with an unreachable MONGODB_URI: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Errorf("password printed:\n%s%s", out, errOut)
	}
}

// TestDlqPurgeDryRunSucceeds: purge without --yes is a dry run: it says
// how many would be deleted, deletes nothing, and exits 0 (exit 1 means
// failure).
func TestDlqPurgeDryRunSucceeds(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	cfg := writeConfig(t, fmt.Sprintf(`
mongodb: { uri: %q }
triggers:
  - name: orders
    database: shop
    webhook: { url: "http://127.0.0.1:1/orders" }
`, srv.URI()))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"msg_x"}, "the given ID is no dead letter: nothing would be deleted"},
		{[]string{"--trigger", "orders"}, "would delete 0 dead letters of trigger orders; nothing deleted"},
		{[]string{"--all"}, "would delete 0 dead letters of all triggers; nothing deleted"},
	} {
		args := tc.args
		code, out, errOut := runWith(t, t.TempDir(), nil, append([]string{"dlq", "purge", "-c", cfg}, args...)...)
		if code != ExitOK || !strings.Contains(out, tc.want) {
			t.Errorf("dlq purge %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}

// TestDevConfigVarsFromThisTerminal: a command using the running dev's
// configuration reads its file's ${VAR}s from its own environment (the
// record holds only the file's name, never what the variables held), and
// its note on stderr names them and says so; a file without variables
// gets the note alone.
func TestDevConfigVarsFromThisTerminal(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	withVars := writeConfig(t, `
mongodb: { uri: "${MONGODB_URI}" }
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook:
      url: ${HOOK_URL}
      secret: ${HOOK_SECRET:-whsec_EZQGwCu/jl8apnj/X5Y+X2MOFX/knB2EvA4g1VC4694=}
`)
	plain := writeConfig(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/orders" }
`)
	vars := map[string]string{"HOOK_URL": "http://127.0.0.1:2/here"}
	const varsNote = "; its ${HOOK_URL}, ${HOOK_SECRET} are read from this terminal's environment, not dev's: set them here as for dev\n"
	t.Chdir(t.TempDir()) // no triggers.yaml here
	for _, tc := range []struct {
		name, config string
		args         []string
		want         string // the note on stderr, after the record's pid
	}{
		{"test, a file with variables", withVars, []string{"test", "--trigger", "orders", "--event", "-"},
			": " + withVars + varsNote},
		{"dlq list, a file with variables", withVars, []string{"dlq", "list"},
			": " + srv.URI() + ", " + withVars + varsNote},
		{"validate, a file without", plain, []string{"validate"}, ": " + plain + "\n"},
		{"dlq list, a file without", plain, []string{"dlq", "list"}, ": " + srv.URI() + ", " + plain + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rtDir := t.TempDir()
			forget, err := writeDevRuntime(Env{RuntimeDir: rtDir, LookupEnv: func(string) (string, bool) { return "", false }},
				devRuntime{URI: srv.URI(), Config: tc.config})
			if err != nil {
				t.Fatal(err)
			}
			defer forget()
			code, out, errOut := runWith(t, rtDir, vars, tc.args...)
			want := fmt.Sprintf("(pid %d)%s", os.Getpid(), tc.want)
			if !strings.Contains(errOut, want) || strings.Contains(errOut, "MONGODB_URI") {
				t.Errorf("%v: exit %d\n%s%s\nwant a note ending %q", tc.args, code, out, errOut, want)
			}
		})
	}
}
