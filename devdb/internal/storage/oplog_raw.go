package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// RawOplogEntry is one encoded oplog entry with the fields that say what it
// concerns (TS, Op, DB, Coll, ToDB, ToColl) decoded, so a reader can decide
// whether it wants the entry before decoding its documents. Raw is a copy
// owned by the caller.
type RawOplogEntry struct {
	TS     bson.Timestamp
	Op     string
	DB     string
	Coll   string
	ToDB   string
	ToColl string
	// Raw is the whole encoded entry (the BSON form of OplogEntry).
	Raw bson.Raw

	// parsed reports that vals holds the values of rawFields (Type 0:
	// absent), pointing into Raw.
	parsed bool
	vals   [len(rawFields)]bsoncore.Value
}

// Decode decodes the whole entry.
func (r *RawOplogEntry) Decode() (*OplogEntry, error) {
	ent := new(OplogEntry)
	if err := bson.Unmarshal(r.Raw, ent); err != nil {
		return nil, err
	}
	return ent, nil
}

// rawFields are the top-level fields whose values parseRawOplogEntry
// records, so Lookup finds them without scanning the entry again.
var rawFields = [...]string{"wall", "uuid", "documentKey", "doc", "pre", "diff", "images", "lsid"}

// Lookup returns the encoded value of the entry's top-level field key
// ("doc", "documentKey", "pre", "uuid", "wall", "images", …), or ok false
// when the entry has no such field.
func (r *RawOplogEntry) Lookup(key string) (bsoncore.Value, bool) {
	for i, f := range rawFields {
		if f == key && r.parsed {
			return r.vals[i], r.vals[i].Type != 0
		}
	}
	v, err := bsoncore.Document(r.Raw).LookupErr(key)
	if err != nil {
		return bsoncore.Value{}, false
	}
	return v, true
}

// parseRawOplogEntry fills the header fields of r and the values of
// rawFields from r.Raw. It returns false when the entry is not shaped as
// appendOplog writes it (the caller then decodes it fully, to report the
// same error as the decoding reference in the tests).
//
// It validates as it walks: the declared length must be the entry's length
// and end in a NUL, and walkOplogEntry reads every top-level element
// bounded by the remaining bytes with the same length rules as
// bsoncore.Document.Validate, so an entry it accepts passes Validate
// (FuzzParseRawOplogEntryValidates) and no separate Validate pass is needed.
func parseRawOplogEntry(r *RawOplogEntry) bool {
	if len(r.Raw) < 5 || int(int32(binary.LittleEndian.Uint32(r.Raw))) != len(r.Raw) || r.Raw[len(r.Raw)-1] != 0 {
		return false
	}
	h := oplogHeader{ts: &r.TS, op: &r.Op, db: &r.DB, coll: &r.Coll, toDB: &r.ToDB, toColl: &r.ToColl}
	r.parsed = walkOplogEntry(r.Raw, h, func(key []byte, v bsoncore.Value) {
		for i, f := range rawFields {
			if f == string(key) && r.vals[i].Type == 0 {
				r.vals[i] = v
			}
		}
	})
	return r.parsed
}

// oplogHeader points at where walkOplogEntry stores an entry's header
// fields.
type oplogHeader struct {
	ts                         *bson.Timestamp
	op, db, coll, toDB, toColl *string
	// view stores the strings as views of raw's bytes instead of copies:
	// valid only while raw is (parseOplogHeaderView).
	view bool
}

// walkOplogEntry reads the top-level fields of the encoded entry raw,
// storing the header fields through h and handing every other field to
// other (when not nil). It returns false when raw is not shaped as
// appendOplog writes it (no ts, or a header field of the wrong type); it
// does not validate raw.
func walkOplogEntry(raw []byte, h oplogHeader, other func(key []byte, v bsoncore.Value)) bool {
	if len(raw) < 5 {
		return false
	}
	rest := raw[4 : len(raw)-1]
	haveTS := false
	for len(rest) > 0 {
		t := bsoncore.Type(rest[0])
		end := bytes.IndexByte(rest[1:], 0)
		if end < 0 {
			return false
		}
		key := rest[1 : 1+end]
		v, next, ok := bsoncore.ReadValue(rest[2+end:], t)
		if !ok {
			return false
		}
		rest = next
		var dst *string
		switch string(key) {
		case "ts":
			ts, inc, ok := v.TimestampOK()
			if !ok {
				return false
			}
			*h.ts, haveTS = bson.Timestamp{T: ts, I: inc}, true
			continue
		case "op":
			dst = h.op
		case "db":
			dst = h.db
		case "coll":
			dst = h.coll
		case "toDB":
			dst = h.toDB
		case "toColl":
			dst = h.toColl
		default:
			if other != nil {
				other(key, v)
			}
			continue
		}
		var s string
		if h.view {
			s, ok = stringView(v)
		} else {
			s, ok = v.StringValueOK()
		}
		if !ok {
			return false
		}
		*dst = s
	}
	return haveTS
}

// stringView returns the BSON string v as a string sharing v's bytes (no
// copy), or false when v is not a well-formed string.
func stringView(v bsoncore.Value) (string, bool) {
	if v.Type != bsoncore.TypeString || len(v.Data) < 5 {
		return "", false
	}
	n := int(int32(binary.LittleEndian.Uint32(v.Data)))
	if n < 1 || 4+n > len(v.Data) || v.Data[3+n] != 0 {
		return "", false
	}
	if n == 1 {
		return "", true
	}
	return unsafe.String(&v.Data[4], n-1), true
}

// oplogChunk bounds how many entries OplogRawAfter returns per read
// transaction, and oplogScanChunk how many it reads (entries skipped by
// OplogRawAfterIn's in are read but not returned).
const (
	oplogChunk     = 512
	oplogScanChunk = 8 * oplogChunk
)

// rawSlabSize is the size of the slabs OplogRawAfterIn copies entries
// into; larger entries are copied alone.
const rawSlabSize = 64 << 10

// rawBatchPool holds OplogRawAfterIn's chunk slices (capacity oplogChunk,
// cleared before they are put back).
var rawBatchPool = sync.Pool{New: func() any { b := make([]RawOplogEntry, 0, oplogChunk); return &b }}

// parseOplogHeaderView reads the header fields (TS, Op, DB, Coll, ToDB,
// ToColl) of the encoded entry raw into h without validating or copying the
// rest; h's strings share raw's bytes: nothing is allocated, and they are
// valid only while raw is (inside the storage transaction that read it);
// clone them to keep them. It returns false when raw is not shaped as
// appendOplog writes it.
func parseOplogHeaderView(raw []byte, h *OplogEntry) bool {
	return walkOplogEntry(raw, oplogHeader{ts: &h.TS, op: &h.Op, db: &h.DB, coll: &h.Coll, toDB: &h.ToDB, toColl: &h.ToColl, view: true}, nil)
}

// ErrHistoryLost is returned by OplogRawAfter and OplogRawAfterIn when
// entries after the reader's position are no longer retained: retention
// removed an entry later than the position (Engine.HistoryStart).
var ErrHistoryLost = errors.New("oplog entries after the position were removed")

// OplogRawAfter calls fn for every retained entry with TS > after, in order,
// until fn returns false or the committed end is reached; fn gets each
// entry's header fields and encoded form, and decodes what it needs. An
// entry whose header cannot be read fails it with "decode oplog entry". fn
// runs outside any storage transaction, so it may block or call the engine.
// The *RawOplogEntry is valid only during its fn call (the entries are
// reused); its Raw may be kept.
func (e *Engine) OplogRawAfter(after bson.Timestamp, fn func(*RawOplogEntry) bool) error {
	return e.OplogRawAfterIn(after, nil, fn)
}

// OplogRawAfterIn is OplogRawAfter for a reader interested only in entries
// for which in returns true (nil: all): the others reach fn with their
// header fields only (TS, Op, DB, Coll, ToDB, ToColl; Raw nil), without
// their encoded form being copied out of storage, and a run of them in a
// row reaches fn as its last entry only (a reader that skips them needs
// only to know how far the scan got). in sees a header-only entry whose
// strings share storage's bytes: it must not keep the entry or its strings
// after it returns. A change stream scanning past other collections' writes
// uses it.
//
// Every read checks, in the storage transaction that reads, that the
// oplog still holds every entry after its position (the first read's
// position is after, the next ones where the previous stopped): otherwise
// it returns ErrHistoryLost, having passed fn only entries with no gap
// before them. An after of zero reads from the oldest retained entry and is
// never lost.
func (e *Engine) OplogRawAfterIn(after bson.Timestamp, in func(*OplogEntry) bool, fn func(*RawOplogEntry) bool) error {
	start := packTS(after) + 1
	if packTS(after) == ^uint64(0) {
		return nil
	}
	// The chunk's entries live in a pooled slice of oplogChunk (no growing
	// per read), and their encoded forms are copied into shared slabs (one
	// allocation per slab, not per entry; a slab is never written where a
	// copy was handed out, so fn may keep an entry's Raw).
	bp := rawBatchPool.Get().(*[]RawOplogEntry)
	defer func() {
		clear((*bp)[:cap(*bp)])
		rawBatchPool.Put(bp)
	}()
	var slab []byte
	copyRaw := func(v []byte) bson.Raw {
		if len(v) > rawSlabSize/4 {
			return append(bson.Raw(nil), v...)
		}
		if cap(slab)-len(slab) < len(v) {
			slab = make([]byte, 0, rawSlabSize)
		}
		n := len(slab)
		slab = append(slab, v...)
		return bson.Raw(slab[n:len(slab):len(slab)])
	}
	for {
		batch := (*bp)[:0]
		more := false
		err := e.db.View(func(btx *bolt.Tx) error {
			oplog := btx.Bucket(bucketOplog)
			c := oplog.Cursor()
			// Retention trims from the oldest end in other transactions;
			// checked here, in the read's own snapshot, a trim can never
			// fall between the check and the read. Only a removed entry at
			// or after start is lost: the reader's own last entry may be
			// gone (a caught-up reader when the next write trims by age).
			if start > 1 && historyStartIn(btx) > start {
				return ErrHistoryLost
			}
			scanned := 0
			var hdr OplogEntry // reused: in may not keep it
			var k, v []byte
			for k, v = c.Seek(u64(start)); k != nil && len(batch) < oplogChunk && scanned < oplogScanChunk; k, v = c.Next() {
				scanned++
				if v == nil {
					// An entry in a bucket of its own.
					var err error
					if v, err = e.entryValue(oplog, k); err != nil {
						return err
					}
				}
				if in != nil {
					// Read in place: v is valid only in this transaction,
					// so only the header, with its strings cloned, may
					// leave it.
					hdr = OplogEntry{}
					if parseOplogHeaderView(v, &hdr) && !in(&hdr) {
						skip := RawOplogEntry{TS: hdr.TS, Op: strings.Clone(hdr.Op), DB: strings.Clone(hdr.DB), Coll: strings.Clone(hdr.Coll),
							ToDB: strings.Clone(hdr.ToDB), ToColl: strings.Clone(hdr.ToColl)}
						if n := len(batch); n > 0 && batch[n-1].Raw == nil {
							batch[n-1] = skip // a run of skipped entries: its last
						} else {
							batch = append(batch, skip)
						}
						continue
					}
				}
				r, err := newRawOplogEntry(k, copyRaw(v))
				if err != nil {
					return err
				}
				batch = append(batch, r)
			}
			more = k != nil
			return nil
		})
		if errors.Is(err, ErrHistoryLost) {
			return ErrHistoryLost
		}
		if err != nil {
			return fmt.Errorf("read oplog: %w", err)
		}
		for i := range batch {
			if !fn(&batch[i]) {
				return nil
			}
		}
		// A read that stopped at either bound, not at the committed end,
		// goes on: a run of skipped entries longer than the scan bound
		// must not look like the end of the oplog.
		if !more || len(batch) == 0 {
			return nil
		}
		start = packTS(batch[len(batch)-1].TS) + 1
	}
}

// OplogRawBefore calls fn for every retained oplog entry before before (a
// zero before: every entry), newest first, until fn returns false. It
// reads in chunks, each in its own read transaction, and calls fn outside
// any transaction, so fn may wait as long as it likes (a cursor across
// getMores). Entries the retention bounds remove meanwhile are not seen:
// reading backwards, the oldest end is where the read stops anyway.
func (e *Engine) OplogRawBefore(before bson.Timestamp, fn func(*RawOplogEntry) bool) error {
	end := packTS(before) // exclusive; 0: after the newest entry
	for {
		var batch []RawOplogEntry
		more := false
		err := e.db.View(func(btx *bolt.Tx) error {
			oplog := btx.Bucket(bucketOplog)
			c := oplog.Cursor()
			// The newest entry before end: the one before the first at
			// or after end, or the last when there is none.
			var k, v []byte
			if at, _ := c.Seek(u64(end)); end == 0 || at == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
			for ; k != nil && len(batch) < oplogChunk; k, v = c.Prev() {
				if v == nil {
					// An entry in a bucket of its own.
					var err error
					if v, err = e.entryValue(oplog, k); err != nil {
						return err
					}
				}
				r, err := newRawOplogEntry(k, bytes.Clone(v))
				if err != nil {
					return err
				}
				batch = append(batch, r)
			}
			more = k != nil
			return nil
		})
		if err != nil {
			return fmt.Errorf("read oplog: %w", err)
		}
		for i := range batch {
			if !fn(&batch[i]) {
				return nil
			}
		}
		if !more || len(batch) == 0 {
			return nil
		}
		end = packTS(batch[len(batch)-1].TS)
	}
}

// entryValue reads the oplog entry stored under k in a bucket of its own
// (a cursor's nil value); a damaged one is a DamagedError.
func (e *Engine) entryValue(oplog *bolt.Bucket, k []byte) ([]byte, error) {
	v, err := cursorValue(oplog, k, nil)
	if err != nil {
		return nil, &DamagedError{Dir: e.dir, Err: fmt.Errorf("oplog entry %v: %w", unpackTS(binary.BigEndian.Uint64(k)), err)}
	}
	return v, nil
}

// newRawOplogEntry returns the entry raw, stored under k, with its header
// parsed; an entry not shaped as appendOplog writes it is decoded in full
// instead, to report the decoding error.
func newRawOplogEntry(k []byte, raw bson.Raw) (RawOplogEntry, error) {
	r := RawOplogEntry{Raw: raw}
	if parseRawOplogEntry(&r) {
		return r, nil
	}
	ent := new(OplogEntry)
	if err := bson.Unmarshal(raw, ent); err != nil {
		return RawOplogEntry{}, fmt.Errorf("decode oplog entry %x: %w", k, err)
	}
	return RawOplogEntry{TS: ent.TS, Op: ent.Op, DB: ent.DB, Coll: ent.Coll, ToDB: ent.ToDB, ToColl: ent.ToColl, Raw: raw}, nil
}

// OplogMaxBytes is the oplog's size bound (Options.OplogMaxBytes, or its
// default).
func (e *Engine) OplogMaxBytes() int64 { return e.opts.OplogMaxBytes }

// OplogUUID returns local.oplog.rs's UUID (binary subtype 4): made when
// the data directory is, and the same at every later open of it, as a
// replica set member's oplog keeps its UUID across restarts.
func (e *Engine) OplogUUID() bson.Binary {
	return bson.Binary{Subtype: bson.TypeBinaryUUID, Data: bytes.Clone(e.oplogUUID[:])}
}

// loadOplogUUID reads the oplog's UUID from meta, or makes one and writes
// it there (a new data directory, or one written before devdb kept it).
func (e *Engine) loadOplogUUID(meta *bolt.Bucket) error {
	if v := meta.Get(keyOplogUUID); len(v) == len(e.oplogUUID) {
		copy(e.oplogUUID[:], v)
		return nil
	}
	u, err := newUUID()
	if err != nil {
		return err
	}
	copy(e.oplogUUID[:], u.Data)
	return meta.Put(keyOplogUUID, u.Data)
}
