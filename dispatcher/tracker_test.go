package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/changehook/changehook/triggers"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// tok is the resume token of test event n.
func tok(n int) bson.Raw {
	return bson.Raw(fmt.Sprintf("tok%03d", n))
}

// tokNum is the inverse of tok (-1 for nil).
func tokNum(t *testing.T, b bson.Raw) int {
	t.Helper()
	if b == nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimPrefix(string(b), "tok"))
	if err != nil {
		t.Fatalf("unexpected token %q", b)
	}
	return n
}

// readyNow returns the values of the tickets Ready holds right now. Track and
// Resolve hand out tickets before they return, so after them this is exact.
func readyNow(tr *Tracker[int], got map[int]*Ticket[int]) []int {
	var out []int
	for {
		select {
		case tk, ok := <-tr.Ready():
			if !ok {
				return append(out, -1) // closed
			}
			got[tk.Value] = tk
			out = append(out, tk.Value)
		default:
			return out
		}
	}
}

// TestTrackerScripts runs scripts of steps against a tracker:
//
//	track KEY      track the next event (numbered from 0) with key KEY ("-": none)
//	resolve N      resolve event N as done
//	abandon N      resolve event N as not done
//	ready N...     exactly these events started since the last "ready" (in order)
//	mark N         the watermark is event N's token ("-": no watermark)
//	pending N      N events are unresolved
//	held N         N events are not passed by the watermark (unresolved or abandoned)
func TestTrackerScripts(t *testing.T) {
	tests := []struct {
		name     string
		ordering triggers.Ordering
		script   string
	}{
		{"strict starts one at a time in order", triggers.Strict, `
			track a; track b; track c; ready 0; mark -
			resolve 0; ready 1; mark 0
			resolve 1; ready 2; mark 1
			resolve 2; ready; mark 2; pending 0`},
		{"strict ignores keys and empty keys", triggers.Strict, `
			track -; track -; ready 0; resolve 0; ready 1; resolve 1; mark 1`},
		{"per_document: same key in order, other keys in parallel", triggers.PerDocument, `
			track a; track b; track a; track c; track b; ready 0 1 3
			resolve 1; ready 4; mark -
			resolve 0; ready 2; mark 1
			resolve 3; resolve 4; ready; mark 1
			resolve 2; mark 4; pending 0`},
		{"none starts everything at once", triggers.None, `
			track a; track a; track -; ready 0 1 2
			resolve 2; mark -; held 3; resolve 1; mark -; resolve 0; mark 2; held 0`},
		{"watermark is the done prefix", triggers.None, `
			track x; track x; track x; track x; track x; ready 0 1 2 3 4
			resolve 2; mark -; resolve 0; mark 0; resolve 3; mark 0
			resolve 1; mark 3; pending 1; resolve 4; mark 4`},
		{"an abandoned event holds the watermark forever", triggers.None, `
			track x; track x; track x; ready 0 1 2
			abandon 1; resolve 0; resolve 2; mark 0; pending 0; held 2`},
		{"an abandoned event still starts its key's next", triggers.PerDocument, `
			track k; track k; ready 0; abandon 0; ready 1; resolve 1; mark -`},
		{"a second resolve is ignored", triggers.None, `
			track x; ready 0; abandon 0; resolve 0; mark -; pending 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker[int](tt.ordering, 16)
			got := map[int]*Ticket[int]{}
			next := 0
			for _, step := range strings.FieldsFunc(tt.script, func(r rune) bool { return r == ';' || r == '\n' }) {
				f := strings.Fields(step)
				if len(f) == 0 {
					continue
				}
				arg := func(i int) int {
					n, err := strconv.Atoi(f[i])
					if err != nil {
						t.Fatalf("step %q: bad number", step)
					}
					return n
				}
				switch f[0] {
				case "track":
					key := f[1]
					if key == "-" {
						key = ""
					}
					if _, err := tr.Track(context.Background(), tok(next), sk(key), next); err != nil {
						t.Fatalf("step %q: Track: %v", step, err)
					}
					next++
				case "resolve", "abandon":
					tk := got[arg(1)]
					if tk == nil {
						t.Fatalf("step %q: event not started", step)
					}
					tk.Resolve(f[0] == "resolve")
				case "ready":
					want := make([]int, 0, len(f)-1)
					for i := 1; i < len(f); i++ {
						want = append(want, arg(i))
					}
					if r := readyNow(tr, got); fmt.Sprint(r) != fmt.Sprint(want) {
						t.Fatalf("step %q: started %v, want %v", step, r, want)
					}
				case "mark":
					want := -1
					if f[1] != "-" {
						want = arg(1)
					}
					tk, ok := tr.Watermark()
					if ok != (want >= 0) || tokNum(t, tk) != want {
						t.Fatalf("step %q: watermark %q (%v), want event %d", step, tk, ok, want)
					}
				case "pending":
					if n := tr.Pending(); n != arg(1) {
						t.Fatalf("step %q: %d pending, want %d", step, n, arg(1))
					}
				case "held":
					if n := tr.Held(); n != arg(1) {
						t.Fatalf("step %q: %d held, want %d", step, n, arg(1))
					}
				default:
					t.Fatalf("unknown step %q", step)
				}
			}
		})
	}
}

// TestTrackerBarrier: under per_document a keyless event starts only once
// every earlier event is resolved, and Track returns only once it is
// resolved itself, so later events cannot overtake it.
func TestTrackerBarrier(t *testing.T) {
	tr := NewTracker[int](triggers.PerDocument, 16)
	got := map[int]*Ticket[int]{}
	ctx := context.Background()
	for i, key := range []string{"a", "b"} {
		if _, err := tr.Track(ctx, tok(i), sk(key), i); err != nil {
			t.Fatal(err)
		}
	}
	if r := readyNow(tr, got); fmt.Sprint(r) != "[0 1]" {
		t.Fatalf("started %v, want [0 1]", r)
	}
	returned := make(chan error, 1)
	go func() {
		_, err := tr.Track(ctx, tok(2), NoKey, 2)
		returned <- err
	}()
	got[0].Resolve(true)
	if r := readyNow(tr, got); len(r) != 0 {
		t.Fatalf("barrier started %v while event 1 is unresolved", r)
	}
	got[1].Resolve(true)
	barrier := <-tr.Ready() // starts once everything before it is resolved
	if barrier.Value != 2 {
		t.Fatalf("started event %d, want the barrier", barrier.Value)
	}
	select {
	case err := <-returned:
		t.Fatalf("Track of the barrier returned (%v) before the barrier was resolved", err)
	default:
	}
	barrier.Resolve(true)
	if err := <-returned; err != nil {
		t.Fatalf("Track of the barrier: %v", err)
	}
	if _, err := tr.Track(ctx, tok(3), sk("a"), 3); err != nil {
		t.Fatal(err)
	}
	if r := readyNow(tr, got); fmt.Sprint(r) != "[3]" {
		t.Fatalf("started %v after the barrier, want [3]", r)
	}
	got[3].Resolve(true)
	if tk, _ := tr.Watermark(); tokNum(t, tk) != 3 {
		t.Fatalf("watermark %q, want event 3", tk)
	}

	// A barrier whose ctx ends while it waits for the others is not tracked.
	if _, err := tr.Track(ctx, tok(4), sk("a"), 4); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tr.Track(cctx, tok(5), NoKey, 5); !errors.Is(err, context.Canceled) {
		t.Fatalf("barrier Track with a canceled ctx = %v, want context.Canceled", err)
	}
	if n := tr.Pending(); n != 1 {
		t.Fatalf("%d pending, want 1 (the canceled barrier is not tracked)", n)
	}
}

// TestTrackerBackpressure: at capacity Track blocks until the watermark
// passes an event (resolving out of order frees nothing) or ctx ends.
func TestTrackerBackpressure(t *testing.T) {
	tr := NewTracker[int](triggers.None, 2)
	got := map[int]*Ticket[int]{}
	ctx := context.Background()
	for i := range 2 {
		if _, err := tr.Track(ctx, tok(i), NoKey, i); err != nil {
			t.Fatal(err)
		}
	}
	readyNow(tr, got)
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := tr.Track(short, tok(2), NoKey, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Track beyond capacity = %v, want it to block until ctx ends", err)
	}
	got[1].Resolve(true) // out of order: the watermark stays behind event 0
	returned := make(chan error, 1)
	go func() {
		_, err := tr.Track(ctx, tok(2), NoKey, 2)
		returned <- err
	}()
	got[0].Resolve(true) // frees both slots
	if err := <-returned; err != nil {
		t.Fatalf("Track after the watermark moved: %v", err)
	}
	if n := tr.Pending(); n != 1 {
		t.Fatalf("%d pending, want 1", n)
	}
}

// TestTrackerClose: Close wakes a blocked Track with ErrClosed, refuses new
// events, and closes Ready and Drained only once every tracked event is
// resolved.
func TestTrackerClose(t *testing.T) {
	tr := NewTracker[int](triggers.None, 1)
	got := map[int]*Ticket[int]{}
	ctx := context.Background()
	if _, err := tr.Track(ctx, tok(0), NoKey, 0); err != nil {
		t.Fatal(err)
	}
	readyNow(tr, got)
	returned := make(chan error, 1)
	go func() {
		_, err := tr.Track(ctx, tok(1), NoKey, 1) // blocks: the tracker is full
		returned <- err
	}()
	tr.Close()
	if err := <-returned; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Track after Close = %v, want ErrClosed", err)
	}
	if _, err := tr.Track(ctx, tok(2), NoKey, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Track after Close = %v, want ErrClosed", err)
	}
	select {
	case <-tr.Drained():
		t.Fatal("drained with an event unresolved")
	default:
	}
	got[0].Resolve(true)
	<-tr.Drained()
	if r := readyNow(tr, got); fmt.Sprint(r) != "[-1]" {
		t.Fatalf("Ready after drain: %v, want closed", r)
	}
	if tk, _ := tr.Watermark(); tokNum(t, tk) != 0 {
		t.Fatalf("watermark %q, want event 0", tk)
	}
	tr.Close() // again: nothing happens

	// A canceled ctx is refused even with free capacity.
	tr2 := NewTracker[int](triggers.None, 4)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tr2.Track(cctx, tok(0), NoKey, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Track with a canceled ctx = %v", err)
	}
}

// TestTrackerWatermarkNeverPassesUnresolved resolves started events in a
// random order (seeded, so reproducible), abandoning a few, and checks after
// every step that the watermark covers only events resolved as done, that
// same-key events start in order and one at a time, and that the watermark
// ends at the last event before the first abandoned one.
func TestTrackerWatermarkNeverPassesUnresolved(t *testing.T) {
	for _, ordering := range []triggers.Ordering{triggers.Strict, triggers.PerDocument, triggers.None} { // keyed events; barriers: TestTrackerBarrier
		for seed := range uint64(20) {
			t.Run(fmt.Sprintf("%s/%d", ordering, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 7))
				const n = 200
				tr := NewTracker[int](ordering, n)
				keys := make([]string, n)
				for i := range n {
					keys[i] = string(rune('a' + rng.IntN(5)))
					if _, err := tr.Track(context.Background(), tok(i), sk(keys[i]), i); err != nil {
						t.Fatal(err)
					}
				}
				done := make([]bool, n)
				firstAbandoned := n
				var started []*Ticket[int]
				running := map[string]bool{}
				lastStarted := map[string]int{}
				for resolved := 0; resolved < n; resolved++ {
					for more := true; more; {
						select {
						case tk := <-tr.Ready():
							k := keys[tk.Value]
							if ordering == triggers.Strict {
								k = "all"
							}
							if ordering != triggers.None {
								if running[k] {
									t.Fatalf("event %d started while another of its key runs", tk.Value)
								}
								if last, ok := lastStarted[k]; ok && last > tk.Value {
									t.Fatalf("event %d started after %d of the same key", tk.Value, last)
								}
								running[k], lastStarted[k] = true, tk.Value
							}
							started = append(started, tk)
						default:
							more = false
						}
					}
					if len(started) == 0 {
						t.Fatalf("nothing started with %d of %d resolved", resolved, n)
					}
					i := rng.IntN(len(started))
					tk := started[i]
					started = append(started[:i], started[i+1:]...)
					ok := rng.IntN(50) != 0
					if ok {
						done[tk.Value] = true
					} else {
						firstAbandoned = min(firstAbandoned, tk.Value)
					}
					k := keys[tk.Value]
					if ordering == triggers.Strict {
						k = "all"
					}
					running[k] = false
					tk.Resolve(ok)
					if mark, has := tr.Watermark(); has {
						for j := 0; j <= tokNum(t, mark); j++ {
							if !done[j] {
								t.Fatalf("watermark at %d passes event %d, which is not done", tokNum(t, mark), j)
							}
						}
					}
				}
				mark, _ := tr.Watermark()
				if want := firstAbandoned - 1; tokNum(t, mark) != want {
					t.Fatalf("final watermark at %d, want %d", tokNum(t, mark), want)
				}
			})
		}
	}
}

// TestTrackerResolveAllMatchesResolve: two trackers admit the same events;
// groups of started events (random, some resolved as not done, some
// resolved twice) are resolved one Resolve at a time in one and by one
// ResolveAll in the other. After every group both have the same watermark,
// pending count, held bytes and started events, and a Track blocked on a
// full tracker resumes in both.
func TestTrackerResolveAllMatchesResolve(t *testing.T) {
	for _, ordering := range []triggers.Ordering{triggers.Strict, triggers.PerDocument, triggers.None} {
		for seed := range uint64(10) {
			t.Run(fmt.Sprintf("%s/%d", ordering, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 11))
				const n, capacity = 300, 64
				one, all := NewTracker[int](ordering, capacity), NewTracker[int](ordering, capacity)
				var startedOne, startedAll []*Ticket[int]
				collect := func() {
					t.Helper()
					for more := true; more; {
						select {
						case tk := <-one.Ready():
							startedOne = append(startedOne, tk)
						default:
							more = false
						}
					}
					for more := true; more; {
						select {
						case tk := <-all.Ready():
							startedAll = append(startedAll, tk)
						default:
							more = false
						}
					}
					if len(startedOne) != len(startedAll) {
						t.Fatalf("started %d events one by one, %d with ResolveAll", len(startedOne), len(startedAll))
					}
					for i := range startedOne {
						if startedOne[i].Value != startedAll[i].Value {
							t.Fatalf("started event %d one by one, %d with ResolveAll", startedOne[i].Value, startedAll[i].Value)
						}
					}
				}
				next := 0
				admit := func() {
					free := func(tr *Tracker[int]) bool {
						tr.mu.Lock()
						defer tr.mu.Unlock()
						return tr.slots < tr.capacity
					}
					for next < n && free(one) && free(all) && rng.IntN(4) != 0 {
						key := string(rune('a' + rng.IntN(6)))
						size := int64(1 + rng.IntN(100))
						if _, err := one.TrackSized(context.Background(), tok(next), sk(key), size, next); err != nil {
							t.Fatal(err)
						}
						if _, err := all.TrackSized(context.Background(), tok(next), sk(key), size, next); err != nil {
							t.Fatal(err)
						}
						next++
					}
				}
				abandoned := false
				for rounds := 0; next < n || len(startedOne) > 0; rounds++ {
					if rounds > 10*n {
						t.Fatal("no progress")
					}
					admit()
					collect()
					if len(startedOne) == 0 {
						if abandoned {
							break // the held events wait behind an abandoned one
						}
						continue
					}
					size := 1 + rng.IntN(len(startedOne))
					perm := rng.Perm(len(startedOne))[:size]
					done := rng.IntN(20) != 0
					abandoned = abandoned || !done
					var groupOne, groupAll []*Ticket[int]
					for _, i := range perm {
						groupOne = append(groupOne, startedOne[i])
						groupAll = append(groupAll, startedAll[i])
					}
					if rng.IntN(5) == 0 {
						groupAll = append(groupAll, groupAll[0]) // a second resolve is ignored
					}
					for _, tk := range groupOne {
						tk.Resolve(done)
					}
					all.ResolveAll(groupAll, done)
					keep := func(s []*Ticket[int]) []*Ticket[int] {
						out := s[:0]
						for i, tk := range s {
							if !slices.Contains(perm, i) {
								out = append(out, tk)
							}
						}
						return out
					}
					startedOne, startedAll = keep(startedOne), keep(startedAll)
					m1, ok1 := one.Watermark()
					m2, ok2 := all.Watermark()
					if ok1 != ok2 || !bytes.Equal(m1, m2) {
						t.Fatalf("watermark %q (%v) one by one, %q (%v) with ResolveAll", m1, ok1, m2, ok2)
					}
					if p1, p2 := one.Pending(), all.Pending(); p1 != p2 {
						t.Fatalf("pending %d one by one, %d with ResolveAll", p1, p2)
					}
					if h1, h2 := one.HeldBytes(), all.HeldBytes(); h1 != h2 {
						t.Fatalf("held bytes %d one by one, %d with ResolveAll", h1, h2)
					}
				}
				if !abandoned && next != n {
					t.Fatalf("admitted %d of %d events", next, n)
				}
			})
		}
	}
}

// TestChunkAlloc checks that chunkAlloc hands out distinct zero values and
// allocates once per allocChunk of them.
func TestChunkAlloc(t *testing.T) {
	var c chunkAlloc[[2]int]
	seen := map[*[2]int]bool{}
	for i := range 3 * allocChunk {
		v := c.next()
		if *v != [2]int{} {
			t.Fatalf("value %d is not zero: %v", i, *v)
		}
		if seen[v] {
			t.Fatalf("value %d handed out twice", i)
		}
		seen[v] = true
		v[0] = i + 1
	}
	if a := testing.AllocsPerRun(10, func() {
		for range allocChunk {
			c.next()
		}
	}); a != 1 {
		t.Errorf("allocations per %d values = %v, want 1", allocChunk, a)
	}
}
