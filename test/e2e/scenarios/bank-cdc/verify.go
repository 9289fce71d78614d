package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// tally counts the resumeCounter values the receiver got, per account. It
// is safe for concurrent use.
type tally struct {
	mu        sync.Mutex
	got       map[string]map[int32]int // account → counter value → deliveries
	last      map[string]lastSeen      // account → newest value of its runner generation
	delivered int
	disorder  []string
}

// lastSeen is the newest value an account received from one runner process.
type lastSeen struct {
	gen int
	n   int32
}

func newTally() *tally {
	return &tally{got: map[string]map[int32]int{}, last: map[string]lastSeen{}}
}

// add records one delivery of counter value n for account, sent by runner
// process number gen. Within one process, per_document ordering delivers an
// account's values in increasing order; a new process starts again from
// its checkpoint, so values may go back once per generation.
func (t *tally) add(account string, n int32, gen int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.got[account]
	if m == nil {
		m = map[int32]int{}
		t.got[account] = m
	}
	m[n]++
	t.delivered++
	if l, ok := t.last[account]; ok && l.gen == gen && n <= l.n {
		t.disorder = append(t.disorder, fmt.Sprintf("%s#%d after #%d", account, n, l.n))
	}
	t.last[account] = lastSeen{gen: gen, n: n}
}

// report is the verifier's verdict on the resume demonstration.
type report struct {
	Accounts   int      // accounts the writer incremented
	Increments int      // increments written (the sum of the final counters)
	Delivered  int      // resume_counter deliveries received, duplicates included
	Unique     int      // distinct (account, value) pairs received
	Duplicates int      // Delivered - Unique: redeliveries after a kill
	Missing    []string // "ACC-0007#12": increments never received (must be empty)
	Unexpected []string // values received that the writer never wrote (must be empty)
	// OutOfOrder lists values one runner process delivered after a value
	// at least as high for the same account (must be empty: per_document).
	OutOfOrder []string
}

// OK reports whether every increment arrived, nothing else did, and each
// runner process kept every account's order.
func (r report) OK() bool {
	return len(r.Missing) == 0 && len(r.Unexpected) == 0 && len(r.OutOfOrder) == 0
}

// String summarises the report on a few lines.
func (r report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "accounts incremented  %d\n", r.Accounts)
	fmt.Fprintf(&b, "increments written    %d\n", r.Increments)
	fmt.Fprintf(&b, "deliveries received   %d\n", r.Delivered)
	fmt.Fprintf(&b, "distinct increments   %d\n", r.Unique)
	fmt.Fprintf(&b, "duplicates            %d (redelivered after a kill: at-least-once)\n", r.Duplicates)
	fmt.Fprintf(&b, "missing               %d%s\n", len(r.Missing), list(r.Missing))
	fmt.Fprintf(&b, "unexpected            %d%s\n", len(r.Unexpected), list(r.Unexpected))
	fmt.Fprintf(&b, "out of order          %d%s", len(r.OutOfOrder), list(r.OutOfOrder))
	return b.String()
}

func list(s []string) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) > 10 {
		return ": " + strings.Join(s[:10], ", ") + ", …"
	}
	return ": " + strings.Join(s, ", ")
}

// verify compares what was received with the final counters in the
// database: every account with counter c must have received 1..c, each at
// least once, and nothing else.
func (t *tally) verify(final map[string]int32) report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := report{Accounts: len(final), Delivered: t.delivered}
	for _, acct := range slices.Sorted(maps.Keys(final)) {
		c := final[acct]
		r.Increments += int(c)
		for n := int32(1); n <= c; n++ {
			if t.got[acct][n] == 0 {
				r.Missing = append(r.Missing, fmt.Sprintf("%s#%d", acct, n))
			}
		}
	}
	for _, acct := range slices.Sorted(maps.Keys(t.got)) {
		for _, n := range slices.Sorted(maps.Keys(t.got[acct])) {
			r.Unique++
			if n < 1 || n > final[acct] {
				r.Unexpected = append(r.Unexpected, fmt.Sprintf("%s#%d", acct, n))
			}
		}
	}
	r.Duplicates = r.Delivered - r.Unique
	r.OutOfOrder = slices.Clone(t.disorder)
	return r
}

// complete reports whether every increment of final has been received, in
// O(increments); callers check the cheap necessary condition first.
func (t *tally) complete(final map[string]int32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for acct, c := range final {
		for n := int32(1); n <= c; n++ {
			if t.got[acct][n] == 0 {
				return false
			}
		}
	}
	return true
}

// deliveries returns how many deliveries were recorded.
func (t *tally) deliveries() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delivered
}
