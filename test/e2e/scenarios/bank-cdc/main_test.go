package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
)

// TestMain lets the test binary play the runner process: the scenario
// starts its own executable with roleEnv=runner, which here is this binary.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "runner" {
		os.Exit(runnerMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestBankCDC runs the scenario, shortened: the bank triggers' exact
// deliveries, then the runner process SIGKILLed three times while the
// writer increments resumeCounter, and the verifier's proof that no
// increment was lost.
func TestBankCDC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runner processes")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out, runnerLog syncbuf.Buffer
	const kills = 3
	res, err := run(ctx, config{
		Customers: 40, Rounds: 40, Interval: 10 * time.Millisecond, Kills: kills, Seed: 7,
		Out: &out, RunnerOutput: &runnerLog,
	})
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s\nrunner logs:\n%s", err, out.String(), runnerLog.String())
	}

	t.Run("bank triggers", func(t *testing.T) {
		final := res.Plan.finalChecking()
		negatives := map[string]int64{}
		for _, a := range res.Plan.Accounts {
			if a.Checking < 0 {
				negatives[a.ID] = a.Checking
			}
		}
		if len(negatives) == 0 {
			t.Fatal("the plan opened no overdrawn account; pick another seed")
		}
		deposits := map[string]int64{}
		for _, d := range res.Plan.Deposits {
			deposits[d.Account] = d.Amount
		}
		tests := []struct {
			trigger string
			want    map[string]string // account → expected body
		}{
			{trigger: "negative_openings", want: bodies(res.Plan.Accounts, func(a account) (string, bool) {
				return fmt.Sprintf(`{"account":%q,"name":%q,"checking":%d}`, a.ID, a.Name, a.Checking), a.Checking < 0
			})},
			{trigger: "deposits", want: bodies(res.Plan.Accounts, func(a account) (string, bool) {
				amt, ok := deposits[a.ID]
				return fmt.Sprintf(`{"account":%q,"amount":%d,"checking":%d}`, a.ID, amt, final[a.ID]), ok
			})},
			{trigger: "negative_closures", want: bodies(res.Plan.Accounts, func(a account) (string, bool) {
				return fmt.Sprintf(`{"account":%q,"checking":%d}`, a.ID, final[a.ID]),
					slices.Contains(res.Plan.Closed, a.ID) && final[a.ID] < 0
			})},
		}
		for _, tc := range tests {
			t.Run(tc.trigger, func(t *testing.T) {
				got := map[string]string{}
				for _, d := range res.Bank[tc.trigger] {
					var m struct {
						Account string `json:"account"`
					}
					if err := json.Unmarshal(d.Body, &m); err != nil {
						t.Fatalf("body %s: %v", d.Body, err)
					}
					got[m.Account] = string(d.Body)
				}
				if len(got) != len(tc.want) {
					t.Errorf("%d accounts, want %d", len(got), len(tc.want))
				}
				for acct, want := range tc.want {
					if got[acct] != want {
						t.Errorf("%s: body %s, want %s", acct, got[acct], want)
					}
				}
			})
		}
		t.Run("replacements", func(t *testing.T) {
			var ids []string
			for _, d := range res.Bank["replacements"] {
				var ev struct {
					OperationType string            `json:"operationType"`
					DocumentKey   map[string]string `json:"documentKey"`
					FullDocument  map[string]any    `json:"fullDocument"`
				}
				if err := json.Unmarshal(d.Body, &ev); err != nil {
					t.Fatalf("body %s: %v", d.Body, err)
				}
				if ev.OperationType != "replace" || ev.FullDocument["kyc"] != "refreshed" || ev.FullDocument["_id"] != ev.DocumentKey["_id"] {
					t.Errorf("replace event %s lacks operationType replace or the new fullDocument", d.Body)
				}
				ids = append(ids, ev.DocumentKey["_id"])
			}
			slices.Sort(ids)
			if want := slices.Sorted(slices.Values(res.Plan.Replaced)); !slices.Equal(ids, want) {
				t.Errorf("replaced accounts %v, want %v", ids, want)
			}
		})
	})

	t.Run("resume demonstration", func(t *testing.T) {
		r := res.Report
		if !r.OK() {
			t.Fatalf("verifier:\n%s", r)
		}
		if r.Accounts == 0 || r.Increments != r.Accounts*40 {
			t.Errorf("%d increments on %d accounts, want 40 rounds each", r.Increments, r.Accounts)
		}
		if r.Unique != r.Increments || r.Delivered != r.Unique+r.Duplicates {
			t.Errorf("report does not add up:\n%s", r)
		}
		if len(res.Kills) != kills {
			t.Errorf("%d kills, want %d", len(res.Kills), kills)
		}
		pids := map[int]bool{}
		for _, k := range res.Kills {
			if pids[k.PID] {
				t.Errorf("process %d killed twice", k.PID)
			}
			pids[k.PID] = true
		}
		if res.RunnerExited != nil {
			t.Errorf("last runner exit: %v", res.RunnerExited)
		}
		if !strings.Contains(out.String(), "missing               0") {
			t.Errorf("output lacks the verifier's report:\n%s", out.String())
		}
		t.Logf("%d increments, %d deliveries, %d duplicates after %d SIGKILLs", r.Increments, r.Delivered, r.Duplicates, len(res.Kills))
	})
}

// TestVerify checks the verifier on hand-made tallies.
func TestVerify(t *testing.T) {
	tests := []struct {
		name       string
		got        [][2]any // account, value
		final      map[string]int32
		missing    []string
		unexpected []string
		duplicates int
	}{
		{name: "complete", got: [][2]any{{"A", int32(1)}, {"A", int32(2)}, {"B", int32(1)}},
			final: map[string]int32{"A": 2, "B": 1}},
		{name: "duplicates", got: [][2]any{{"A", int32(1)}, {"A", int32(1)}, {"A", int32(2)}, {"A", int32(2)}},
			final: map[string]int32{"A": 2}, duplicates: 2},
		{name: "gap", got: [][2]any{{"A", int32(1)}, {"A", int32(3)}},
			final: map[string]int32{"A": 3}, missing: []string{"A#2"}},
		{name: "never delivered", final: map[string]int32{"A": 1}, missing: []string{"A#1"}},
		{name: "unexpected", got: [][2]any{{"A", int32(1)}, {"A", int32(2)}},
			final: map[string]int32{"A": 1}, unexpected: []string{"A#2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTally()
			for i, g := range tc.got {
				tl.add(g[0].(string), g[1].(int32), i) // each from its own process: order is not at stake here
			}
			r := tl.verify(tc.final)
			if !slices.Equal(r.Missing, tc.missing) || !slices.Equal(r.Unexpected, tc.unexpected) || r.Duplicates != tc.duplicates {
				t.Errorf("got missing %v unexpected %v duplicates %d; want %v %v %d", r.Missing, r.Unexpected, r.Duplicates,
					tc.missing, tc.unexpected, tc.duplicates)
			}
			if want := len(tc.missing) == 0 && len(tc.unexpected) == 0; r.OK() != want || tl.complete(tc.final) != (len(tc.missing) == 0) {
				t.Errorf("OK() = %v, complete = %v", r.OK(), tl.complete(tc.final))
			}
		})
	}
}

// TestVerifyOrder checks that values going back count as out of order
// within one runner process but not across a restart.
func TestVerifyOrder(t *testing.T) {
	tests := []struct {
		name string
		got  []struct {
			n   int32
			gen int
		}
		want []string
	}{
		{name: "in order", got: []struct {
			n   int32
			gen int
		}{{1, 1}, {2, 1}, {3, 1}}},
		{name: "redelivery after a restart", got: []struct {
			n   int32
			gen int
		}{{1, 1}, {2, 1}, {3, 1}, {2, 2}, {3, 2}}},
		{name: "out of order within a process", got: []struct {
			n   int32
			gen int
		}{{1, 1}, {3, 1}, {2, 1}}, want: []string{"A#2 after #3"}},
		{name: "duplicate within a process", got: []struct {
			n   int32
			gen int
		}{{1, 1}, {1, 1}}, want: []string{"A#1 after #1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTally()
			for _, g := range tc.got {
				tl.add("A", g.n, g.gen)
			}
			r := tl.verify(map[string]int32{"A": 3})
			if !slices.Equal(r.OutOfOrder, tc.want) {
				t.Errorf("out of order %q, want %q", r.OutOfOrder, tc.want)
			}
		})
	}
}

// bodies maps the accounts selected by f to their expected body.
func bodies(accts []account, f func(account) (string, bool)) map[string]string {
	out := map[string]string{}
	for _, a := range accts {
		if b, ok := f(a); ok {
			out[a.ID] = b
		}
	}
	return out
}
