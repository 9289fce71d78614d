package main

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/runner"
)

const testTimeout = 60 * time.Second

// TestEventTypes runs the scenario and checks the shape of every event the
// receiver got, the raw stream's invalidate and the runner's report.
func TestEventTypes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, &out, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}

	common := []string{"_id", "operationType", "clusterTime", "wallTime", "ns"}
	withKey := append(slices.Clone(common), "documentKey")
	tests := []struct {
		op           string
		fields       []string // the event's top-level fields, in any order
		fullDocument bson.D   // nil: must be absent
	}{
		{op: "insert", fields: append(slices.Clone(withKey), "fullDocument"), fullDocument: insertedDoc()},
		{op: "update", fields: append(slices.Clone(withKey), "updateDescription")},
		{op: "replace", fields: append(slices.Clone(withKey), "fullDocument"),
			fullDocument: append(bson.D{{Key: "_id", Value: int32(1)}}, replacementDoc()...)},
		{op: "delete", fields: withKey},
		{op: "drop", fields: common},
	}
	if len(res.People) != len(tests) {
		t.Fatalf("people_events got %d deliveries, want %d", len(res.People), len(tests))
	}
	ids := map[string]bool{}
	for i, tc := range tests {
		t.Run(tc.op, func(t *testing.T) {
			d := res.People[i]
			if d.Trigger != peopleTrigger || d.Path != peoplePath {
				t.Errorf("trigger %q path %q", d.Trigger, d.Path)
			}
			if ids[d.ID] || !strings.HasPrefix(d.ID, "msg_") {
				t.Errorf("webhook-id %q repeated or malformed", d.ID)
			}
			ids[d.ID] = true
			ev, err := d.Decode()
			if err != nil {
				t.Fatal(err)
			}
			m := toMap(ev)
			if got := m["operationType"]; got != tc.op {
				t.Fatalf("operationType %v, want %s", got, tc.op)
			}
			if got, want := sortedKeys(ev), sorted(tc.fields); !slices.Equal(got, want) {
				t.Errorf("fields %v, want %v", got, want)
			}
			if tok, ok := m["_id"].(bson.D); !ok || len(tok) != 1 || tok[0].Key != "_data" {
				t.Errorf("_id %v is not a resume token {_data: ...}", m["_id"])
			}
			if _, ok := m["clusterTime"].(bson.Timestamp); !ok {
				t.Errorf("clusterTime %T, want a timestamp", m["clusterTime"])
			}
			if _, ok := m["wallTime"].(bson.DateTime); !ok {
				t.Errorf("wallTime %T, want a date", m["wallTime"])
			}
			assertEqualDoc(t, "ns", m["ns"], bson.D{{Key: "db", Value: database}, {Key: "coll", Value: collection}})
			if slices.Contains(tc.fields, "documentKey") {
				assertEqualDoc(t, "documentKey", m["documentKey"], bson.D{{Key: "_id", Value: int32(1)}})
			}
			if tc.fullDocument != nil {
				assertEqualDoc(t, "fullDocument", m["fullDocument"], tc.fullDocument)
			}
			if tc.op == "update" {
				ud, _ := m["updateDescription"].(bson.D)
				udm := toMap(ud)
				if got, want := sortedKeys(ud), []string{"removedFields", "truncatedArrays", "updatedFields"}; !slices.Equal(got, want) {
					t.Errorf("updateDescription fields %v, want %v", got, want)
				}
				uf, _ := udm["updatedFields"].(bson.D)
				if got, want := toMap(uf), (bson.M{"address.city": "London", "email": "ada@example.org"}); len(got) != len(want) ||
					got["address.city"] != want["address.city"] || got["email"] != want["email"] {
					t.Errorf("updatedFields %v, want %v (a nested change is a dotted path)", uf, want)
				}
				if got := udm["removedFields"]; !equalArray(got, bson.A{"tags"}) {
					t.Errorf("removedFields %v, want [tags]", got)
				}
				if got := udm["truncatedArrays"]; !equalArray(got, bson.A{}) {
					t.Errorf("truncatedArrays %v, want []", got)
				}
			}
		})
	}

	t.Run("database trigger sees the drop and keeps running", func(t *testing.T) {
		if len(res.Schema) != 1 {
			t.Fatalf("demo_schema got %d deliveries, want 1", len(res.Schema))
		}
		ev, err := res.Schema[0].Decode()
		if err != nil {
			t.Fatal(err)
		}
		if op := toMap(ev)["operationType"]; op != "drop" {
			t.Errorf("operationType %v, want drop", op)
		}
		assertEqualDoc(t, "ns", toMap(ev)["ns"], bson.D{{Key: "db", Value: database}, {Key: "coll", Value: collection}})
	})

	t.Run("raw stream ends with invalidate", func(t *testing.T) {
		var ops []string
		for _, ev := range res.Raw {
			ops = append(ops, opType(ev))
		}
		if want := []string{"insert", "update", "replace", "delete", "drop", "invalidate"}; !slices.Equal(ops, want) {
			t.Fatalf("raw stream events %v, want %v", ops, want)
		}
		var inv bson.D
		if err := bson.Unmarshal(res.Raw[len(res.Raw)-1], &inv); err != nil {
			t.Fatal(err)
		}
		if got, want := sortedKeys(inv), sorted([]string{"_id", "operationType", "clusterTime", "wallTime"}); !slices.Equal(got, want) {
			t.Errorf("invalidate fields %v, want %v", got, want)
		}
	})

	t.Run("runner reports the collection trigger failed", func(t *testing.T) {
		byName := map[string]runner.TriggerStatus{}
		for _, s := range res.Statuses {
			byName[s.Name] = s
		}
		p := byName[peopleTrigger]
		if p.State != runner.StateFailed || p.Retrying || !strings.Contains(p.LastError, "collection dropped") || p.EventsReceived != 5 {
			t.Errorf("%s status %+v, want failed, not retrying, collection dropped, 5 events", peopleTrigger, p)
		}
		s := byName[schemaTrigger]
		if s.State != runner.StateRunning || s.EventsReceived != 1 {
			t.Errorf("%s status %+v, want running with 1 event", schemaTrigger, s)
		}
		if !strings.Contains(out.String(), "people_events  failed") {
			t.Errorf("output does not report the failure:\n%s", out.String())
		}
	})
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func sortedKeys(d bson.D) []string {
	keys := make([]string, len(d))
	for i, e := range d {
		keys[i] = e.Key
	}
	return sorted(keys)
}

// assertEqualDoc compares documents through their canonical Extended JSON,
// which keeps field order and numeric types.
func assertEqualDoc(t *testing.T, what string, got any, want bson.D) {
	t.Helper()
	g, err1 := bson.MarshalExtJSON(got, true, false)
	w, err2 := bson.MarshalExtJSON(want, true, false)
	if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
		t.Errorf("%s = %s, want %s (%v %v)", what, g, w, err1, err2)
	}
}

func equalArray(got any, want bson.A) bool {
	a, ok := got.(bson.A)
	if !ok || len(a) != len(want) {
		return false
	}
	for i := range a {
		if a[i] != want[i] {
			return false
		}
	}
	return true
}

// toMap indexes a document's top-level fields.
func toMap(d bson.D) bson.M {
	m := make(bson.M, len(d))
	for _, e := range d {
		m[e.Key] = e.Value
	}
	return m
}
