package main

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

const testTimeout = 60 * time.Second

// TestPipelines runs the scenario and checks every body of both phases
// exactly, that the restart delivered the missed changes and nothing twice,
// and that a driver stream resumed from a body's token sees the same changes.
func TestPipelines(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, &out, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}

	// alice_activity: database-wide, match on fullDocument.username, $project.
	type projected struct {
		op, coll, id string
		a, b         int32
	}
	aliceTests := []struct {
		name string
		got  []scenarioutil.Delivery
		want []projected
	}{
		{name: "alice before the stop", got: res.First.Alice, want: []projected{
			{"insert", "users", "u1", 1, 2}, {"insert", "orders", "o1", 5, 6}, {"update", "users", "u1", 10, 2},
		}},
		{name: "alice after the restart", got: res.Second.Alice, want: []projected{
			{"update", "users", "u1", 10, 20}, {"insert", "orders", "o2", 7, 8},
		}},
	}
	for _, tc := range aliceTests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.got) != len(tc.want) {
				t.Fatalf("got %d deliveries, want %d", len(tc.got), len(tc.want))
			}
			for i, w := range tc.want {
				ev := decode(t, tc.got[i])
				if got, want := keys(ev), []string{"_id", "operationType", "ns", "fullDocument_id", "a", "b"}; !slices.Equal(got, want) {
					t.Errorf("delivery %d: fields %v, want exactly %v ($project)", i, got, want)
				}
				wantBody := bson.D{
					{Key: "operationType", Value: w.op},
					{Key: "ns", Value: bson.D{{Key: "db", Value: "app"}, {Key: "coll", Value: w.coll}}},
					{Key: "fullDocument_id", Value: w.id}, {Key: "a", Value: w.a}, {Key: "b", Value: w.b},
				}
				assertDoc(t, ev[1:], wantBody)
			}
		})
	}

	// all_inserts: deployment-wide, every database but changehook's, with
	// newField added by the payload's $mergeObjects.
	insertTests := []struct {
		name string
		got  []scenarioutil.Delivery
		want [][2]string // ns.db.coll, _id
	}{
		{name: "inserts before the stop", got: res.First.Inserts,
			want: [][2]string{{"app.users", "u1"}, {"app.users", "u2"}, {"app.orders", "o1"}, {"billing.invoices", "i1"}}},
		{name: "inserts after the restart", got: res.Second.Inserts,
			want: [][2]string{{"billing.invoices", "i2"}, {"app.orders", "o2"}}},
	}
	for _, tc := range insertTests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.got) != len(tc.want) {
				t.Fatalf("got %d deliveries, want %d", len(tc.got), len(tc.want))
			}
			for i, w := range tc.want {
				ev := decode(t, tc.got[i])
				m := toMap(ev)
				ns, _ := m["ns"].(bson.D)
				nsm := toMap(ns)
				dk, _ := m["documentKey"].(bson.D)
				if got := nsm["db"].(string) + "." + nsm["coll"].(string); got != w[0] || m["operationType"] != "insert" {
					t.Errorf("delivery %d: %v in %s, want insert in %s", i, m["operationType"], got, w[0])
				}
				if len(dk) != 1 || dk[0].Value != w[1] {
					t.Errorf("delivery %d: documentKey %v, want _id %s", i, dk, w[1])
				}
				if m["newField"] != "this is an added field!" || ev[len(ev)-1].Key != "newField" {
					t.Errorf("delivery %d: newField %v is not added after the event's fields", i, m["newField"])
				}
				if _, ok := m["fullDocument"].(bson.D); !ok {
					t.Errorf("delivery %d: no fullDocument", i)
				}
			}
		})
	}

	t.Run("nothing delivered twice", func(t *testing.T) {
		if got, want := len(res.All), 3+4+2+2; got != want {
			t.Errorf("receiver got %d deliveries in all, want %d", got, want)
		}
		seen := map[string]bool{}
		for _, d := range res.All {
			if seen[d.ID] {
				t.Errorf("webhook-id %s delivered twice", d.ID)
			}
			seen[d.ID] = true
		}
	})

	t.Run("checkpoints saved at the stop", func(t *testing.T) {
		var names []string
		for _, cp := range res.Checkpoints {
			names = append(names, cp.Trigger)
			if _, ok := cp.Token.Lookup("_data").StringValueOK(); !ok {
				t.Errorf("%s: token %v has no _data", cp.Trigger, cp.Token)
			}
		}
		if want := []string{aliceTrigger, insertsTrigger}; !slices.Equal(names, want) {
			t.Errorf("checkpoints of %v, want %v", names, want)
		}
	})

	t.Run("driver resumes from a body's token", func(t *testing.T) {
		var got []string
		for _, ev := range res.Resumed {
			got = append(got, lookupString(ev, "operationType")+" "+lookupString(ev, "documentKey", "_id"))
		}
		if want := []string{"update u1", "insert o2"}; !slices.Equal(got, want) {
			t.Errorf("resumed stream returned %v, want %v", got, want)
		}
	})
}

func decode(t *testing.T, d scenarioutil.Delivery) bson.D {
	t.Helper()
	ev, err := d.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func keys(d bson.D) []string {
	out := make([]string, len(d))
	for i, e := range d {
		out[i] = e.Key
	}
	return out
}

func toMap(d bson.D) bson.M {
	m := make(bson.M, len(d))
	for _, e := range d {
		m[e.Key] = e.Value
	}
	return m
}

// assertDoc compares documents through canonical Extended JSON (field order
// and numeric types included).
func assertDoc(t *testing.T, got, want bson.D) {
	t.Helper()
	g, err1 := bson.MarshalExtJSON(got, true, false)
	w, err2 := bson.MarshalExtJSON(want, true, false)
	if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
		t.Errorf("got %s, want %s (%v %v)", g, w, err1, err2)
	}
}
