package mql

import (
	"crypto/md5" //nolint:gosec // MongoDB's hashed-index function is MD5-based; this is not a security use.
	"encoding/binary"
	"hash"
	"math"
	"math/big"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// hashOperators is the table of hashing operators.
func hashOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$toHashedIndexKey": compileToHashedIndexKey,
	}
}

// compileToHashedIndexKey compiles {$toHashedIndexKey: <operand>}. The
// operand is one expression taken whole, as the server parses it (an array
// operand is an array to hash, not an argument list), and the result is
// HashedIndexKey of its value, a long.
func compileToHashedIndexKey(_ string, arg any) (exprNode, error) {
	n, err := compileNode(arg)
	if err != nil {
		return nil, err
	}
	return &funcNode{args: []exprNode{n}, fn: func(_ *evalCtx, v []any) (any, error) { return HashedIndexKey(v[0]), nil }}, nil
}

// HashedIndexKey returns the 64-bit key a MongoDB hashed index (seed 0)
// stores for v, which is also what $toHashedIndexKey and
// convertShardKeyToHashed return: the first eight bytes, little-endian, of
// the MD5 digest of the 4-byte seed followed by v's canonical encoding.
// That encoding is, per element, its canonical type rank as a 4-byte
// little-endian int (all numbers share one rank, as do string and symbol),
// the field name with its terminating NUL inside documents and arrays
// (array field names are "0", "1", ...), then: a number truncated to a
// 64-bit integer (8 bytes little-endian; a double's NaN is 0 and values
// beyond the int64 range clamp), a document or array as its elements
// followed by an end marker (rank 0, no name), javascriptWithScope as its
// code with the NUL, then its scope; every other type as its BSON value
// bytes. Missing hashes as null, as in a hashed index. So 1, NumberLong(1)
// and 1.5 hash alike, and a value hashes the same in every process and on
// every platform.
func HashedIndexKey(v any) int64 {
	h := md5.New()   //nolint:gosec // see the import
	var seed [4]byte // HashSeed 0
	h.Write(seed[:])
	hashElement(h, "", false, v)
	var sum [md5.Size]byte
	return int64(binary.LittleEndian.Uint64(h.Sum(sum[:0])[:8])) //nolint:gosec // reinterpreting the digest's bits
}

// hashElement adds one element (with its name when named) to h.
func hashElement(h hash.Hash, name string, named bool, v any) {
	switch x := v.(type) {
	case missing:
		v = nil
	case bson.M:
		// Unordered Go maps only come from values built outside BSON
		// decoding; hash them as the document ordered by key.
		v = sortedDoc(x)
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:4], uint32(int32(canonicalRank(v)))) //nolint:gosec // ranks are small signed ints
	h.Write(b[:4])
	if named {
		h.Write([]byte(name))
		h.Write([]byte{0})
	}
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			hashElement(h, e.Key, true, e.Value)
		}
		hashEnd(h)
		return
	case bson.A:
		hashArray(h, x)
		return
	case []any:
		hashArray(h, bson.A(x))
		return
	case bson.CodeWithScope:
		h.Write([]byte(string(x.Code)))
		h.Write([]byte{0})
		if d, err := bson.Marshal(x.Scope); err == nil {
			var scope bson.D
			if bson.Unmarshal(d, &scope) == nil {
				for _, e := range scope {
					hashElement(h, e.Key, true, e.Value)
				}
			}
		}
		hashEnd(h)
		return
	}
	if IsNumber(v) {
		binary.LittleEndian.PutUint64(b[:], uint64(hashNumber(v))) //nolint:gosec // two's complement bits
		h.Write(b[:])
		return
	}
	if v == nil {
		return // null: no value bytes
	}
	if _, data, err := bson.MarshalValue(v); err == nil {
		h.Write(data)
	}
}

func hashArray(h hash.Hash, a bson.A) {
	for i, e := range a {
		hashElement(h, strconv.Itoa(i), true, e)
	}
	hashEnd(h)
}

// hashEnd adds a document's end marker: type 0, no name, no value.
func hashEnd(h hash.Hash) { h.Write([]byte{0, 0, 0, 0}) }

// hashNumber truncates a number toward zero to an int64 the way MongoDB's
// hash does: NaN is 0 and values beyond the int64 range clamp to its ends.
func hashNumber(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return truncFloat(float64(x))
	case float64:
		return truncFloat(x)
	case bson.Decimal128:
		bi, exp, err := x.BigInt()
		if err != nil { // NaN or infinity
			s := x.String()
			switch s {
			case "Infinity":
				return math.MaxInt64
			case "-Infinity":
				return math.MinInt64
			}
			return 0
		}
		i := new(big.Int).Set(bi)
		scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		if exp >= 0 {
			i.Mul(i, scale)
		} else {
			i.Quo(i, scale) // truncates toward zero
		}
		switch {
		case !i.IsInt64() && i.Sign() > 0:
			return math.MaxInt64
		case !i.IsInt64():
			return math.MinInt64
		}
		return i.Int64()
	}
	return 0
}

func truncFloat(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64: // 2^63 as a float64
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// sortedDoc returns m as a document ordered by key.
func sortedDoc(m bson.M) bson.D {
	d := make(bson.D, 0, len(m))
	for k, v := range m {
		d = append(d, bson.E{Key: k, Value: v})
	}
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j].Key < d[j-1].Key; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
	return d
}
