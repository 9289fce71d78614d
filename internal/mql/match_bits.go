package mql

import (
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// bitsQuery is the table of bitwise query operators.
func bitsQuery() map[string]queryCompiler {
	bits := func(parts []string, op bson.E, _ compileCx) (matchNode, error) {
		p, err := newBitsMatch(op.Key, op.Value)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, true), nil
	}
	return map[string]queryCompiler{
		"$bitsAllSet":   bits,
		"$bitsAnySet":   bits,
		"$bitsAllClear": bits,
		"$bitsAnyClear": bits,
	}
}

// bitsMatch implements $bitsAllSet, $bitsAnySet, $bitsAllClear and
// $bitsAnyClear. The operand is a non-negative integral bitmask, an array
// of non-negative bit positions, or binData; candidate values are
// integral numbers representable as int64 (two's complement, sign-extended
// beyond bit 63) and binData (little-endian bit order). Other values never
// match.
type bitsMatch struct {
	// positions are the bit positions tested.
	positions []int
	// set is true for $bitsAllSet/$bitsAnySet, false for the Clear forms.
	set bool
	// all is true for the All forms, false for the Any forms.
	all bool
}

func newBitsMatch(op string, v any) (*bitsMatch, error) {
	m := &bitsMatch{
		set: op == "$bitsAllSet" || op == "$bitsAnySet",
		all: op == "$bitsAllSet" || op == "$bitsAllClear",
	}
	switch x := v.(type) {
	case bson.Binary:
		m.positions = binaryBitPositions(x.Data)
		return m, nil
	case bson.A, []any:
		arr, _ := AsArray(x)
		for _, e := range arr {
			if !IsNumber(e) {
				return nil, badValue("bit positions must be an integer but got: %v", e)
			}
			n, ok := ToInt64(e)
			if !ok {
				return nil, badValue("bit positions must be an integer but got: %v", e)
			}
			if n < 0 {
				return nil, badValue("bit positions must be >= 0 but got: %d", n)
			}
			if n > math.MaxInt32 {
				return nil, badValue("bit positions cannot be represented as a 32-bit signed integer: %d", n)
			}
			m.positions = append(m.positions, int(n))
		}
		return m, nil
	}
	if !IsNumber(v) {
		return nil, badValue("%s takes an Array, a number, or a BinData but received: %v", op, v)
	}
	n, ok := ToInt64(v)
	if !ok {
		return nil, badValue("%s cannot represent value as a 64-bit integer: %v", op, v)
	}
	if n < 0 {
		return nil, badValue("%s cannot take a negative number: %d", op, n)
	}
	for b := 0; b < 63; b++ {
		if n&(1<<b) != 0 {
			m.positions = append(m.positions, b)
		}
	}
	return m, nil
}

// binaryBitPositions lists the set bits of a bitmask given as bytes, bit 0
// being the least significant bit of the first byte.
func binaryBitPositions(data []byte) []int {
	var out []int
	for i, b := range data {
		for j := 0; j < 8; j++ {
			if b&(1<<j) != 0 {
				out = append(out, i*8+j)
			}
		}
	}
	return out
}

func (m *bitsMatch) test(v any) bool {
	var bit func(int) bool
	switch x := v.(type) {
	case bson.Binary:
		bit = func(p int) bool {
			if p/8 >= len(x.Data) {
				return false
			}
			return x.Data[p/8]&(1<<(p%8)) != 0
		}
	default:
		if !IsNumber(v) {
			return false
		}
		n, ok := ToInt64(v)
		if !ok {
			return false
		}
		bit = func(p int) bool {
			if p >= 64 {
				return n < 0
			}
			return n&(1<<p) != 0
		}
	}
	for _, p := range m.positions {
		hit := bit(p) == m.set
		if m.all && !hit {
			return false
		}
		if !m.all && hit {
			return true
		}
	}
	return m.all
}
