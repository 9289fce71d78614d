package dispatcher

import "hash/maphash"

// Key is an event's ordering key under triggers.PerDocument: events with
// the same key start one at a time in stream order, events with different
// keys in parallel. NoKey makes the event a barrier (see Tracker).
//
// A Key is a 64-bit hash, not the document key itself: two documents whose
// keys collide are ordered with each other too, which is stricter than
// per_document requires and never looser, and keeps the tracker's and the
// batcher's bookkeeping free of a string per held event. Keys are seeded
// per process and never stored.
type Key uint64

// NoKey is the key of an event without a document key: a barrier under
// triggers.PerDocument.
const NoKey Key = 0

// keySeed seeds every Key of this process.
var keySeed = maphash.MakeSeed()

// DocumentKey returns the ordering key of a change event whose ns and
// documentKey values (their BSON bytes, each with its own length prefix, so
// that the pair reads back unambiguously) are ns and documentKey. Equal
// pairs give equal keys; the result is never NoKey. It does not allocate.
func DocumentKey(ns, documentKey []byte) Key {
	var h maphash.Hash
	h.SetSeed(keySeed)
	_, _ = h.Write(ns)
	_, _ = h.Write(documentKey)
	if k := Key(h.Sum64()); k != NoKey {
		return k
	}
	return 1
}
