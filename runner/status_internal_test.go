package runner

import (
	"testing"
	"time"
)

// TestCombinePartitionsSinceOfLongestInState: a partitioned trigger's
// Since, with WayOut and LeaseWait, is that of the partition longest in the
// winning state, whichever its number, so /readyz (which compares Since
// with admin.retrying_unready_after) sees a partition retrying for an hour
// although another started retrying a second ago.
func TestCombinePartitionsSinceOfLongestInState(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	part := func(s State, ago time.Duration, wayOut string) TriggerStatus {
		st := TriggerStatus{Name: "orders", State: s, WayOut: wayOut, Retrying: s == StateRetrying}
		if ago >= 0 {
			st.Since = now.Add(-ago)
		}
		if s == StateStandby {
			st.LeaseWait = &LeaseWait{Member: wayOut, Reason: "runs on " + wayOut}
		}
		return st
	}
	for _, tc := range []struct {
		name       string
		parts      []TriggerStatus
		wantState  State
		wantSince  time.Duration // before now
		wantWayOut string
	}{
		{name: "the later partition retrying longer",
			parts:     []TriggerStatus{part(StateRetrying, time.Second, "p0"), part(StateRetrying, time.Hour, "p1")},
			wantState: StateRetrying, wantSince: time.Hour, wantWayOut: "p1"},
		{name: "the first partition retrying longer",
			parts:     []TriggerStatus{part(StateRetrying, time.Hour, "p0"), part(StateRetrying, time.Second, "p1")},
			wantState: StateRetrying, wantSince: time.Hour, wantWayOut: "p0"},
		{name: "a longer state of lower priority does not count",
			parts:     []TriggerStatus{part(StateRunning, 2*time.Hour, "p0"), part(StateRetrying, time.Minute, "p1"), part(StateRetrying, time.Second, "p2")},
			wantState: StateRetrying, wantSince: time.Minute, wantWayOut: "p1"},
		{name: "a tie keeps the first",
			parts:     []TriggerStatus{part(StateFailed, time.Hour, "p0"), part(StateFailed, time.Hour, "p1")},
			wantState: StateFailed, wantSince: time.Hour, wantWayOut: "p0"},
		{name: "a partition not saying since when does not win",
			parts:     []TriggerStatus{part(StateRetrying, -1, "p0"), part(StateRetrying, time.Minute, "p1")},
			wantState: StateRetrying, wantSince: time.Minute, wantWayOut: "p1"},
		{name: "standby: the lease wait of the longest",
			parts:     []TriggerStatus{part(StateStandby, time.Second, "m0"), part(StateStandby, time.Hour, "m1")},
			wantState: StateStandby, wantSince: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := combinePartitions(tc.parts, len(tc.parts))
			if st.State != tc.wantState {
				t.Errorf("state %s, want %s", st.State, tc.wantState)
			}
			if !st.Since.Equal(now.Add(-tc.wantSince)) {
				t.Errorf("since %s before now, want %s", now.Sub(st.Since), tc.wantSince)
			}
			var from *TriggerStatus
			for i := range tc.parts {
				if p := &tc.parts[i]; p.State == st.State && p.Since.Equal(st.Since) {
					from = p
					break
				}
			}
			if from == nil {
				t.Fatalf("since %s is no partition's in state %s", st.Since, st.State)
			}
			if st.WayOut != from.WayOut || st.LeaseWait != from.LeaseWait {
				t.Errorf("way out %q, lease wait %+v: not those of the partition since %s (%q, %+v)", st.WayOut, st.LeaseWait, st.Since, from.WayOut, from.LeaseWait)
			}
			if tc.wantWayOut != "" && st.WayOut != tc.wantWayOut {
				t.Errorf("way out %q, want %q", st.WayOut, tc.wantWayOut)
			}
		})
	}
}
