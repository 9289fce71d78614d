package runner

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/triggers"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		trigger   triggers.Trigger
		lastOp    string
		err       error
		opened    bool // the stream was open when err ended it
		retry     bool
		reasonHas string
	}{
		{"invalidate on collection", triggers.Trigger{Name: "t", Database: "d", Collection: "c"}, "drop", errInvalidated, false, false, "collection dropped"},
		{"invalidate after rename", triggers.Trigger{Name: "t", Database: "d", Collection: "c"}, "rename", errInvalidated, false, false, "collection renamed"},
		{"invalidate on database", triggers.Trigger{Name: "t", Database: "d"}, "", errInvalidated, false, false, "database dropped"},
		{"history lost", triggers.Trigger{Name: "orders"}, "", mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost"}, false, false, "`changehook checkpoints reset --trigger orders` is the way out"},
		{"invalid token", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 260, Name: "InvalidResumeToken"}, false, false, "history lost"},
		{"fatal", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError", Message: "_id changed"}, false, false, "_id changed"},
		{"pipeline rejected", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 40324, Name: "Location40324", Message: "Unrecognized pipeline stage"}, false, false, "rejected"},
		{"election", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, false, true, "NotWritablePrimary"},
		{"resumable label", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 12345, Labels: []string{"ResumableChangeStreamError"}}, false, true, ""},
		{"network", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 40324, Labels: []string{"NetworkError"}}, false, true, ""},
		{"driver error without a code", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Message: "connection pool was cleared"}, false, true, "pool"},
		{"fatal on an open stream", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError", Message: "_id changed"}, true, false, "_id changed"},
		{"non-resumable getMore error", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 216, Name: "ElectionInProgress", Message: "m"}, true, false, "not resumable (ElectionInProgress 216)"},
		{"resumable label on an open stream", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 216, Labels: []string{"ResumableChangeStreamError"}}, true, true, ""},
		{"stepdown on an open stream", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 189, Name: "PrimarySteppedDown"}, true, true, "PrimarySteppedDown"},
		{"not a server error", triggers.Trigger{Name: "t"}, "", fmt.Errorf("open: %w", errors.New("server selection timeout")), false, true, "server selection timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Watcher{t: &tt.trigger, lastOp: tt.lastOp}
			reason, wayOut, retry := w.classify(tt.err, tt.opened)
			if retry != tt.retry || !strings.Contains(reason, tt.reasonHas) {
				t.Errorf("classify = %q, %v; want retry %v and reason containing %q", reason, retry, tt.retry, tt.reasonHas)
			}
			if (wayOut == "") != retry {
				t.Errorf("classify way out = %q with retry %v: a permanent failure needs one, a transient one none", wayOut, retry)
			}
		})
	}
}

// TestBackoff checks the reconnect waits the watch loop gets from
// dispatcher.FullJitterBackoff with its defaults' shape: full jitter, so
// anywhere from 0 up to the capped exponential ceiling.
func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		lo, high time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{1, 0, 200 * time.Millisecond},
		{3, 0, 800 * time.Millisecond},
		{10, 0, time.Second},
		{1000, 0, time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			for range 100 {
				if d := dispatcher.FullJitterBackoff(tt.attempt, 100*time.Millisecond, time.Second); d < tt.lo || d > tt.high {
					t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tt.attempt, d, tt.lo, tt.high)
				}
			}
		})
	}
}

func TestPendingQueue(t *testing.T) {
	tok := func(i int) bson.Raw {
		b, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("%04d", i)}})
		return b
	}
	base := time.Unix(1000, 0)
	var q pendingQueue
	for i := range 10 {
		q.push(pendingEvent{token: tok(i), cluster: bson.Timestamp{T: uint32(i)}, at: base.Add(time.Duration(i) * time.Second), seq: uint64(i + 1)})
	}
	if got := q.clusterOf(tok(4)); got.T != 4 {
		t.Errorf("clusterOf(4) = %v", got)
	}
	q.popThrough(tok(3))
	if f, ok := q.front(); !ok || !f.at.Equal(base.Add(4*time.Second)) {
		t.Errorf("front after popThrough(3) = %v, %v; want event 4", f.at, ok)
	}
	q.popThrough(tok(99)) // unknown: no change
	if f, _ := q.front(); !f.at.Equal(base.Add(4 * time.Second)) {
		t.Errorf("unknown token popped events")
	}
	q.popUpTo(6) // events 0..5: 4 and 5 go
	if f, ok := q.front(); !ok || f.seq != 7 {
		t.Errorf("front after popUpTo(6) = seq %d, %v; want seq 7", f.seq, ok)
	}
	for i := 10; i < 10+2*maxPendingTracked; i++ {
		q.push(pendingEvent{token: tok(i), at: base, seq: uint64(i + 1)})
	}
	if n := len(q.items) - q.head; n > maxPendingTracked {
		t.Errorf("queue holds %d events, bound is %d", n, maxPendingTracked)
	}
	q.popUpTo(uint64(10 + 2*maxPendingTracked))
	if _, ok := q.front(); ok {
		t.Error("front after popUpTo of every event")
	}
}
