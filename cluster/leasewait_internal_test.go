package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// TestLeaseWait: a member awaiting a unit says why it does not run it —
// before its first round, while another member holds the unit's lease
// (naming that member and when its lease lapses), while another member
// is the one meant to run it (and, when that member holds the unit's
// lease, when it lapses), saying so when that member is certainly gone
// (registered on this host, its process no longer running) — and says
// nothing once it holds the lease.
func TestLeaseWait(t *testing.T) {
	hour := time.Hour
	tests := []struct {
		name       string
		other      string // another member's id ("": none)
		sameDef    bool   // it has this member's definition of the trigger (else none)
		otherLease bool   // it holds the unit's lease for an hour
		deadHere   bool   // its process ran on this host and is gone
		member     string // LeaseWait's member after a round
		reason     string // a part of LeaseWait's reason after a round ("": none)
		until      bool   // LeaseWait's until is about an hour ahead
	}{
		{name: "the lease free", reason: ""},
		{name: "the lease held by a member without the trigger", other: "old", otherLease: true,
			member: "old", reason: "its lease is held by member old: this member takes it once that lease is released or expires", until: true},
		{name: "the lease held by a crashed member on this host", other: "crashed", otherLease: true, deadHere: true,
			member: "crashed", reason: "its lease is held by member crashed: this member takes it once that lease is released or expires " +
				"(that member is registered on this host and no longer running)", until: true},
		{name: "another member preferred", other: "peer", sameDef: true,
			member: "peer", reason: "member peer runs it: the live members share the triggers out, and this one stands by"},
		{name: "another member preferred, holding the lease", other: "peer", sameDef: true, otherLease: true,
			member: "peer", reason: "member peer runs it: the live members share the triggers out, and this one stands by", until: true},
		{name: "a crashed member on this host preferred", other: "crashed", sameDef: true, deadHere: true,
			member: "crashed", reason: "member crashed was to run it (that member is registered on this host and no longer running): " +
				"this member stands by until that registration expires, then takes the unit once its lease is released or expires"},
		{name: "a crashed member on this host preferred, holding the lease", other: "crashed", sameDef: true, otherLease: true, deadHere: true,
			member: "crashed", reason: "member crashed was to run it (that member is registered on this host and no longer running): " +
				"this member stands by until that registration expires, then takes the unit once its lease is released or expires", until: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore(t)
			ctx := t.Context()
			clock := newFakeClock()
			const self = "self"
			other, wantMember, wantReason := tc.other, tc.member, tc.reason
			if tc.sameDef {
				// The first of other, other1, other2, … that rendezvous
				// hashing prefers to this member for the unit.
				for i := 1; PreferredMember([]string{self, other}, "orders") == self; i++ {
					other = tc.other + strconv.Itoa(i)
				}
				wantMember = other
				wantReason = strings.ReplaceAll(tc.reason, "member "+tc.other, "member "+other)
			}
			m := newManager(t, st, testConfig(t, "orders"), self, clock)
			if other != "" {
				defs := map[string]string{}
				if tc.sameDef {
					defs["orders"] = m.self.Triggers["orders"]
				}
				inc := ""
				if tc.deadHere {
					_, start, with := ownIncarnation(t)
					inc = with(3, strconv.FormatUint(start+1, 10)) // this process's pid, started at another time
				}
				if err := st.Heartbeat(ctx, store.Member{ID: other, Host: "h", PID: 1, Incarnation: inc, Triggers: defs}, hour); err != nil {
					t.Fatal(err)
				}
				if tc.otherLease {
					if _, err := st.AcquireLease(ctx, "orders", other, hour); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := await(ctx, m, "orders")
			<-m.wake // Await registered the key and poked the rounds

			if _, _, reason := m.LeaseWait("orders"); reason != "waiting for this member's first cluster round" {
				t.Errorf("before the first round: reason %q", reason)
			}
			m.round(ctx)
			member, until, reason := m.LeaseWait("orders")
			if wantReason == "" {
				if reason != "" || member != "" {
					t.Errorf("after a round: LeaseWait %q, %q, want none", member, reason)
				}
				if acquired(t, m, "orders", got) == nil {
					t.Error("the free lease was not acquired")
				}
				return
			}
			if member != wantMember || !strings.Contains(reason, wantReason) {
				t.Errorf("after a round: member %q, reason %q; want %q, containing %q", member, reason, wantMember, wantReason)
			}
			if ahead := until.Sub(clock.Now()); tc.until != (ahead > 59*time.Minute && ahead <= hour) {
				t.Errorf("until %v: %v ahead of the clock, want about an hour: %v", until, ahead, tc.until)
			}
			if acquired(t, m, "orders", got) != nil {
				t.Error("acquired a lease it should wait for")
			}
		})
	}
}
