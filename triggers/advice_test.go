package triggers

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// warnEnv is testEnv with the variables of testdata/warn/quoted_numbers.yaml.
func warnEnv(k string) (string, bool) {
	switch k {
	case "LIMIT":
		return "20", true
	case "RATE":
		return "0.5", true
	case "STATUS":
		return "paid", true
	case "ZIP":
		return "02134", true
	}
	return testEnv(k)
}

// formatWarnings writes warnings one a line as FILE:LINE:COL: message, one
// about a trigger preceded by its name and a colon.
func formatWarnings(ws []Problem) string {
	var b strings.Builder
	for _, w := range ws {
		if w.Trigger != "" {
			b.WriteString(w.Trigger + ": ")
		}
		b.WriteString(w.String() + "\n")
	}
	return b.String()
}

// TestWarnings: each file of testdata/warn is valid, and its warnings
// (Config.Warnings), position and trigger included, are the golden
// file's, word for word: every trigger of a file is a case, named for
// what it shows, and a trigger that is not in the golden file has no
// warning. They are sorted by position and never show a secret.
func TestWarnings(t *testing.T) {
	files, err := filepath.Glob("testdata/warn/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no warning test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, warnEnv)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for i := 1; i < len(cfg.Warnings); i++ {
				a, b := cfg.Warnings[i-1].Pos, cfg.Warnings[i].Pos
				if a.Line > b.Line || a.Line == b.Line && a.Col > b.Col {
					t.Errorf("warnings not sorted: %v before %v", a, b)
				}
			}
			got := formatWarnings(cfg.Warnings)
			for _, s := range testSecrets {
				if strings.Contains(got, s) {
					t.Errorf("warnings show secret %q", s)
				}
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".warn", []byte(got))
		})
	}
}

// TestShortAdminTokenWarning: an admin.token shorter than
// MinAdminTokenLength characters is a warning about the file at the
// token's value, which never shows the token; a long one, or none, is not.
func TestShortAdminTokenWarning(t *testing.T) {
	const warning = "admin.token is shorter than 16 characters: anyone who can reach the admin server may guess it; use a long random one (openssl rand -hex 32)"
	env := func(k string) (string, bool) {
		if k == "ADMIN_TOKEN" {
			return "short-s3cret", true
		}
		return testEnv(k)
	}
	for _, tc := range []struct {
		name, admin string
		want        string // the warning, "" for none
	}{
		{name: "short", admin: `admin: { token: "short-s3cret" }`, want: "c.yaml:1:17: " + warning},
		{name: "fifteen characters", admin: "admin:\n  addr: 127.0.0.1:9470\n  token: fifteen-chars-x", want: "c.yaml:3:10: " + warning},
		{name: "from a variable", admin: "admin:\n  token: ${ADMIN_TOKEN}", want: "c.yaml:2:10: " + warning},
		{name: "fifteen characters, not bytes", admin: `admin: { token: "ééééééééééééééé" }`, want: "c.yaml:1:17: " + warning},
		{name: "sixteen characters", admin: `admin: { token: "sixteen-chars-xy" }`},
		{name: "empty", admin: `admin: { token: "" }`},
		{name: "none", admin: "admin: {}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.admin + "\ntriggers:\n  - name: t1\n    webhook: { url: https://example.com/h }\n"
			cfg, err := Parse("c.yaml", []byte(src), env)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.TrimSuffix(formatWarnings(cfg.Warnings), "\n")
			if got != tc.want {
				t.Errorf("warnings\n%q\nwant\n%q", got, tc.want)
			}
			if strings.Contains(got, "s3cret") || strings.Contains(got, "chars") || strings.Contains(got, "éé") {
				t.Errorf("the warning shows the token: %q", got)
			}
		})
	}
}

// TestWarningsOnlyOfValidFiles: a file with a problem has no Config, so
// its warnings are never reported beside the problems.
func TestWarningsOnlyOfValidFiles(t *testing.T) {
	src := "triggers:\n  - name: t1\n    match: { quantity: 1 }\n    webhook: { url: https://example.com/h, method: FETCH }\n"
	cfg, err := Parse("c.yaml", []byte(src), testEnv)
	var ve *ValidationError
	if cfg != nil || !errors.As(err, &ve) || strings.Contains(err.Error(), "no field of a change event") {
		t.Errorf("Parse = %v, %v; want only the problem", cfg, err)
	}
}
