package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateBadFiles runs `changehook validate` on a table of bad files
// and compares the complete output: every problem, FILE:LINE:COL, sorted.
func TestValidateBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, file, stdout, stderr string
	}{
		{
			name: "names operations url duration",
			file: `triggers:
  - name: Bad Name
    database: shop
    operations: [insert, upsert]
    webhook: { url: "ftp://x", timeout: 10 parsecs }
`,
			stdout: `F:2:11: name: "Bad Name" must be 1 to 64 characters from a-z, 0-9, _ and -
F:4:26: operations: unknown operation type "upsert" (did you mean "insert"?)
F:5:21: webhook.url: must be an absolute URL starting with http:// or https://
F:5:41: webhook.timeout: "10 parsecs" is not a duration; use a number with a unit such as 500ms, 10s or 1m
`,
			stderr: "F: 4 problems\n",
		},
		{
			name: "env duplicates operators project ordering",
			file: `triggers:
  - name: a
    webhook: { url: "http://h/x", secret: "${NOPE}" }
    match: { qty: { $less: 3 } }
  - name: a
    project: { _id: 0 }
    ordering: random
    webhook: { url: "http://h/x" }
`,
			stdout: `F:3:44: environment variable NOPE is not set (set it, or give a default: ${NOPE:-default})
F:4:21: match: unknown operator: $less (did you mean $lt?)
F:5:11: duplicate trigger name "a" (first declared at line 2)
F:6:14: project: must keep _id (the resume token); MongoDB fails the change stream with ChangeStreamFatalError (280) otherwise
F:7:15: ordering: "random" is not one of strict, per_document, none
`,
			stderr: "F: 5 problems\n",
		},
		{
			name: "unknown field",
			file: `triggers:
  - name: ok
    colection: x
    webhook: { url: "http://h/x" }
`,
			stdout: "F:3:5: unknown field \"colection\" in trigger (did you mean \"collection\"?)\n",
			stderr: "F: 1 problem\n",
		},
		{
			name:   "no triggers",
			file:   "triggers: []\n",
			stdout: "F:1:11: triggers: at least one trigger is required\n",
			stderr: "F: 1 problem\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "bad.yaml", tc.file)
			code, stdout, stderr := runCLI(t, "validate", "-c", path)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if want := strings.ReplaceAll(tc.stdout, "F:", path+":"); stdout != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
			}
			if want := strings.ReplaceAll(tc.stderr, "F:", path+":"); stderr != want {
				t.Errorf("stderr = %q, want %q", stderr, want)
			}
		})
	}
}

// TestValidateRepositoryConfig: the demo configuration at the root of the
// repository is valid and its summary masks nothing it should not show.
func TestValidateRepositoryConfig(t *testing.T) {
	code, stdout, stderr := runCLI(t, "validate", "-c", filepath.Join("..", "..", "triggers.yaml"))
	if code != 0 {
		t.Fatalf("exit code %d\n%s%s", code, stdout, stderr)
	}
	want := "../../triggers.yaml is valid: 1 trigger (1 enabled)\n" +
		"  low_stock: lessons.inventory [insert, update, replace] -> POST http://127.0.0.1:9471/hooks/stock, ordering per_document\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
}
