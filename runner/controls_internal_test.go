package runner

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestCombineUnitResults: a request's combined result exists only once
// every unit recorded one; several units' equal messages are said once,
// different ones per partition, and a failed partition fails the request
// naming it.
func TestCombineUnitResults(t *testing.T) {
	cfg, err := triggers.Parse("t.yaml", []byte(`
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    partitions: 3
    webhook: { url: "http://127.0.0.1:9/hook" }
  - name: one
    database: shop
    collection: one
    webhook: { url: "http://127.0.0.1:9/hook" }
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	slots := func(t *triggers.Trigger) []*slot {
		var ss []*slot
		for _, u := range t.Units() {
			ss = append(ss, &slot{t: u})
		}
		return ss
	}
	parts, one := slots(cfg.Triggers[0]), slots(cfg.Triggers[1])
	r := &Runner{opts: Options{Clock: dispatcher.SystemClock{}}}
	unit := func(i int, msg, errText string) store.UnitResult {
		return store.UnitResult{Key: triggers.PartitionKey("orders", i, 3), ID: "r1", Message: msg, Error: errText}
	}
	control := func(units ...store.UnitResult) store.Control {
		return store.Control{Trigger: "orders", Request: &store.ControlRequest{ID: "r1"}, Units: units}
	}
	for _, tc := range []struct {
		name      string
		ss        []*slot
		c         store.Control
		ok        bool
		msg, errs []string
	}{
		{name: "one unit missing", ss: parts, c: control(unit(0, "paused", ""), unit(2, "paused", ""))},
		{name: "a result of another request", ss: parts, c: control(unit(0, "paused", ""), unit(2, "paused", ""),
			store.UnitResult{Key: "orders/p1of3", ID: "r0", Message: "paused"})},
		{name: "all alike", ss: parts, c: control(unit(0, "paused", ""), unit(1, "paused", ""), unit(2, "paused", "")),
			ok: true, msg: []string{"paused (all 3 partitions)"}},
		{name: "different", ss: parts, c: control(unit(2, "skipped b", ""), unit(0, "skipped a", ""), unit(1, "skipped a", "")),
			ok: true, msg: []string{"applied by each of the 3 partitions:\n  orders/p0of3: skipped a\n  orders/p1of3: skipped a\n  orders/p2of3: skipped b"}},
		{name: "one failed", ss: parts, c: control(unit(0, "redelivering", ""), unit(1, "", "too old"), unit(2, "redelivering", "")),
			ok: true, errs: []string{"failed on 1 of 3 partitions (orders/p1of3: too old)", "orders/p0of3: redelivering", "orders/p1of3: failed: too old"}},
		{name: "unpartitioned", ss: one, c: store.Control{Trigger: "one", Request: &store.ControlRequest{ID: "r1"},
			Units: []store.UnitResult{{Key: "one", ID: "r1", Message: "paused"}}}, ok: true, msg: []string{"paused"}},
	} {
		res, ok := r.combine(tc.c, tc.ss)
		if ok != tc.ok {
			t.Errorf("%s: combined %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if res.ID != "r1" {
			t.Errorf("%s: result of %q, want r1", tc.name, res.ID)
		}
		for _, m := range tc.msg {
			if res.Message != m || res.Error != "" {
				t.Errorf("%s: message %q error %q, want message %q", tc.name, res.Message, res.Error, m)
			}
		}
		for _, e := range tc.errs {
			if !strings.Contains(res.Error, e) {
				t.Errorf("%s: error %q, want it to contain %q", tc.name, res.Error, e)
			}
		}
	}
}

// TestPendingErrorNamesAppliedPartitions: a wait that ended says which
// partitions applied the request so far and unwraps to the context's error.
func TestPendingErrorNamesAppliedPartitions(t *testing.T) {
	e := &PendingError{Kind: "redeliver", Trigger: "orders", Applied: []string{"orders/p0of2"}, Err: context.DeadlineExceeded}
	if !errors.Is(e, context.DeadlineExceeded) || !strings.Contains(e.Error(), "applied by orders/p0of2 so far") {
		t.Errorf("PendingError %q", e.Error())
	}
	e.Applied = nil
	if !strings.Contains(e.Error(), "no running changehook applied it yet") {
		t.Errorf("PendingError without partitions %q", e.Error())
	}
}
