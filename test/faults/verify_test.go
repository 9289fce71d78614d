package faults

import (
	"testing"
)

// TestVerify checks the suite's own judge: that it counts losses,
// duplicates and unexpected events, and detects each kind of order
// violation it claims to.
func TestVerify(t *testing.T) {
	d := func(key string, v int) expEvent {
		return expEvent{id: docIdentity("t", "db.c", key, int64(v)), key: "db.c/" + key}
	}
	drop := expEvent{id: nsIdentity("t", "db.c", "drop"), barrier: true}
	a0, b0, a1, b1 := d("a", 0), d("b", 0), d("a", 1), d("b", 1)
	exp := []expEvent{a0, b0, a1, b1, drop}
	ids := func(evs ...expEvent) []string {
		out := make([]string, len(evs))
		for i, e := range evs {
			out[i] = e.id
		}
		return out
	}
	once := func(evs ...expEvent) map[string]int {
		m := map[string]int{}
		for _, e := range evs {
			m[e.id]++
		}
		return m
	}
	tests := []struct {
		name     string
		ordering string
		counts   map[string]int
		first    []string
		want     tally
	}{
		{"all in order, strict", "strict", once(a0, b0, a1, b1, drop), ids(a0, b0, a1, b1, drop),
			tally{Matching: 5, Delivered: 5}},
		{"one lost", "strict", once(a0, b0, b1, drop), ids(a0, b0, b1, drop),
			tally{Matching: 5, Delivered: 4, Lost: 1}},
		{"duplicates", "none", map[string]int{a0.id: 3, b0.id: 1, a1.id: 2, b1.id: 1, drop.id: 1}, ids(a0, b0, a1, b1, drop),
			tally{Matching: 5, Delivered: 5, Duplicates: 3, OrderViolations: -1}},
		{"unexpected event", "none", map[string]int{a0.id: 1, b0.id: 1, a1.id: 1, b1.id: 1, drop.id: 1, "t|db.c|z|9": 1},
			append(ids(a0, b0, a1, b1, drop), "t|db.c|z|9"),
			tally{Matching: 5, Delivered: 5, Unexpected: 1, OrderViolations: -1}},
		{"strict: documents swapped", "strict", once(a0, b0, a1, b1, drop), ids(b0, a0, a1, b1, drop),
			tally{Matching: 5, Delivered: 5, OrderViolations: 1}},
		{"strict: drop before the last event", "strict", once(a0, b0, a1, b1, drop), ids(a0, b0, a1, drop, b1),
			tally{Matching: 5, Delivered: 5, OrderViolations: 1}},
		{"per_document: documents interleave freely", "per_document", once(a0, b0, a1, b1, drop), ids(b0, b1, a0, a1, drop),
			tally{Matching: 5, Delivered: 5}},
		{"per_document: drop before earlier events", "per_document", once(a0, b0, a1, b1, drop), ids(b0, b1, drop, a0, a1),
			tally{Matching: 5, Delivered: 5, OrderViolations: 2}}, // a0 and a1 came after the drop
		{"per_document: versions of one document swapped", "per_document", once(a0, b0, a1, b1, drop), ids(a1, a0, b0, b1, drop),
			tally{Matching: 5, Delivered: 5, OrderViolations: 1}},
		{"none: any order", "none", once(a0, b0, a1, b1, drop), ids(drop, b1, a1, b0, a0),
			tally{Matching: 5, Delivered: 5, OrderViolations: -1}},
		{"redelivery after a restart is a duplicate, not a violation", "strict",
			map[string]int{a0.id: 1, b0.id: 2, a1.id: 2, b1.id: 1, drop.id: 1}, ids(a0, b0, a1, b1, drop),
			tally{Matching: 5, Delivered: 5, Duplicates: 2}},
	}
	// An event after a per_document barrier must not overtake it.
	t.Run("per_document: event after the drop delivered before it", func(t *testing.T) {
		exp2 := []expEvent{a0, drop, a1}
		got := verify(exp2, once(a0, drop, a1), ids(a0, a1, drop), "per_document")
		want := tally{Ordering: "per_document", Matching: 3, Delivered: 3, OrderViolations: 2} // a1 overtook the drop; the drop came after a1
		if got != want {
			t.Errorf("verify:\n got %+v\nwant %+v", got, want)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := verify(exp, tc.counts, tc.first, tc.ordering)
			tc.want.Ordering = tc.ordering
			if got != tc.want {
				t.Errorf("verify:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestEventIdentity(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string
		wantErr bool
	}{
		{"insert", `{"_id":{"_data":"82"},"operationType":"insert","ns":{"db":"faults","coll":"a"},"documentKey":{"_id":"k00001"},"fullDocument":{"_id":"k00001","v":0}}`,
			"t|faults.a|k00001|0", false},
		{"update", `{"_id":{"_data":"82"},"operationType":"update","ns":{"db":"faults","coll":"a"},"documentKey":{"_id":"k00001"},"updateDescription":{"updatedFields":{"v":7},"removedFields":[]}}`,
			"t|faults.a|k00001|7", false},
		{"drop", `{"_id":{"_data":"82"},"operationType":"drop","ns":{"db":"faults","coll":"gd"}}`, "t|faults.gd|drop", false},
		{"rename keeps the old namespace", `{"_id":{"_data":"82"},"operationType":"rename","ns":{"db":"faults","coll":"gr"},"to":{"db":"faults","coll":"gr2"}}`,
			"t|faults.gr|rename", false},
		{"update without v", `{"operationType":"update","ns":{"db":"f","coll":"a"},"documentKey":{"_id":"k"},"updateDescription":{"updatedFields":{"x":1}}}`, "", true},
		{"insert without fullDocument", `{"operationType":"insert","ns":{"db":"f","coll":"a"},"documentKey":{"_id":"k"}}`, "", true},
		{"delete is not part of the workload", `{"operationType":"delete","ns":{"db":"f","coll":"a"},"documentKey":{"_id":"k"}}`, "", true},
		{"not JSON", `{`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := eventIdentity("t", []byte(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("eventIdentity error = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("eventIdentity = %q, want %q", got, tc.want)
			}
		})
	}
}
