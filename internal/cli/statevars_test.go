package cli

import (
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
