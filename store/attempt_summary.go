package store

import (
	"encoding/binary"
	"math"
	"math/big"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// A bucket's key summary.
//
// Lookups by webhook-id and by document key read no index: a bucket written
// now holds, in its top-level "keys" field, a Bloom filter of its records'
// distinct webhook-ids and document keys, which the reader tests before it
// fetches and decodes the bucket's records (a false positive costs one
// bucket read; a false negative cannot happen). The field is binary subtype
// 0x80 holding
//
//	version  1 byte, 0x01
//	probes   1 byte k, 1..32
//	bits     m/8 bytes, m a multiple of 64: bit i is byte i/8's bit i%8
//
// A value with the 64-bit hash h sets the bits (h1 + j·h2) mod m for j in
// 0..k-1, where h1 is h's low 32 bits and h2 its high 32 bits with the
// lowest bit set. h is the FNV-1a 64-bit hash, finished by MurmurHash3's
// fmix64, of a tag byte ('w' for a webhook-id, 'd' for a document key)
// followed by the value: a webhook-id's bytes, or a document key's
// canonical form (summaryKeyHash), in which documents equal as MongoDB
// compares them (numbers by value across types, string and symbol alike)
// are the same. The hash is part of the format: never change it.
const (
	summaryVersion1 = 0x01
	// summaryProbes is k; with summaryBitsPerValue bits per value a
	// filter answers yes for an absent value about 1% of the time.
	summaryProbes       = 7
	summaryBitsPerValue = 10
)

// fnv64 is an FNV-1a 64-bit hash being computed.
type fnv64 uint64

const (
	fnvOffset64 fnv64 = 14695981039346656037
	fnvPrime64  fnv64 = 1099511628211
)

func (h *fnv64) byte(c byte) { *h = (*h ^ fnv64(c)) * fnvPrime64 }

// string and bytes hash in a local variable, which the compiler keeps in
// a register (through h, every byte was a load and a store).
func (h *fnv64) string(s string) {
	x := *h
	for i := 0; i < len(s); i++ {
		x = (x ^ fnv64(s[i])) * fnvPrime64
	}
	*h = x
}

func (h *fnv64) bytes(p []byte) {
	x := *h
	for _, c := range p {
		x = (x ^ fnv64(c)) * fnvPrime64
	}
	*h = x
}

func (h *fnv64) uint64(x uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], x)
	h.bytes(b[:])
}

// sum finishes h (MurmurHash3's fmix64).
func (h fnv64) sum() uint64 {
	x := uint64(h)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// summaryWebhookHash is a webhook-id's hash in the key summary.
func summaryWebhookHash(id string) uint64 {
	h := fnvOffset64
	h.byte('w')
	h.string(id)
	return h.sum()
}

// summaryKeyHash is a document key's hash in the key summary: the hash of
// its canonical form, the same for documents MongoDB finds equal (and so
// for the keys a documentKeys equality match found in buckets of the
// format with indexed arrays). A key that is not valid BSON hashes as its
// bytes.
func summaryKeyHash(key bson.Raw) uint64 {
	h := fnvOffset64
	h.byte('d')
	if len(key) == 22 && [9]byte(key[:9]) == objectIDKeyPrefix && key[21] == 0 {
		// {_id: ObjectId}, the usual key: canonicalDoc's bytes without
		// reading the element.
		h.string("_id")
		h.byte(0)
		h.byte(byte(bsoncore.TypeObjectID))
		h.bytes(key[9:21])
		h.byte(canonEnd)
		return h.sum()
	}
	if !canonicalDoc(&h, bsoncore.Document(key), 0) {
		h = fnvOffset64
		h.byte('d')
		h.byte(0xff)
		h.bytes(key)
	}
	return h.sum()
}

// Canonical classes of values in summaryKeyHash (MongoDB's canonical type
// ranks where several BSON types share one: numbers, string and symbol).
const (
	canonNumber byte = 0xf0 + iota
	canonString
	canonDocument
	canonArray
	canonEnd
)

// maxCanonicalDepth bounds the nesting summaryKeyHash walks (documentKeys
// are at most MaxRecordDocumentKey bytes; BSON nests at most 100 deep in
// MongoDB).
const maxCanonicalDepth = 200

// canonicalDoc adds the elements of doc (a document or an array's
// document, names included) and an end marker to h; it reports false for
// data that is not BSON.
func canonicalDoc(h *fnv64, doc bsoncore.Document, depth int) bool {
	if depth > maxCanonicalDepth || len(doc) < 5 {
		return false
	}
	n := int(binary.LittleEndian.Uint32(doc))
	if n != len(doc) || doc[n-1] != 0 {
		return false
	}
	rest := doc[4 : n-1]
	for len(rest) > 0 {
		e, r, ok := bsoncore.ReadElement(rest)
		if !ok {
			return false
		}
		rest = r
		h.string(e.Key())
		h.byte(0)
		if !canonicalValue(h, e.Value(), depth) {
			return false
		}
	}
	h.byte(canonEnd)
	return true
}

// canonicalValue adds v's canonical form to h.
func canonicalValue(h *fnv64, v bsoncore.Value, depth int) bool {
	switch v.Type {
	case bsoncore.TypeDouble, bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDecimal128:
		f, ok := numberAsFloat(v)
		if !ok {
			return false
		}
		h.byte(canonNumber)
		h.uint64(canonicalFloatBits(f))
	case bsoncore.TypeString, bsoncore.TypeSymbol:
		s, ok := v.StringValueOK()
		if !ok {
			if s, ok = v.SymbolOK(); !ok {
				return false
			}
		}
		h.byte(canonString)
		h.string(s)
		h.byte(0)
	case bsoncore.TypeEmbeddedDocument:
		d, ok := v.DocumentOK()
		if !ok {
			return false
		}
		h.byte(canonDocument)
		return canonicalDoc(h, d, depth+1)
	case bsoncore.TypeArray:
		a, ok := v.ArrayOK()
		if !ok {
			return false
		}
		h.byte(canonArray)
		return canonicalDoc(h, bsoncore.Document(a), depth+1)
	case bsoncore.TypeCodeWithScope:
		// Its scope compares as a document (by value): the code alone.
		code, _, ok := v.CodeWithScopeOK()
		if !ok {
			return false
		}
		h.byte(byte(v.Type))
		h.string(code)
	default:
		h.byte(byte(v.Type))
		h.bytes(v.Data)
	}
	return true
}

// numberAsFloat returns a number's value rounded to the nearest float64:
// numbers MongoDB finds equal (their exact values equal) round alike.
func numberAsFloat(v bsoncore.Value) (float64, bool) {
	switch v.Type {
	case bsoncore.TypeDouble:
		return v.DoubleOK()
	case bsoncore.TypeInt32:
		i, ok := v.Int32OK()
		return float64(i), ok
	case bsoncore.TypeInt64:
		i, ok := v.Int64OK()
		return float64(i), ok
	}
	hi, lo, ok := v.Decimal128OK()
	if !ok {
		return 0, false
	}
	d := bson.NewDecimal128(hi, lo)
	switch {
	case d.IsNaN():
		return math.NaN(), true
	case d.IsInf() > 0:
		return math.Inf(1), true
	case d.IsInf() < 0:
		return math.Inf(-1), true
	}
	bi, exp, err := d.BigInt()
	if err != nil {
		return 0, false
	}
	r := new(big.Rat).SetInt(bi)
	if exp != 0 {
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		if exp > 0 {
			r.Mul(r, new(big.Rat).SetInt(p))
		} else {
			r.Quo(r, new(big.Rat).SetInt(p))
		}
	}
	f, _ := r.Float64()
	return f, true
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// canonicalFloatBits is f's bits with every NaN alike (MongoDB finds NaN
// equal to NaN) and -0 as +0.
func canonicalFloatBits(f float64) uint64 {
	switch {
	case math.IsNaN(f):
		return 0x7ff8000000000001
	case f == 0:
		return 0
	}
	return math.Float64bits(f)
}

// summaryBits returns the size in bits of the filter of n values.
func summaryBits(n int) int {
	return max(64, (n*summaryBitsPerValue+63)/64*64)
}

// appendSummary appends the key summary of the values with hashes to dst.
func appendSummary(dst []byte, hashes []uint64) []byte {
	m := summaryBits(len(hashes))
	dst = append(dst, summaryVersion1, summaryProbes)
	start := len(dst)
	dst = append(dst, make([]byte, m/8)...)
	bits := dst[start:]
	for _, h := range hashes {
		h1, h2 := uint32(h), uint32(h>>32)|1
		for j := range uint32(summaryProbes) {
			p := (h1 + j*h2) % uint32(m)
			bits[p/8] |= 1 << (p % 8)
		}
	}
	return dst
}

// summaryMayHold reports whether the key summary data may hold the value
// with hash h: false only when it certainly does not. A summary that is
// not one this version knows holds everything (the bucket is read).
func summaryMayHold(data []byte, h uint64) bool {
	if len(data) < 2+8 || data[0] != summaryVersion1 || data[1] == 0 || data[1] > 32 || (len(data)-2)%8 != 0 {
		return true
	}
	bits := data[2:]
	m := uint32(len(bits)) * 8
	h1, h2 := uint32(h), uint32(h>>32)|1
	for j := range uint32(data[1]) {
		p := (h1 + j*h2) % m
		if bits[p/8]&(1<<(p%8)) == 0 {
			return false
		}
	}
	return true
}
