package triggers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		trigger   Trigger
		lastOp    string
		err       error
		retry     bool
		reasonHas string
	}{
		{"invalidate on collection", Trigger{Name: "t", Database: "d", Collection: "c"}, "drop", errInvalidated, false, "collection dropped"},
		{"invalidate after rename", Trigger{Name: "t", Database: "d", Collection: "c"}, "rename", errInvalidated, false, "collection renamed"},
		{"invalidate on database", Trigger{Name: "t", Database: "d"}, "", errInvalidated, false, "database dropped"},
		{"history lost", Trigger{Name: "orders"}, "", mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost"}, false, "`changehook checkpoints reset --trigger orders` is the way out"},
		{"invalid token", Trigger{Name: "t"}, "", mongo.CommandError{Code: 260, Name: "InvalidResumeToken"}, false, "history lost"},
		{"fatal", Trigger{Name: "t"}, "", mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError", Message: "_id changed"}, false, "_id changed"},
		{"pipeline rejected", Trigger{Name: "t"}, "", mongo.CommandError{Code: 40324, Name: "Location40324", Message: "Unrecognized pipeline stage"}, false, "rejected"},
		{"election", Trigger{Name: "t"}, "", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, true, "NotWritablePrimary"},
		{"resumable label", Trigger{Name: "t"}, "", mongo.CommandError{Code: 12345, Labels: []string{"ResumableChangeStreamError"}}, true, ""},
		{"network", Trigger{Name: "t"}, "", mongo.CommandError{Code: 40324, Labels: []string{"NetworkError"}}, true, ""},
		{"driver error without a code", Trigger{Name: "t"}, "", mongo.CommandError{Message: "connection pool was cleared"}, true, "pool"},
		{"not a server error", Trigger{Name: "t"}, "", fmt.Errorf("open: %w", errors.New("server selection timeout")), true, "server selection timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Watcher{t: &tt.trigger, lastOp: tt.lastOp}
			reason, retry := w.classify(tt.err)
			if retry != tt.retry || !strings.Contains(reason, tt.reasonHas) {
				t.Errorf("classify = %q, %v; want retry %v and reason containing %q", reason, retry, tt.retry, tt.reasonHas)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		lo, high time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{10, 500 * time.Millisecond, time.Second},
		{1000, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			for range 100 {
				if d := backoff(tt.attempt, 100*time.Millisecond, time.Second); d < tt.lo || d > tt.high {
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
		q.push(pendingEvent{token: tok(i), cluster: bson.Timestamp{T: uint32(i)}, at: base.Add(time.Duration(i) * time.Second)})
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
	for i := 10; i < 10+2*maxPendingTracked; i++ {
		q.push(pendingEvent{token: tok(i), at: base})
	}
	if n := len(q.items) - q.head; n > maxPendingTracked {
		t.Errorf("queue holds %d events, bound is %d", n, maxPendingTracked)
	}
	q.clear()
	if _, ok := q.front(); ok {
		t.Error("front after clear")
	}
}

func TestProjectionKeeps(t *testing.T) {
	one, zero := int32(1), int32(0)
	tests := []struct {
		name  string
		spec  bson.D
		field string
		want  bool
	}{
		{"inclusion lists it", bson.D{{Key: "operationType", Value: one}}, "operationType", true},
		{"inclusion omits it", bson.D{{Key: "fullDocument", Value: one}}, "operationType", false},
		{"inclusion of a subfield", bson.D{{Key: "documentKey._id", Value: true}}, "documentKey", true},
		{"computed", bson.D{{Key: "operationType", Value: "$operationType"}}, "operationType", true},
		{"exclusion of another field", bson.D{{Key: "fullDocument", Value: zero}}, "operationType", true},
		{"exclusion of it", bson.D{{Key: "documentKey", Value: false}}, "documentKey", false},
		{"exclusion of a subfield", bson.D{{Key: "documentKey.x", Value: zero}}, "documentKey", true},
		{"only _id excluded", bson.D{{Key: "_id", Value: zero}}, "operationType", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := projectionKeeps(tt.spec, tt.field); got != tt.want {
				t.Errorf("projectionKeeps(%v, %q) = %v, want %v", tt.spec, tt.field, got, tt.want)
			}
		})
	}
}
