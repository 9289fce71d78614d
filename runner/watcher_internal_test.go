package runner

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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
		{"invalidate on collection", triggers.Trigger{Name: "t", Database: "d", Collection: "c"}, "drop", errInvalidated, false, false, "collection dropped: the change stream was invalidated; recreate it (or point the trigger elsewhere and reload), then run `changehook resume t --from now` on the running changehook"},
		{"invalidate after rename", triggers.Trigger{Name: "t", Database: "d", Collection: "c"}, "rename", errInvalidated, false, false, "collection renamed"},
		{"invalidate after a filtered-out event", triggers.Trigger{Name: "t", Database: "d", Collection: "c"}, "insert", errInvalidated, false, false, "collection dropped or renamed: "},
		{"invalidate after dropDatabase", triggers.Trigger{Name: "t", Database: "d", Collection: "c"}, "dropDatabase", errInvalidated, false, false, "database dropped: "},
		{"invalidate on database", triggers.Trigger{Name: "t", Database: "d"}, "", errInvalidated, false, false, "database dropped"},
		{"history lost", triggers.Trigger{Name: "orders"}, "", mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost"}, false, false, "The way out: `changehook resume orders --from now|TIME` on the running changehook"},
		{"invalid token", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 260, Name: "InvalidResumeToken"}, false, false, "history lost"},
		{"fatal", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError", Message: "_id changed"}, false, false, "_id changed"},
		{"checkpoint of another collection", triggers.Trigger{Name: "t"}, "", mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError",
			Message: `cannot resume stream; the resume token was not found. {_data: "8200"}`}, false, false, "does not belong to this collection or deployment"},
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
			if strings.Contains(reason, "checkpoints reset") && !strings.Contains(reason, "when no changehook runs") {
				// The reason is the status's last_error and the log line:
				// reset is refused while a changehook runs the trigger.
				t.Errorf("reason %q gives `checkpoints reset` as the way out on a running changehook", reason)
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

// TestPendingQueueKeepsOldestForgotten: beyond its bound the queue forgets
// its oldest events but keeps the oldest forgotten one, so that the lag
// still counts from the oldest event no save covered (checkpoint saves
// failing for a long time) until a save covers it.
func TestPendingQueueKeepsOldestForgotten(t *testing.T) {
	tok := func(i int) bson.Raw {
		b, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("%08d", i)}})
		return b
	}
	noPosition, _ := bson.Marshal(bson.D{{Key: "x", Value: 1}})
	const first, extra = 10, 5 // events first … first+maxPendingTracked+extra-1
	last := first + maxPendingTracked + extra - 1
	base := time.Unix(1000, 0)
	tests := []struct {
		name  string
		save  func(q *pendingQueue)
		front int // the event front returns (-1: none)
	}{
		{"no save", func(*pendingQueue) {}, first},
		{"a save of the newest event", func(q *pendingQueue) { q.popThrough(tok(last)) }, -1},
		{"a save of a tracked event", func(q *pendingQueue) { q.popThrough(tok(first + extra + 10)) }, first + extra + 11},
		{"a save of a forgotten event", func(q *pendingQueue) { q.popThrough(tok(first + 2)) }, first + extra},
		{"a save before the oldest forgotten event", func(q *pendingQueue) { q.popThrough(tok(first - 1)) }, first},
		{"a save of an unreadable token", func(q *pendingQueue) { q.popThrough(noPosition) }, first},
		{"a caught-up save", func(q *pendingQueue) { q.popUpTo(uint64(last + 1)) }, -1},
		{"a caught-up save of forgotten events", func(q *pendingQueue) { q.popUpTo(uint64(first + 3)) }, first + extra},
		{"a caught-up save before them", func(q *pendingQueue) { q.popUpTo(uint64(first)) }, first},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q pendingQueue
			for i := first; i <= last; i++ {
				q.push(pendingEvent{token: tok(i), cluster: bson.Timestamp{T: uint32(i)}, at: base.Add(time.Duration(i) * time.Second), seq: uint64(i + 1)})
			}
			if n := len(q.items) - q.head; n > maxPendingTracked {
				t.Errorf("queue holds %d events, bound is %d", n, maxPendingTracked)
			}
			tt.save(&q)
			f, ok := q.front()
			switch {
			case tt.front < 0 && ok:
				t.Errorf("front = event %d, want none", f.seq-1)
			case tt.front >= 0 && (!ok || !f.at.Equal(base.Add(time.Duration(tt.front)*time.Second)) || f.cluster.T != uint32(tt.front)):
				t.Errorf("front = event %d (%v), want event %d", f.seq-1, ok, tt.front)
			}
		})
	}
}

// lookupEventFields is what the watch loop read before scanEvent: one
// bson.Raw.Lookup per field.
func lookupEventFields(raw bson.Raw) eventFields {
	f := eventFields{
		id:            raw.Lookup("_id"),
		operationType: raw.Lookup("operationType"),
		clusterTime:   raw.Lookup("clusterTime"),
	}
	f.ns, _ = raw.LookupErr("ns")
	if dk, err := raw.LookupErr("documentKey"); err == nil {
		f.documentKey, f.hasDocumentKey = dk, true
	}
	return f
}

// TestScanEventMatchesLookup: for change events of every shape (fields in
// any order, missing, duplicated, of unexpected types, with other fields
// around them), scanEvent finds what bson.Raw.Lookup finds, and the values
// the watch loop derives from them (token, operation, ordering key,
// cluster time) are equal.
func TestScanEventMatchesLookup(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	values := map[string][]any{
		"_id":           {bson.D{{Key: "_data", Value: "8264A1B2C3000000012B"}}, "not-a-doc", bson.D{}, int32(7)},
		"operationType": {"insert", "update", "invalidate", "", int64(3), bson.D{{Key: "x", Value: 1}}},
		"ns":            {bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}, "shop.orders", nil},
		"documentKey":   {bson.D{{Key: "_id", Value: int32(42)}}, bson.D{{Key: "_id", Value: "k"}, {Key: "region", Value: "eu"}}, nil, bson.A{1}},
		"clusterTime":   {bson.Timestamp{T: 1_700_000_000, I: 7}, bson.DateTime(5), "t"},
		"fullDocument":  {bson.D{{Key: "_id", Value: int32(42)}, {Key: "_id", Value: "dup"}, {Key: "operationType", Value: "nested"}}},
		"wallTime":      {bson.DateTime(1_700_000_000_000)},
		"":              {int32(1)},
		"_i":            {"prefix of _id"},
		"nsx":           {"longer than ns"},
	}
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	slices.Sort(names)
	for n := range 5000 {
		doc := bson.D{}
		for range rng.IntN(9) {
			k := names[rng.IntN(len(names))]
			vs := values[k]
			doc = append(doc, bson.E{Key: k, Value: vs[rng.IntN(len(vs))]})
		}
		raw, err := bson.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if short := scanEvent(raw, false); !reflect.DeepEqual(short, eventFields{id: short.id, operationType: short.operationType, clusterTime: short.clusterTime}) {
			t.Fatalf("event %d: scanEvent without the key set ns or documentKey: %+v", n, short)
		} else if want := lookupEventFields(raw); !reflect.DeepEqual([]bson.RawValue{short.id, short.operationType, short.clusterTime}, []bson.RawValue{want.id, want.operationType, want.clusterTime}) {
			t.Fatalf("event %d %v: scanEvent without the key %+v, Lookup %+v", n, doc, short, want)
		}
		got, want := scanEvent(raw, true), lookupEventFields(raw)
		if gs, ws := stringBytes(got.operationType), want.operationType.StringValue; got.operationType.Type == bson.TypeString && string(gs) != ws() {
			t.Fatalf("event %d: stringBytes %q, StringValue %q", n, gs, ws())
		}
		if _, ok := want.operationType.StringValueOK(); !ok && stringBytes(got.operationType) != nil {
			t.Fatalf("event %d: stringBytes of a non-string", n)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d %v:\nscanEvent %+v\nLookup    %+v", n, doc, got, want)
		}
		gt, gok := got.id.DocumentOK()
		wt, wok := want.id.DocumentOK()
		gop, _ := got.operationType.StringValueOK()
		wop, _ := want.operationType.StringValueOK()
		gT, gI, gct := got.clusterTime.TimestampOK()
		wT, wI, wct := want.clusterTime.TimestampOK()
		if !bytes.Equal(gt, wt) || gok != wok || gop != wop || gT != wT || gI != wI || gct != wct ||
			string(got.ns.Value)+string(got.documentKey.Value) != string(want.ns.Value)+string(want.documentKey.Value) {
			t.Fatalf("event %d %v: derived values differ", n, doc)
		}
	}
	// Malformed documents: nothing is found past the damage, and nothing panics.
	good, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "82"}}}, {Key: "operationType", Value: "insert"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		for _, b := range []byte{0, 0xFF, good[i] + 1} {
			m := bytes.Clone(good)
			m[i] = b
			_ = scanEvent(m, true)
			_ = scanEvent(m[:i], true)
		}
	}
}

// TestTokenSlabClones: a clone equals its source, does not change when the
// source does, and appending to it never writes into another clone.
func TestTokenSlabClones(t *testing.T) {
	var s tokenSlab
	var srcs, clones [][]byte
	for i := range 2000 {
		src := bytes.Repeat([]byte{byte(i)}, 1+i%300)
		if i%500 == 0 {
			src = bytes.Repeat([]byte{byte(i)}, tokenSlabChunk) // too large for a chunk
		}
		srcs = append(srcs, bytes.Clone(src))
		c := s.clone(src)
		clear(src)
		clones = append(clones, c)
		_ = append(c, 0xEE) // must not reach the next clone
	}
	for i := range clones {
		if !bytes.Equal(clones[i], srcs[i]) {
			t.Fatalf("clone %d changed: %x", i, clones[i][:min(8, len(clones[i]))])
		}
	}
}
