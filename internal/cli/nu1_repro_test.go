package cli

import (
	"strings"
	"testing"
)

// TestNu1DlqReplayOfAnUnknownIDLeavesNothing: replaying an ID that names no
// dead letter (a typo) must not claim that a dead letter is left: there is
// none. Today it prints "replayed 0 of 1; 1 left in the dead letters".
func TestNu1DlqReplayOfAnUnknownIDLeavesNothing(t *testing.T) {
	_, _, cfg := devdbConfig(t, `
history: { enabled: false }
triggers:
  - name: files
    database: shop
    collection: files
    webhook: { url: "http://127.0.0.1:9/" }
`)
	code, out, errOut := run(t, nil, "", "dlq", "replay", "-c", cfg, "msg_doesnotexist")
	if strings.Contains(out, "1 left in the dead letters") {
		t.Errorf("dlq replay of an unknown ID = %d, says a dead letter is left though none exists:\n%s%s", code, out, errOut)
	}
}
