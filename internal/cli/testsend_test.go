package cli

import (
	"strings"
	"testing"
)

// TestTestSendOneAttempt: with retry.max_attempts 1, test --send speaks of
// one attempt in the singular, where it announces the attempts, where it
// reports the failure and in the dispatcher's error it quotes.
func TestTestSendOneAttempt(t *testing.T) {
	cfg := writeConfig(t, `
triggers:
  - name: send
    database: lessons
    webhook: { url: "http://127.0.0.1:1/hooks/send" }
    retry: { max_attempts: 1 }
`)
	ev := `{"_id": {"_data": "82AB"}, "operationType": "insert", "ns": {"db": "lessons", "coll": "x"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}`
	code, out, errOut := run(t, nil, ev, "test", "-c", cfg, "--event", "-", "--send")
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1: %s%s", code, out, errOut)
	}
	for _, want := range []string{"sending (up to 1 attempt)...", "FAILED after 1 attempt: ", "giving up after 1 attempt: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "1 attempts") {
		t.Errorf("output says 1 attempts:\n%s", out)
	}
}
