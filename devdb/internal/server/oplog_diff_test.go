package server

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// applyDelta applies a {$v: 2} update's diff to doc as a replica applying
// the oplog does: d removes fields, u sets them in place, i sets them at
// the end (moving one that exists), s<field> applies a nested delta to a
// document or (a: true) an array: l resizes it, u<i> sets element i
// (growing it with nulls), s<i> applies a nested delta to element i.
func applyDelta(t *testing.T, doc bson.D, diff bson.D) bson.D {
	t.Helper()
	out := append(bson.D(nil), doc...)
	index := func(key string) int {
		for i, e := range out {
			if e.Key == key {
				return i
			}
		}
		return -1
	}
	for _, part := range diff {
		switch {
		case part.Key == "d":
			for _, f := range part.Value.(bson.D) {
				if i := index(f.Key); i >= 0 {
					out = append(out[:i], out[i+1:]...)
				}
			}
		case part.Key == "u":
			for _, f := range part.Value.(bson.D) {
				if i := index(f.Key); i >= 0 {
					out[i].Value = f.Value
				} else {
					out = append(out, f)
				}
			}
		case part.Key == "i":
			for _, f := range part.Value.(bson.D) {
				if i := index(f.Key); i >= 0 {
					out = append(out[:i], out[i+1:]...)
				}
				out = append(out, f)
			}
		case strings.HasPrefix(part.Key, "s"):
			i := index(part.Key[1:])
			if i < 0 {
				t.Fatalf("nested delta %q for a field the document lacks: %v", part.Key, doc)
			}
			out[i].Value = applyNested(t, out[i].Value, part.Value.(bson.D))
		default:
			t.Fatalf("unknown delta field %q", part.Key)
		}
	}
	return out
}

// applyNested applies a nested delta to a document or an array.
func applyNested(t *testing.T, v any, diff bson.D) any {
	t.Helper()
	if len(diff) == 0 || diff[0].Key != "a" {
		return applyDelta(t, v.(bson.D), diff)
	}
	arr := append(bson.A(nil), v.(bson.A)...)
	for _, part := range diff[1:] {
		switch {
		case part.Key == "l":
			n := int(part.Value.(int32))
			for len(arr) < n {
				arr = append(arr, nil)
			}
			arr = arr[:n]
		default:
			i, err := strconv.Atoi(part.Key[1:])
			if err != nil {
				t.Fatalf("array delta field %q", part.Key)
			}
			for len(arr) <= i {
				arr = append(arr, nil)
			}
			if part.Key[0] == 'u' {
				arr[i] = part.Value
			} else {
				arr[i] = applyNested(t, arr[i], part.Value.(bson.D))
			}
		}
	}
	return arr
}

// randomValue returns a random value nested at most depth levels.
func randomValue(r *rand.Rand, depth int) any {
	switch k := r.IntN(6); {
	case k == 0 && depth > 0:
		return randomDoc(r, depth-1)
	case k == 1 && depth > 0:
		a := bson.A{}
		for range r.IntN(4) {
			a = append(a, randomValue(r, depth-1))
		}
		return a
	case k == 2:
		return "s" + strconv.Itoa(r.IntN(3))
	case k == 3:
		return nil
	default:
		return int32(r.IntN(3))
	}
}

// randomDoc returns a document of up to five fields from a small set of
// names, so that two random documents share some.
func randomDoc(r *rand.Rand, depth int) bson.D {
	var d bson.D
	for _, name := range r.Perm(6)[:r.IntN(6)] {
		d = append(d, bson.E{Key: string(rune('a' + name)), Value: randomValue(r, depth)})
	}
	return d
}

// mutate returns a random variant of v: values changed, fields added,
// removed or reordered, arrays grown or shrunk.
func mutate(r *rand.Rand, v any, depth int) any {
	switch x := v.(type) {
	case bson.D:
		out := bson.D{}
		for _, e := range x {
			switch r.IntN(5) {
			case 0: // removed
			case 1:
				out = append(out, bson.E{Key: e.Key, Value: mutate(r, e.Value, depth)})
			default:
				out = append(out, e)
			}
		}
		if r.IntN(3) == 0 {
			r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		}
		if r.IntN(2) == 0 {
			k := string(rune('a' + r.IntN(8)))
			found := false
			for _, e := range out {
				found = found || e.Key == k
			}
			if !found {
				out = append(out, bson.E{Key: k, Value: randomValue(r, depth)})
			}
		}
		return out
	case bson.A:
		out := bson.A{}
		for _, e := range x {
			if r.IntN(4) > 0 {
				out = append(out, mutate(r, e, depth))
			}
		}
		for range r.IntN(3) {
			out = append(out, randomValue(r, depth))
		}
		return out
	}
	if r.IntN(2) == 0 {
		return randomValue(r, depth)
	}
	return v
}

// TestUpdateOplogDeltaReplays checks, on random pairs of documents, that
// applying an update entry's o to the document before gives the document
// after, whichever form (delta or replacement) it takes.
func TestUpdateOplogDeltaReplays(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	deltas := 0
	for i := range 5000 {
		pre := append(bson.D{{Key: "_id", Value: int32(i)}}, randomDoc(r, 3)...)
		post := append(bson.D{{Key: "_id", Value: int32(i)}}, mutate(r, pre[1:], 2).(bson.D)...)
		o := updateOplogO(pre, post, nil)
		got := o
		if len(o) == 2 && o[0].Key == "$v" {
			deltas++
			got = applyDelta(t, pre, o[1].Value.(bson.D))
		}
		if !equalDoc(t, got, post) {
			t.Fatalf("case %d:\n pre  %v\n post %v\n o    %v\n gave %v", i, pre, post, o, got)
		}
	}
	if deltas < 1000 {
		t.Fatalf("only %d of 5000 updates were logged as deltas: the test exercises too little", deltas)
	}
}

// TestOplogReplaysToTheCollection writes a random mix of upserts, updates
// (operators, so deltas), replacements, deletes and transactions through
// the driver, then replays local.oplog.rs from the start onto an empty
// copy, as a secondary would, and checks the copy against the collection.
func TestOplogReplaysToTheCollection(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("replay")
	r := rand.New(rand.NewPCG(3, 4))
	write := func(ctx context.Context) error {
		id := int32(r.IntN(20))
		filter := bson.D{{Key: "_id", Value: id}}
		var err error
		switch r.IntN(6) {
		case 0, 1:
			doc := append(bson.D{{Key: "_id", Value: id}}, randomDoc(r, 2)...)
			_, err = coll.ReplaceOne(ctx, filter, doc, options.Replace().SetUpsert(true))
		case 2:
			_, err = coll.DeleteOne(ctx, filter)
		case 3:
			_, err = coll.UpdateOne(ctx, filter, bson.D{
				{Key: "$set", Value: bson.D{{Key: "x." + string(rune('a'+r.IntN(3))), Value: randomValue(r, 1)}}},
				{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}},
			}, options.UpdateOne().SetUpsert(true))
		case 4:
			_, err = coll.UpdateOne(ctx, filter, bson.D{
				{Key: "$push", Value: bson.D{{Key: "list", Value: randomValue(r, 1)}}},
				{Key: "$unset", Value: bson.D{{Key: string(rune('a' + r.IntN(6))), Value: ""}}},
			})
		default:
			_, err = coll.UpdateOne(ctx, filter, bson.D{{Key: "$pop", Value: bson.D{{Key: "list", Value: 1}}}})
		}
		return err
	}
	for range 400 {
		if r.IntN(10) == 0 {
			sess, err := c.StartSession()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
				for range 1 + r.IntN(4) {
					if err := write(ctx); err != nil {
						return nil, err
					}
				}
				return nil, nil
			}); err != nil {
				t.Fatalf("transaction: %v", err)
			}
			sess.EndSession(ctx)
			continue
		}
		if err := write(ctx); err != nil {
			t.Fatalf("write: %v", err)
		}
	}

	copyOf := map[any]bson.D{}
	var apply func(e bson.D)
	apply = func(e bson.D) {
		if get(e, "ns") != "app.replay" && get(e, "op") != "c" {
			return
		}
		o, _ := get(e, "o").(bson.D)
		switch get(e, "op") {
		case "i":
			copyOf[get(o, "_id")] = o
		case "d":
			delete(copyOf, get(o, "_id"))
		case "u":
			id := get(e, "o2", "_id")
			if len(o) == 2 && o[0].Key == "$v" {
				copyOf[id] = applyDelta(t, copyOf[id], o[1].Value.(bson.D))
			} else {
				copyOf[id] = o
			}
		case "c":
			if ops, ok := get(o, "applyOps").(bson.A); ok {
				for _, op := range ops {
					apply(op.(bson.D))
				}
			}
		}
	}
	for _, e := range oplogEntries(t, c, bson.D{}) {
		apply(e)
	}
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.D
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != len(copyOf) {
		t.Fatalf("the collection has %d documents, the replayed copy %d", len(docs), len(copyOf))
	}
	for _, d := range docs {
		if want := copyOf[get(d, "_id")]; !equalDoc(t, want, d) {
			t.Fatalf("document %v: replayed %v", d, want)
		}
	}
}
