package runner

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// fragmentDoc is fragment n of of with resume token tok and fields.
func fragmentDoc(t *testing.T, tok string, n, of int32, fields ...bson.E) bson.Raw {
	t.Helper()
	d := bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: tok}}}, {Key: "splitEvent", Value: bson.D{{Key: "fragment", Value: n}, {Key: "of", Value: of}}}}
	b, err := bson.Marshal(append(d, fields...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSplitAssembler(t *testing.T) {
	big := strings.Repeat("x", 1000)
	op := bson.E{Key: "operationType", Value: "update"}
	ct := bson.E{Key: "clusterTime", Value: bson.Timestamp{T: 7, I: 1}}
	full := bson.E{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: 1}, {Key: "big", Value: big}}}
	desc := bson.E{Key: "updateDescription", Value: bson.D{{Key: "updatedFields", Value: bson.D{{Key: "big", Value: big}}}}}
	type frag struct {
		tok   string
		n, of int32
		f     []bson.E
	}
	cases := []struct {
		name  string
		frags []frag
		want  bson.D // the reassembled event (nil: none)
		err   string // the last fragment's error ("": none)
	}{
		{
			name:  "in order",
			frags: []frag{{"aa01", 1, 3, []bson.E{op, ct}}, {"aa02", 2, 3, []bson.E{full}}, {"aa03", 3, 3, []bson.E{desc}}},
			want:  bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "aa03"}}}, op, ct, full, desc},
		},
		{
			name:  "one fragment",
			frags: []frag{{"aa01", 1, 1, []bson.E{op}}},
			want:  bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "aa01"}}}, op},
		},
		{
			name:  "last token longer than the first",
			frags: []frag{{"aa", 1, 2, []bson.E{op}}, {"aa" + strings.Repeat("0", 200), 2, 2, []bson.E{full}}},
			want:  bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "aa" + strings.Repeat("0", 200)}}}, op, full},
		},
		{
			name:  "missing fragment",
			frags: []frag{{"aa01", 1, 3, []bson.E{op}}, {"aa03", 3, 3, []bson.E{desc}}},
			err:   "fragment 3 of 3 came after fragment 1: fragments are missing",
		},
		{
			name:  "wrong of",
			frags: []frag{{"aa01", 1, 3, []bson.E{op}}, {"aa02", 2, 2, []bson.E{full}}},
			err:   "fragment 2 says the event has 2 fragments, the fragments before it said 3",
		},
		{
			name:  "duplicate fragment",
			frags: []frag{{"aa01", 1, 3, []bson.E{op}}, {"aa02", 2, 3, []bson.E{full}}, {"aa02", 2, 3, []bson.E{full}}},
			err:   "fragment 2 of 3 came again after fragment 2",
		},
		{
			name:  "first fragment again",
			frags: []frag{{"aa01", 1, 2, []bson.E{op}}, {"aa01", 1, 2, []bson.E{op}}},
			err:   "fragment 1 of 2 came again after fragment 1",
		},
		{
			// A stream resumed after a fragment's token (a restart from
			// it) starts with the next fragment: the event's first
			// fragments are gone.
			name:  "fragment after restart",
			frags: []frag{{"aa02", 2, 3, []bson.E{full}}},
			err:   "fragment 2 of 3 came without the fragments before it (the stream started within the split event)",
		},
		{
			name:  "too many fragments",
			frags: []frag{{"aa01", 1, maxSplitFragments + 1, []bson.E{op}}},
			err:   "changehook reassembles events of at most 8 fragments",
		},
		{
			name:  "fragment beyond of",
			frags: []frag{{"aa01", 4, 3, []bson.E{op}}},
			err:   "fragment 4 of 3 is out of range",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var a splitAssembler
			var got bson.Raw
			var err error
			for i, f := range c.frags {
				raw := fragmentDoc(t, f.tok, f.n, f.of, f.f...)
				n, of, ok, serr := splitEventOf(raw)
				if !ok || serr != nil || n != int64(f.n) || of != int64(f.of) {
					t.Fatalf("splitEventOf = %d, %d, %v, %v; want %d, %d", n, of, ok, serr, f.n, f.of)
				}
				got, err = a.add(raw, n, of)
				if i < len(c.frags)-1 && (err != nil || got != nil) {
					t.Fatalf("fragment %d: %v, %v; want it held", i+1, got, err)
				}
			}
			if c.err != "" {
				if err == nil || !errors.Is(err, errSplitIncomplete) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v; want one saying %q", err, c.err)
				}
				if got != nil || a.holding() {
					t.Errorf("after the error: event %v, holding %v; want nothing", got, a.holding())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, _ := bson.Marshal(c.want)
			if !bytes.Equal(got, want) {
				t.Errorf("reassembled %s\nwant        %s", got, bson.Raw(want))
			}
			if err := got.Validate(); err != nil {
				t.Errorf("reassembled event is not valid BSON: %v", err)
			}
			if a.holding() {
				t.Error("still holding after the last fragment")
			}
		})
	}
}

func TestSplitAssemblerInterrupted(t *testing.T) {
	var a splitAssembler
	if ev, err := a.add(fragmentDoc(t, "aa01", 1, 2, bson.E{Key: "clusterTime", Value: bson.Timestamp{T: 7, I: 1}}), 1, 2); ev != nil || err != nil {
		t.Fatalf("first fragment: %v, %v", ev, err)
	}
	err := a.interrupted()
	if !errors.Is(err, errSplitIncomplete) || !strings.Contains(err.Error(), "came after fragment 1 of 2 (of the event at cluster time 7.1)") {
		t.Errorf("interrupted: %v", err)
	}
	if a.holding() {
		t.Error("still holding after interrupted")
	}
}

func TestSplitEventOf(t *testing.T) {
	plain, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "aa"}}}, {Key: "operationType", Value: "insert"},
		{Key: "splitEvent", Value: "late fields are not looked at"}})
	if _, _, ok, err := splitEventOf(plain); ok || err != nil {
		t.Errorf("event without splitEvent after _id: %v, %v; want not a fragment", ok, err)
	}
	bad, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{}}, {Key: "splitEvent", Value: "1 of 2"}})
	if _, _, ok, err := splitEventOf(bad); !ok || err == nil {
		t.Errorf("splitEvent not a document: %v, %v; want an error", ok, err)
	}
	noOf, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{}}, {Key: "splitEvent", Value: bson.D{{Key: "fragment", Value: 1}}}})
	if _, _, ok, err := splitEventOf(noOf); !ok || err == nil {
		t.Errorf("splitEvent without of: %v, %v; want an error", ok, err)
	}
}

// TestSplitAssemblerKeepsNoMoreThanTheEvent: the reassembled event's
// buffer, which the dispatcher keeps while it delivers the event and
// counts in its byte budgets by the event's length, is not much larger
// than the event, also when the first fragment is full and the later ones
// are small (the buffer is first sized for fragments like the first).
func TestSplitAssemblerKeepsNoMoreThanTheEvent(t *testing.T) {
	for _, c := range []struct{ first, later, of int }{
		{15 << 20, 1 << 10, 2},
		{15 << 20, 1 << 20, 4},
		{9 << 20, 9 << 20, 2},
		{1 << 20, 15 << 20, 2},
	} {
		var a splitAssembler
		var ev bson.Raw
		for n := 1; n <= c.of; n++ {
			size := c.later
			if n == 1 {
				size = c.first
			}
			f := fragmentDoc(t, fmt.Sprintf("aa%02d", n), int32(n), int32(c.of), bson.E{Key: fmt.Sprintf("f%d", n), Value: strings.Repeat("x", size)})
			var err error
			if ev, err = a.add(f, int64(n), int64(c.of)); err != nil {
				t.Fatal(err)
			}
		}
		if ev == nil {
			t.Fatalf("%+v: no event after the last fragment", c)
		}
		if limit := len(ev) + len(ev)/8; cap(ev) > limit {
			t.Errorf("%+v: event of %d bytes kept in a buffer of %d, more than %d", c, len(ev), cap(ev), limit)
		}
	}
}
