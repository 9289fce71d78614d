package storage

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// valuePair runs the same storage operations on an engine that stores every
// document and oplog entry in a bucket of its own and on one that stores
// every one inline, and compares what they return.
type valuePair struct {
	t       *testing.T
	dirs    [2]string
	engines [2]*Engine
	opts    Options
}

func newValuePair(t *testing.T, opts Options) *valuePair {
	p := &valuePair{t: t, opts: opts, dirs: [2]string{t.TempDir(), t.TempDir()}}
	p.open()
	t.Cleanup(func() {
		for _, e := range p.engines {
			if e != nil {
				_ = e.Close()
			}
		}
	})
	return p
}

func (p *valuePair) open() {
	p.t.Helper()
	for i, over := range []int{-1, math.MaxInt32} {
		o := p.opts
		o.Dir, o.OwnBucketOver = p.dirs[i], over
		e, err := Open(o)
		if err != nil {
			p.t.Fatalf("open (OwnBucketOver %d): %v", over, err)
		}
		p.engines[i] = e
	}
}

func (p *valuePair) close() {
	p.t.Helper()
	for i, e := range p.engines {
		if err := e.Close(); err != nil {
			p.t.Fatal(err)
		}
		p.engines[i] = nil
	}
}

// update runs fn in a write transaction on both engines; fn's result and
// error message must be the same.
func (p *valuePair) update(name string, fn func(tx *Tx) (string, error)) {
	p.t.Helper()
	var got [2]string
	for i, e := range p.engines {
		var out string
		err := e.Update(func(tx *Tx) error {
			var err error
			out, err = fn(tx)
			return err
		})
		got[i] = fmt.Sprintf("%s err=%v", out, err)
	}
	if got[0] != got[1] {
		p.t.Fatalf("%s: own buckets and inline differ:\nown:    %.600s\ninline: %.600s", name, got[0], got[1])
	}
}

// compare checks that both engines hold the same catalog, documents,
// statistics and oplog, read through every read path.
func (p *valuePair) compare(name string) {
	p.t.Helper()
	var snap [2]string
	for i, e := range p.engines {
		snap[i] = engineSnapshot(p.t, e)
	}
	if snap[0] != snap[1] {
		a, b := snap[0], snap[1]
		j := 0
		for j < len(a) && j < len(b) && a[j] == b[j] {
			j++
		}
		p.t.Fatalf("%s: own buckets and inline engines differ at byte %d:\nown:    %.300s\ninline: %.300s", name, j, a[max(j-100, 0):], b[max(j-100, 0):])
	}
}

// engineSnapshot renders everything a reader of e can see, with collection
// UUIDs (random per engine) left out.
func engineSnapshot(t *testing.T, e *Engine) string {
	t.Helper()
	var b strings.Builder
	err := e.View(func(tx *Tx) error {
		dbs, err := tx.Databases()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "dbs %+v oplog %d\n", dbs, tx.OplogSize())
		cols, err := tx.Collections("")
		if err != nil {
			return err
		}
		for _, c := range cols {
			n, size := tx.Stats(c)
			fmt.Fprintf(&b, "coll %s id %d indexes %v stats %d %d\n", c.Namespace(), c.ID, c.Indexes, n, size)
			var ids []any
			err := tx.Scan(c, 0, func(rid RecordID, raw bson.Raw) (bool, error) {
				fmt.Fprintf(&b, " %d %s\n", rid, hex.EncodeToString(raw))
				id, err := firstValue(raw)
				ids = append(ids, id)
				return true, err
			})
			if err != nil {
				return err
			}
			for _, id := range ids {
				rid, doc, ok, err := tx.Get(c, id)
				if err != nil {
					return err
				}
				raw, rok, err := tx.GetRaw(c, id)
				if err != nil {
					return err
				}
				ldoc, lok, err := tx.Load(c, rid)
				if err != nil {
					return err
				}
				enc, _ := bson.Marshal(doc)
				lenc, _ := bson.Marshal(ldoc)
				if !ok || !rok || !lok || !bytes.Equal(enc, raw) || !bytes.Equal(lenc, raw) {
					return fmt.Errorf("%s: _id %v: Get, GetRaw and Load disagree", c.Namespace(), id)
				}
				for _, spec := range c.Indexes {
					if !spec.Unique {
						continue
					}
					var vals []any
					for _, k := range spec.Key {
						v, _ := lookupField(doc, k.Key)
						vals = append(vals, v)
					}
					urid, _, uok, err := tx.LookupUnique(c, spec.Name, vals)
					if err != nil {
						return err
					}
					fmt.Fprintf(&b, " unique %s %v → %d %v\n", spec.Name, vals, urid, uok)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	err = e.OplogRawAfter(bson.Timestamp{}, func(r *RawOplogEntry) bool {
		ent, err := r.Decode()
		if err != nil {
			t.Fatalf("decode oplog entry %v: %v", r.TS, err)
		}
		ent.UUID = bson.Binary{}
		for i := range ent.Extra {
			if ent.Extra[i].Key == "dropTarget" {
				ent.Extra[i].Value = nil
			}
		}
		enc, err := bson.Marshal(ent)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := r.Lookup("doc")
		fmt.Fprintf(&b, "oplog %v %s %s.%s %d doc %d %s\n", r.TS, r.Op, r.DB, r.Coll, len(r.Raw), len(doc.Data), hex.EncodeToString(enc))
		return true
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// The filtered reader: inserts are skipped on their header.
	err = e.OplogRawAfterIn(bson.Timestamp{}, func(h *OplogEntry) bool { return h.Op != "insert" }, func(r *RawOplogEntry) bool {
		fmt.Fprintf(&b, "in %v %s %s.%s %d\n", r.TS, r.Op, r.DB, r.Coll, len(r.Raw))
		return true
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return b.String()
}

// bigTestDoc is document id with a string field of about size bytes and a
// field u for a unique index.
func bigTestDoc(id, u, size int) bson.D {
	pad := make([]byte, size)
	for i := range pad {
		pad[i] = byte('a' + (id+i)%26)
	}
	return bson.D{{Key: "_id", Value: int32(id)}, {Key: "u", Value: int32(u)}, {Key: "pad", Value: string(pad)}}
}

// The sizes the differential test uses: small values, values around the
// page size, and values of many pages.
var valueTestSizes = []int{0, 100, 900, 960, 1000, 1984, 2100, 4000, 4097, 20_000, 70_000}

// Every storage operation gives the same results whether every document and
// oplog entry is stored in a bucket of its own or none is: writes, every
// read path,
// unique indexes built over stored documents, multi-document transactions
// (whose snapshots are rebuilt from the oplog's pre-images), renames, drops,
// oplog truncation by size and age, and reopening; afterwards the
// consistency check finds every value bucket holding its value alone.
func TestOwnBucketsMatchInline(t *testing.T) {
	// The engines' janitors read the clock while the test advances it.
	var clockMu sync.Mutex
	clock := time.Unix(1_800_000_000, 0)
	advance := func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	// No periodic no-ops: the two engines compared must write the same entries.
	p := newValuePair(t, Options{OplogMaxBytes: 3 << 20, OplogMaxAge: time.Hour, Now: now, NoopInterval: -1})
	rng := rand.New(rand.NewPCG(7, 11))
	size := func() int { return valueTestSizes[rng.IntN(len(valueTestSizes))] }
	coll := func(tx *Tx, db, name string) *Collection {
		c, err := tx.Collection(db, name)
		if err != nil || c == nil {
			t.Fatalf("collection %s.%s: %v %v", db, name, c, err)
		}
		return c
	}
	p.update("create", func(tx *Tx) (string, error) {
		if _, err := tx.CreateCollection("app", "a", bson.D{{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}}); err != nil {
			return "", err
		}
		_, err := tx.CreateCollection("app", "b", nil)
		return "", err
	})
	// Inserts, through the decoded and the raw path, in batches.
	for batch := range 8 {
		sizes := make([]int, 10)
		for i := range sizes {
			sizes[i] = size()
		}
		p.update("insert", func(tx *Tx) (string, error) {
			a := coll(tx, "app", "a")
			var out []string
			for i, sz := range sizes {
				id := batch*10 + i
				doc := bigTestDoc(id, id, sz)
				var rid RecordID
				var err error
				if id%2 == 0 {
					rid, err = tx.Insert(a, doc)
				} else {
					raw, _ := bson.Marshal(doc)
					rid, err = tx.InsertRaw(a, raw)
				}
				out = append(out, fmt.Sprint(rid, err))
			}
			return strings.Join(out, ","), nil
		})
		advance(time.Second)
	}
	p.compare("after inserts")
	p.update("unique index over stored documents", func(tx *Tx) (string, error) {
		a := coll(tx, "app", "a")
		ok, err := tx.CreateIndex(a, IndexSpec{Name: "u_1", Key: bson.D{{Key: "u", Value: int32(1)}}, Unique: true})
		if err != nil {
			return "", err
		}
		_, derr := tx.Insert(a, bigTestDoc(1000, 3, 20_000))
		return fmt.Sprint(ok, " duplicate: ", derr), nil
	})
	// Replacements across every size boundary, and deletes.
	for round := range 4 {
		ids := rng.Perm(80)[:25]
		sizes := make([]int, len(ids))
		for i := range sizes {
			sizes[i] = size()
		}
		p.update("replace and delete", func(tx *Tx) (string, error) {
			a := coll(tx, "app", "a")
			var out []string
			for i, id := range ids {
				rid, _, ok, err := tx.Get(a, int32(id))
				if err != nil {
					return "", err
				}
				if !ok {
					out = append(out, "missing")
					continue
				}
				if (id+round)%5 == 0 {
					ok, err := tx.Delete(a, rid)
					out = append(out, fmt.Sprint("delete ", ok, err))
					continue
				}
				err = tx.Replace(a, rid, bigTestDoc(id, id+100*(round+1), sizes[i]), "replace")
				out = append(out, fmt.Sprint("replace ", err))
			}
			return strings.Join(out, ","), nil
		})
		advance(time.Second)
	}
	p.compare("after replacements and deletes")
	// A transaction whose snapshot is rebuilt from later oplog entries.
	var at [2]bson.Timestamp
	for i, e := range p.engines {
		at[i] = e.LastOpTime()
	}
	p.update("writes after the snapshot", func(tx *Tx) (string, error) {
		a := coll(tx, "app", "a")
		for id := 1; id < 80; id += 7 {
			if rid, _, ok, err := tx.Get(a, int32(id)); err != nil {
				return "", err
			} else if ok {
				if err := tx.Replace(a, rid, bigTestDoc(id, id+1000, 30_000), "update"); err != nil {
					return "", err
				}
			}
		}
		_, err := tx.Insert(a, bigTestDoc(500, 500, 25_000))
		return "", err
	})
	var txnOut [2]string
	for i, e := range p.engines {
		var seen []string
		ops, err := e.InShadow(&Snapshot{At: at[i]}, func(tx *Tx) error {
			a := coll(tx, "app", "a")
			if _, _, ok, err := tx.Get(a, int32(500)); err != nil || ok {
				return fmt.Errorf("the snapshot sees a later insert: %v %v", ok, err)
			}
			if _, err := tx.Insert(a, bigTestDoc(600, 600, 40_000)); err != nil {
				return err
			}
			// The documents the writes after the snapshot replaced are seen
			// as they were (rebuilt from their oplog entries' pre-images);
			// others are written.
			for id := 1; id < 80; id += 7 {
				_, doc, ok, err := tx.Get(a, int32(id))
				if err != nil {
					return err
				}
				seen = append(seen, fmt.Sprint(ok, doc))
				rid, _, ok, err := tx.Get(a, int32(id+1))
				if err != nil {
					return err
				}
				if ok {
					if err := tx.Replace(a, rid, bigTestDoc(id+1, 3000+id, 6000), "replace"); err != nil {
						return err
					}
				}
			}
			return nil
		})
		var enc []string
		for _, op := range ops {
			op.UUID = bson.Binary{}
			b, _ := bson.Marshal(op)
			enc = append(enc, hex.EncodeToString(b))
		}
		_, cerr := e.CommitTxn(at[i], ops, &TxnInfo{TxnNumber: 1}, nil)
		txnOut[i] = fmt.Sprint(seen, enc, err, cerr)
		ops, err = e.InShadow(&Snapshot{At: e.LastOpTime()}, func(tx *Tx) error {
			_, err := tx.Insert(coll(tx, "app", "a"), bigTestDoc(601, 601, 9000))
			return err
		})
		_, cerr = e.CommitTxn(e.LastOpTime(), ops, &TxnInfo{TxnNumber: 2}, nil)
		txnOut[i] += fmt.Sprint(len(ops), err, cerr)
	}
	if txnOut[0] != txnOut[1] {
		t.Fatalf("transactions differ:\nown:    %.500s\ninline: %.500s", txnOut[0], txnOut[1])
	}
	p.compare("after transactions")
	p.close()
	p.open()
	p.compare("after reopening")
	// Renames and drops remove the documents' value buckets with them.
	p.update("rename, drops", func(tx *Tx) (string, error) {
		if err := tx.RenameCollection("app", "a", "app", "b", true); err != nil {
			return "", err
		}
		c, err := tx.CreateCollection("other", "x", nil)
		if err != nil {
			return "", err
		}
		for id := range 5 {
			if _, err := tx.Insert(c, bigTestDoc(id, id, 30_000)); err != nil {
				return "", err
			}
		}
		if _, err := tx.Insert(coll(tx, "app", "b"), bigTestDoc(9999, 9999, 50_000)); err != nil {
			return "", err
		}
		ok, err := tx.DropDatabase("other")
		return fmt.Sprint(ok), err
	})
	p.compare("after rename and drops")
	// Enough large writes to truncate the oplog by size, then by age.
	for round := range 12 {
		p.update("fill the oplog", func(tx *Tx) (string, error) {
			c, err := tx.EnsureCollection("app", "log")
			if err != nil {
				return "", err
			}
			for i := range 10 {
				if _, err := tx.Insert(c, bigTestDoc(round*10+i, 0, 20_000+i)); err != nil {
					return "", err
				}
			}
			return "", nil
		})
		advance(time.Second)
	}
	p.compare("after truncation by size")
	advance(2 * time.Hour)
	p.update("truncate by age", func(tx *Tx) (string, error) {
		c, err := tx.EnsureCollection("app", "log")
		if err != nil {
			return "", err
		}
		rid, _, ok, err := tx.Get(c, int32(5))
		if err != nil || !ok {
			return "", fmt.Errorf("get 5: %v %v", ok, err)
		}
		_, err = tx.Delete(c, rid)
		return "", err
	})
	p.compare("after truncation by age")
	for i, e := range p.engines {
		if err := e.trimByAge(); err != nil {
			t.Fatal(err)
		}
		if i == 0 && e.OldestOpTime() == (bson.Timestamp{}) {
			t.Fatal("no oldest op time")
		}
	}
	p.compare("after the janitor's truncation")
	counts := [2][2]int{}
	for i, e := range p.engines {
		counts[i] = valueBucketCounts(t, e)
	}
	if counts[0][0] == 0 || counts[0][1] == 0 || counts[1] != [2]int{} {
		t.Fatalf("value buckets (documents, oplog): %v with every value in one, %v with none; want some and none", counts[0], counts[1])
	}
	p.close()
	for _, dir := range p.dirs {
		if err := checkFile(filepath.Join(dir, "devdb.bbolt"), time.Minute); err != nil {
			t.Errorf("consistency check of %s: %v", dir, err)
		}
	}
}

// valueBucketCounts returns how many documents and oplog entries e stores
// in buckets of their own.
func valueBucketCounts(t *testing.T, e *Engine) [2]int {
	t.Helper()
	var n [2]int
	count := func(b *bolt.Bucket) int {
		k := 0
		_ = b.ForEachBucket(func([]byte) error { k++; return nil })
		return k
	}
	err := e.db.View(func(btx *bolt.Tx) error {
		data := btx.Bucket(bucketData)
		err := data.ForEachBucket(func(id []byte) error {
			n[0] += count(data.Bucket(id).Bucket(keyDocs))
			return nil
		})
		n[1] = count(btx.Bucket(bucketOplog))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
