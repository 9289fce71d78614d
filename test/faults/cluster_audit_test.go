//go:build linux

package faults

import (
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// TestAuditCluster checks the cluster audit's own judgement: it finds two
// members delivering at once (and tolerates the self-fencing window), a
// redelivery of a checkpointed event, a checkpoint write by a superseded
// epoch, and a delivery by a paused member after its lease passed.
func TestAuditCluster(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 17, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	d := func(pid, atMS int, id string, ct uint64) delivery {
		return delivery{trigger: "t", id: id, pid: pid, at: ms(atMS), ct: ct}
	}
	// Member 1 delivers e1..e3, checkpoints at e2, dies; member 2 resumes
	// after the checkpoint (e3 again, then e4, e5).
	clean := []delivery{d(1, 0, "e1", 1), d(1, 10, "e2", 2), d(1, 20, "e3", 3),
		d(2, 3000, "e3", 3), d(2, 3010, "e4", 4), d(2, 3020, "e5", 5)}
	cps := []cpEvent{{key: "t", ct: 2, owner: "h-1-a", epoch: 1, at: ms(15)}, {key: "t", owner: "h-2-b", epoch: 2, at: ms(2900)}}
	tests := []struct {
		name   string
		log    []delivery
		cps    []cpEvent
		paused []pausedMember
		check  func(clusterAudit) bool
		kills  []time.Time
	}{
		{"clean failover", clean, cps, nil, func(a clusterAudit) bool {
			return a.Spans == 2 && a.Redelivered == 1 && a.Strays == 0 && a.BeforeCheckpoint == 0 && a.StaleCheckpoints == 0
		}, nil},
		{"old owner delivers inside the new owner's span, within the window", append(clean[:4:4], d(1, 3005, "e4", 4), d(2, 3010, "e4", 4), d(2, 3020, "e5", 5)), cps, nil,
			func(a clusterAudit) bool { return a.Strays == 1 && a.StraysBeyond == 0 }, nil},
		{"old owner delivers long after the new owner started", append(clean[:5:5], d(1, 3009+int(fenceWindow/time.Millisecond), "e5", 5), d(2, 3900, "e6", 6)), cps, nil,
			func(a clusterAudit) bool { return a.StraysBeyond == 1 }, nil},
		{"successor redelivers a checkpointed event", append(clean[:3:3], d(2, 3000, "e2", 2), d(2, 3010, "e3", 3)), cps, nil,
			func(a clusterAudit) bool { return a.BeforeCheckpoint == 1 }, nil},
		{"checkpoint written by a superseded epoch", clean, append(cps[:2:2], cpEvent{key: "t", ct: 3, owner: "h-1-a", epoch: 1, at: ms(3100)}), nil,
			func(a clusterAudit) bool { return a.StaleCheckpoints == 1 }, nil},
		{"paused member delivers after its successor took over", append(clean[:6:6], d(1, 5000, "e6", 6)), cps,
			[]pausedMember{{pid: 1, instance: "h-1-a", leases: []store.Lease{{Key: "t", Epoch: 1}}, stopped: ms(100), taken: ms(3000), resumed: ms(4000)}},
			func(a clusterAudit) bool { return a.PausedAfter == 1 }, nil},
		{"paused member delivers again after reacquiring", append(clean[:6:6], d(1, 6000, "e6", 6)),
			append(cps[:2:2], cpEvent{key: "t", owner: "h-1-a", epoch: 3, at: ms(5900)}),
			[]pausedMember{{pid: 1, instance: "h-1-a", leases: []store.Lease{{Key: "t", Epoch: 1}}, stopped: ms(100), taken: ms(3000), resumed: ms(4000)}},
			func(a clusterAudit) bool { return a.PausedAfter == 0 && a.Spans == 3 }, nil},
		// The paused member (1) takes its trigger back from its successor
		// (2) after SIGCONT and is SIGTERMed at once; the successor takes
		// it again 600 ms after its own last delivery (less than a span
		// gap). Each delivered only while it held the lease: the claims
		// end the successor's first span.
		{"paused member holds the lease briefly between two ownerships of its successor",
			append(clean[:6:6], d(1, 3600, "e6", 6), d(1, 3601, "e7", 7), d(1, 3602, "e8", 8), d(2, 3620, "e9", 9), d(2, 3630, "e10", 10)),
			append(cps[:2:2], cpEvent{key: "t", owner: "h-1-a", epoch: 3, at: ms(3500)}, cpEvent{key: "t", ct: 8, owner: "h-1-a", epoch: 3, at: ms(3605)},
				cpEvent{key: "t", owner: "h-2-b", epoch: 4, at: ms(3610)}),
			[]pausedMember{{pid: 1, instance: "h-1-a", leases: []store.Lease{{Key: "t", Epoch: 1}}, stopped: ms(100), taken: ms(3000), resumed: ms(3400)}},
			func(a clusterAudit) bool {
				return a.Strays == 0 && a.PausedAfter == 0 && a.BeforeCheckpoint == 0 && a.Spans == 4
			}, nil},
		{"successor keeps delivering after the paused member took the lease back",
			append(clean[:6:6], d(1, 3600, "e6", 6), d(2, 3610, "e6", 6), d(1, 3700, "e7", 7), d(2, 4100, "e7", 7), d(1, 4200, "e8", 8)),
			append(cps[:2:2], cpEvent{key: "t", owner: "h-1-a", epoch: 3, at: ms(3500)}),
			[]pausedMember{{pid: 1, instance: "h-1-a", leases: []store.Lease{{Key: "t", Epoch: 1}}, stopped: ms(100), taken: ms(3000), resumed: ms(3400)}},
			func(a clusterAudit) bool { return a.StraysBeyond == 1 && a.PausedAfter == 0 }, nil},
		{"unattributed delivery right after a SIGKILL", append(clean[:3:3], d(0, 25, "e3", 3), d(2, 3000, "e3", 3)), cps, nil,
			func(a clusterAudit) bool { return a.Unknown == 1 && a.UnknownElsewhere == 0 }, []time.Time{ms(22)}},
		{"unattributed delivery elsewhere", append(clean[:3:3], d(0, 2000, "e3", 3), d(2, 3000, "e3", 3)), cps, nil,
			func(a clusterAudit) bool { return a.Unknown == 1 && a.UnknownElsewhere == 1 }, []time.Time{ms(22)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			rec.log = tc.log
			as := auditCluster(rec, tc.cps, []trig{{name: "t"}}, tc.paused, tc.kills)
			if len(as) != 1 || !tc.check(as[0]) {
				t.Errorf("audit = %+v", as)
			}
		})
	}
}
