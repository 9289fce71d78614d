package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

const testTimeout = 60 * time.Second

// TestAppEvents runs the scenario with different rates of lost
// acknowledgements and checks what each of the four services ended up with.
func TestAppEvents(t *testing.T) {
	tests := []struct {
		name         string
		lostAckEvery int
		wantLost     int
	}{
		{name: "no lost acknowledgements", lostAckEvery: 0, wantLost: 0},
		{name: "every 4th acknowledgement lost", lostAckEvery: 4, wantLost: len(script()) / 4},
		{name: "every acknowledgement lost", lostAckEvery: 1, wantLost: len(script())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			var out bytes.Buffer
			res, err := run(ctx, config{LostAckEvery: tc.lostAckEvery, Out: &out})
			if err != nil {
				t.Fatalf("run: %v\noutput:\n%s", err, out.String())
			}
			want := expect(script())

			// welcome_email: ordering none, so any order, each once.
			if got, w := slices.Sorted(slices.Values(res.Emails)), slices.Sorted(slices.Values(want.Emails)); !slices.Equal(got, w) {
				t.Errorf("welcome emails %q, want %q", got, w)
			}
			// order_notifications: only status changes; per order, in order.
			if got, w := slices.Sorted(slices.Values(res.Notifications)), slices.Sorted(slices.Values(want.Notifications)); !slices.Equal(got, w) {
				t.Errorf("notifications %q, want %q", got, w)
			}
			assertPerKeyOrder(t, "notifications", res.Notifications, want.Notifications, func(s string) string { return strings.Fields(s)[1] })
			// cache_invalidation: every change evicts its key; per key, in order.
			if got, w := slices.Sorted(slices.Values(res.Evictions)), slices.Sorted(slices.Values(want.Evictions)); !slices.Equal(got, w) {
				t.Errorf("evictions %q, want %q", got, w)
			}
			assertPerKeyOrder(t, "evictions", res.Evictions, want.Evictions, func(s string) string { return strings.Fields(s)[1] })
			if got := slices.Sorted(maps.Keys(res.Cached)); !slices.Equal(got, []string{"products:p3"}) {
				t.Errorf("still cached %v, want only the untouched products:p3", got)
			}
			// event_store: every change once, in stream order, whatever was
			// redelivered.
			var ops []string
			ids := map[string]bool{}
			for _, e := range res.Events {
				ops = append(ops, e.Op)
				if ids[e.ID] {
					t.Errorf("event %s stored twice", e.ID)
				}
				ids[e.ID] = true
				var ev struct {
					OperationType string `json:"operationType"`
					ID            struct {
						Data string `json:"_data"`
					} `json:"_id"`
				}
				if err := json.Unmarshal(e.Event, &ev); err != nil || ev.OperationType != e.Op || ev.ID.Data == "" {
					t.Errorf("stored event %s is not a whole change event: %s", e.ID, e.Event)
				}
			}
			var wantOps []string
			for _, c := range script() {
				wantOps = append(wantOps, c.Op)
			}
			if !slices.Equal(ops, wantOps) {
				t.Errorf("stored operations %v, want %v", ops, wantOps)
			}
			if res.LostAcks != tc.wantLost || res.Duplicates != tc.wantLost {
				t.Errorf("lost acknowledgements %d, duplicates ignored %d; want %d of each", res.LostAcks, res.Duplicates, tc.wantLost)
			}
		})
	}
}

// assertPerKeyOrder checks that, for every key, got lists that key's
// entries in the order want does.
func assertPerKeyOrder(t *testing.T, what string, got, want []string, key func(string) string) {
	t.Helper()
	perKey := func(list []string) map[string][]string {
		m := map[string][]string{}
		for _, s := range list {
			m[key(s)] = append(m[key(s)], s)
		}
		return m
	}
	g, w := perKey(got), perKey(want)
	for k, ws := range w {
		if !slices.Equal(g[k], ws) {
			t.Errorf("%s for %s: %q, want %q in this order", what, k, g[k], ws)
		}
	}
}
