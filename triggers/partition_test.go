package triggers_test

import (
	"testing"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestPartitionKeys(t *testing.T) {
	for _, tc := range []struct {
		key     string
		name    string
		i, n    int
		wantOK  bool
		wantKey string
	}{
		{key: "orders", name: "orders", i: 0, n: 1, wantOK: true},
		{key: "orders/p0of4", name: "orders", i: 0, n: 4, wantOK: true},
		{key: "orders/p3of4", name: "orders", i: 3, n: 4, wantOK: true},
		{key: "orders/p4of4"},
		{key: "orders/p01of4"},
		{key: "orders/p0of1"},
		{key: "orders/x"},
		{key: "/p0of2"},
	} {
		name, i, n, ok := triggers.ParsePartitionKey(tc.key)
		if ok != tc.wantOK || ok && (name != tc.name || i != tc.i || n != tc.n) {
			t.Errorf("ParsePartitionKey(%q) = %q %d %d %v", tc.key, name, i, n, ok)
		}
		if ok && triggers.PartitionKey(name, i, n) != tc.key {
			t.Errorf("PartitionKey(%q, %d, %d) = %q, want %q", name, i, n, triggers.PartitionKey(name, i, n), tc.key)
		}
	}
}

func partitioned(t *testing.T, n int) *triggers.Trigger {
	t.Helper()
	tr := &triggers.Trigger{Name: "orders", Database: "shop", Collection: "orders", Operations: triggers.DefaultOperations(),
		Ordering: triggers.PerDocument, Partitions: n, Project: bson.D{{Key: "documentKey", Value: 0}}}
	return tr
}

// TestPartitionPipelines runs every partition's pipeline over sample
// events with devdb's expression engine (which implements the server's
// $toHashedIndexKey): every document event passes exactly one partition,
// always the same for the same _id, and events without a documentKey pass
// partition 0 only; an invalidate passes all.
func TestPartitionPipelines(t *testing.T) {
	tr := partitioned(t, 4)
	units := tr.Units()
	if len(units) != 4 {
		t.Fatalf("Units = %d, want 4", len(units))
	}
	if units[2].Key() != "orders/p2of4" || units[2].Name != "orders" || tr.Key() != "orders" {
		t.Fatalf("keys: %q %q %q", units[2].Key(), units[2].Name, tr.Key())
	}
	if got := len(tr.Pipeline()); got != 2 { // the user's match and project only
		t.Fatalf("the trigger as configured has %d stages, want 2 (no partition filter)", got)
	}
	matchers := make([]*mql.Filter, len(units))
	for i, u := range units {
		p := u.Pipeline()
		// The partition stage comes before the user's $project, which may
		// drop documentKey.
		if _, ok := p[len(p)-1].(bson.D)[0].Value.(bson.D); p[len(p)-1].(bson.D)[0].Key != "$project" || !ok {
			t.Fatalf("partition %d: last stage is %v, want the $project", i, p[len(p)-1])
		}
		stage := p[len(p)-2].(bson.D)
		m, err := mql.CompileFilter(stage[0].Value.(bson.D))
		if err != nil {
			t.Fatalf("partition %d: compile %v: %v", i, stage, err)
		}
		matchers[i] = m
	}
	seen := map[int]int{}
	for id := range 400 {
		var key any = int32(id)
		if id%2 == 1 {
			key = bson.NewObjectID()
		}
		ev := bson.D{{Key: "operationType", Value: "update"}, {Key: "documentKey", Value: bson.D{{Key: "_id", Value: key}}}}
		var in []int
		for i, m := range matchers {
			if ok, err := m.MatchErr(ev); err != nil {
				t.Fatal(err)
			} else if ok {
				in = append(in, i)
			}
		}
		if len(in) != 1 {
			t.Fatalf("event for _id %v passes partitions %v, want exactly one", key, in)
		}
		seen[in[0]]++
		want := int(abs64(mql.HashedIndexKey(key) % 4))
		if in[0] != want {
			t.Fatalf("_id %v in partition %d, want %d", key, in[0], want)
		}
	}
	for i := range 4 {
		if seen[i] < 50 {
			t.Errorf("partition %d got %d of 400 documents: the hash does not spread", i, seen[i])
		}
	}
	for _, tc := range []struct {
		ev   bson.D
		want []bool
	}{
		{bson.D{{Key: "operationType", Value: "drop"}}, []bool{true, false, false, false}},
		{bson.D{{Key: "operationType", Value: "invalidate"}}, []bool{true, true, true, true}},
	} {
		for i, m := range matchers {
			if ok, err := m.MatchErr(tc.ev); err != nil || ok != tc.want[i] {
				t.Errorf("%v on partition %d: %v %v, want %v", tc.ev, i, ok, err, tc.want[i])
			}
		}
	}
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestPartitionOf: the partition PartitionOf gives an event's documentKey
// is the one whose pipeline stage passes the event (devdb's expression
// engine), for _ids of many types, compound and nested keys and keys
// without _id; an event without a documentKey is partition 0's.
func TestPartitionOf(t *testing.T) {
	tr := partitioned(t, 3)
	var matchers []*mql.Filter
	for _, u := range tr.Units() {
		p := u.Pipeline()
		m, err := mql.CompileFilter(p[len(p)-2].(bson.D)[0].Value.(bson.D))
		if err != nil {
			t.Fatal(err)
		}
		matchers = append(matchers, m)
	}
	dec, _ := bson.ParseDecimal128("12.5")
	ids := []any{int32(7), int64(7), 7.0, 7.9, -3.5, dec, "abc", "", bson.NewObjectID(), nil, true,
		bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: bson.A{"x", 2.5}}}, bson.A{int32(1), int32(2)},
		bson.DateTime(123456), bson.Binary{Subtype: 0, Data: []byte{1, 2, 3}}}
	for i := range 100 {
		ids = append(ids, int32(i), bson.NewObjectID())
	}
	var keys []bson.D
	for _, id := range ids {
		keys = append(keys, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "region", Value: "eu"}, {Key: "_id", Value: id}})
	}
	keys = append(keys, bson.D{{Key: "other", Value: int32(1)}}, bson.D{})
	for _, key := range keys {
		raw, err := bson.Marshal(key)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tr.PartitionOf(raw)
		if !ok {
			t.Fatal("PartitionOf: not partitioned")
		}
		var in []int
		for i, m := range matchers {
			if pass, err := m.MatchErr(bson.D{{Key: "operationType", Value: "update"}, {Key: "documentKey", Value: key}}); err != nil {
				t.Fatal(err)
			} else if pass {
				in = append(in, i)
			}
		}
		if len(in) != 1 || in[0] != got {
			t.Fatalf("documentKey %v: PartitionOf = %d, the pipelines pass it in %v", key, got, in)
		}
	}
	if i, ok := tr.PartitionOf(nil); i != 0 || !ok {
		t.Fatalf("PartitionOf(nil) = %d, %v; want 0", i, ok)
	}
	if _, ok := partitioned(t, 1).PartitionOf(nil); ok {
		t.Fatal("PartitionOf of an unpartitioned trigger reports a partition")
	}
	if tr.PartitionName(2) != "p2of3" || partitioned(t, 1).PartitionName(0) != "" {
		t.Fatalf("PartitionName = %q, %q", tr.PartitionName(2), partitioned(t, 1).PartitionName(0))
	}
}
