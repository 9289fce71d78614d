package dispatcher

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestRedeliverHint: the hint for a dead letter whose event was not kept
// names the redeliver from the change's time; for an event larger than a
// change stream returns whole (16 MiB or more) it says that a server
// before 6.0.9 cannot split it, so that a redeliver would stop at it
// there, and to make the trigger's events smaller first.
func TestRedeliverHint(t *testing.T) {
	ev, _ := bson.Marshal(bson.D{{Key: "clusterTime", Value: bson.Timestamp{T: 1767225600, I: 1}}})
	const smaller = "on an older server a redeliver would stop at it again, so there first give the trigger a `project`"
	for _, tc := range []struct {
		size        int
		wantSmaller bool
	}{
		{17 << 20, true},
		{MaxStreamEventSize, true},
		{MaxStreamEventSize - 1, false}, // read whole, too large only with the dead letter's other fields
		{300 << 10, false},
	} {
		dl := DeadLetter{Trigger: "files", WebhookID: "msg_x", Event: ev, Trimmed: TrimmedEvent, EventSize: tc.size}
		h := dl.RedeliverHint()
		if !strings.Contains(h, "run `changehook redeliver files --since 2026-01-01T00:00:00Z` (the change's time)") ||
			!strings.HasSuffix(h, "then `changehook dlq purge msg_x --yes`") {
			t.Errorf("size %d: hint %q does not name the redeliver and the purge", tc.size, h)
		}
		if got := strings.Contains(h, smaller); got != tc.wantSmaller {
			t.Errorf("size %d: hint %q; says to make the events smaller: %v, want %v", tc.size, h, got, tc.wantSmaller)
		}
	}
}
