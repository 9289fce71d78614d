package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStateCommandsWithoutWebhookVariables: the commands that only read or
// write the state database (the controls too: they share openState) run without the variables the webhooks' URLs,
// secrets and headers name (an operator need not hold the endpoints'
// secrets); those that send to a webhook or compare its definition
// (dlq replay, cluster status) still require them, and say which.
func TestStateCommandsWithoutWebhookVariables(t *testing.T) {
	_, _, cfg := devdbConfig(t, `
history: { enabled: true }
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook:
      url: "${ORDERS_URL}"
      secret: "${ORDERS_SECRET}"
      headers: { Authorization: "Bearer ${ORDERS_TOKEN}" }
`)
	for _, args := range [][]string{
		{"dlq", "list"},
		{"history"},
		{"checkpoints", "list"},
	} {
		code, out, errOut := run(t, nil, "", append(args, "-c", cfg)...)
		if code != ExitOK || strings.Contains(out+errOut, "is not set") {
			t.Errorf("%s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, args := range [][]string{
		{"dlq", "replay", "--all"},
		{"cluster", "status"},
	} {
		code, _, errOut := run(t, nil, "", append(args, "-c", cfg)...)
		if code != ExitFailure || !strings.Contains(errOut, "environment variable ORDERS_URL is not set") {
			t.Errorf("%s: exit %d, want 1 naming ORDERS_URL:\n%s", strings.Join(args, " "), code, errOut)
		}
	}
	// Outside a webhook an unset variable is still a problem.
	_, _, bad := devdbConfig(t, `
triggers:
  - name: orders
    database: "${ORDERS_DB}"
    webhook: { url: "http://127.0.0.1:1/x" }
`)
	if code, _, errOut := run(t, nil, "", "dlq", "list", "-c", bad); code != ExitFailure || !strings.Contains(errOut, "ORDERS_DB is not set") {
		t.Errorf("dlq list with database's variable unset: exit %d\n%s", code, errOut)
	}
}

// TestTestWithOtherTriggersVariablesUnset: `test --trigger B` without
// --send needs no variable another trigger's webhook names (it sends
// nothing, as the state commands need none); B's own, one in defaults, one
// outside a webhook, and any with --send are still required.
func TestTestWithOtherTriggersVariablesUnset(t *testing.T) {
	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(`{"_id": {"_data": "82"}, "operationType": "insert", "ns": {"db": "shop", "coll": "b"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const b = `  - name: b
    database: shop
    collection: b
    webhook: { url: "%s" }
`
	const a = `  - name: a
    database: shop
    collection: a
    webhook:
      url: "${A_URL}"
      secret: "${A_SECRET}"
`
	tests := []struct {
		name    string
		config  string
		send    bool
		wantErr string // "" : exit 0
	}{
		{name: "other trigger's variables unset, before", config: "triggers:\n" + a + fmt.Sprintf(b, "http://127.0.0.1:1/b")},
		{name: "other trigger's variables unset, after, then a section",
			config: "triggers:\n" + fmt.Sprintf(b, "http://127.0.0.1:1/b") + a + "history: { enabled: true }\n"},
		{name: "own variable unset", config: "triggers:\n" + a + fmt.Sprintf(b, "${B_URL}"), wantErr: "B_URL is not set"},
		{name: "variable in defaults unset", config: "defaults:\n  webhook: { headers: { X-Key: \"${KEY}\" } }\ntriggers:\n" + fmt.Sprintf(b, "http://127.0.0.1:1/b"),
			wantErr: "KEY is not set"},
		{name: "with --send", config: "triggers:\n" + a + fmt.Sprintf(b, "http://127.0.0.1:1/b"), send: true, wantErr: "A_URL is not set"},
		// b's webhook written in a's item through an alias or a merge key:
		// its variables are b's own.
		{name: "own variable through an alias", wantErr: "A_URL is not set",
			config: "triggers:\n" + strings.Replace(a, "webhook:", "webhook: &hook", 1) + "  - name: b\n    database: shop\n    collection: b\n    webhook: *hook\n"},
		{name: "own variable through a merge key", wantErr: "A_SECRET is not set",
			config: "triggers:\n" + strings.Replace(a, "webhook:", "webhook: &hook", 1) +
				"  - name: b\n    database: shop\n    collection: b\n    webhook:\n      <<: *hook\n      url: \"http://127.0.0.1:1/b\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "triggers.yaml")
			if err := os.WriteFile(file, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"test", "-c", file, "--trigger", "b", "--event", event}
			if tc.send {
				args = append(args, "--send")
			}
			code, out, errOut := runWith(t, t.TempDir(), nil, args...)
			if tc.wantErr == "" {
				if code != ExitOK || !strings.Contains(out, "match:") || !strings.Contains(errOut, "2 ${VAR}s of other triggers' webhooks name unset variables") {
					t.Errorf("exit %d, want 0 with the match and a note on the unset variables:\n%s%s", code, out, errOut)
				}
				return
			}
			if code != ExitFailure || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d, want %d naming %q:\n%s%s", code, ExitFailure, tc.wantErr, out, errOut)
			}
		})
	}
}
