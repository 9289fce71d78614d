package mql

import (
	"bytes"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// compareQuery is the table of comparison query operators.
func compareQuery() map[string]queryCompiler {
	cmp := func(kind matchOp) queryCompiler {
		return func(parts []string, op bson.E, cx compileCx) (matchNode, error) {
			p, err := newCmpMatch(kind, op.Value, op.Key, cx.coll)
			if err != nil {
				return nil, err
			}
			n := newMatchPath(parts, p, true)
			if op.Key == "$ne" {
				return matchNot{n}, nil
			}
			return n, nil
		}
	}
	in := func(parts []string, op bson.E, cx compileCx) (matchNode, error) {
		p, err := newInMatch(op.Key, op.Value, cx.coll)
		if err != nil {
			return nil, err
		}
		n := newMatchPath(parts, p, true)
		if op.Key == "$nin" {
			return matchNot{n}, nil
		}
		return n, nil
	}
	return map[string]queryCompiler{
		"$eq":  cmp(mEQ),
		"$ne":  cmp(mEQ),
		"$gt":  cmp(mGT),
		"$gte": cmp(mGTE),
		"$lt":  cmp(mLT),
		"$lte": cmp(mLTE),
		"$in":  in,
		"$nin": in,
	}
}

// matchOp is a comparison operator.
type matchOp uint8

const (
	mEQ matchOp = iota
	mGT
	mGTE
	mLT
	mLTE
)

// cmpMatch implements $eq, $gt, $gte, $lt and $lte with MongoDB's type
// bracketing: values of different canonical types never compare, except
// that null equals missing (and undefined) and MinKey/MaxKey operands
// bound everything.
type cmpMatch struct {
	op  matchOp
	rhs any
	// coll is the collation strings compare under (nil: binary).
	coll *Collation
	// rhsKey is the collation key of a string rhs (with coll), computed
	// once so that each candidate string costs one key, not two.
	rhsKey []byte
}

func newCmpMatch(op matchOp, rhs any, name string, coll *Collation) (*cmpMatch, error) {
	rhs = Normalize(rhs)
	if _, ok := rhs.(bson.Undefined); ok {
		return nil, badValue("cannot compare to undefined")
	}
	if TypeNumber(rhs) == typeNumberMissing && !IsMissing(rhs) {
		return nil, badValue("%s: unsupported value of Go type %T", name, rhs)
	}
	p := &cmpMatch{op: op, rhs: rhs, coll: coll}
	if s, ok := collatedString(rhs, coll); ok {
		p.rhsKey = coll.Key(s)
	}
	return p, nil
}

// collatedString returns v's text when v is a string or symbol and coll is
// a collation, the case in which comparisons use collation keys.
func collatedString(v any, coll *Collation) (string, bool) {
	if coll == nil {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bson.Symbol:
		return string(x), true
	}
	return "", false
}

// opHolds reports whether a comparison result c satisfies op.
func opHolds(op matchOp, c int) bool {
	switch op {
	case mEQ:
		return c == 0
	case mGT:
		return c > 0
	case mGTE:
		return c >= 0
	case mLT:
		return c < 0
	}
	return c <= 0
}

// matchRank is canonicalRank except that Missing ranks as undefined (BSON
// EOO), as it does in the server's matcher.
func matchRank(v any) int {
	if IsMissing(v) {
		return rankUndefined
	}
	return canonicalRank(v)
}

func (p *cmpMatch) test(v any) bool {
	if p.rhsKey != nil {
		if s, ok := collatedString(v, p.coll); ok {
			var buf [64]byte
			return opHolds(p.op, bytes.Compare(p.coll.AppendKey(buf[:0], s), p.rhsKey))
		}
	}
	return compareMatches(p.op, v, p.rhs, p.coll)
}

// compareMatches evaluates "v op rhs" as a query comparison, comparing
// strings under coll (nil: binary).
func compareMatches(op matchOp, v, rhs any, coll *Collation) bool {
	rv, rr := matchRank(v), matchRank(rhs)
	if rv != rr {
		// null and missing/undefined are equal for matching.
		if rv+rr == rankUndefined+rankNull {
			return op == mEQ || op == mGTE || op == mLTE
		}
		switch rhs.(type) {
		case bson.MaxKey:
			return op == mLT || op == mLTE
		case bson.MinKey:
			return op == mGT || op == mGTE
		}
		return false
	}
	if rv == rankNumber {
		vn, rn := isNaNValue(v), isNaNValue(rhs)
		if vn || rn {
			return vn && rn && (op == mEQ || op == mGTE || op == mLTE)
		}
	}
	return opHolds(op, compareValues(v, rhs, coll))
}

// isNaNValue reports whether a number is NaN (double or decimal).
func isNaNValue(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x)
	case bson.Decimal128:
		return x.IsNaN()
	case float32:
		return math.IsNaN(float64(x))
	}
	return false
}

// inMatch implements $in: equality with any listed value, or a match of any
// listed regex.
type inMatch struct {
	eq      []any
	regexes []*regexMatch
	coll    *Collation
	// keys are the collation keys of the string values (with coll), which
	// are then not in eq: a candidate string is looked up by its key.
	keys map[string]struct{}
}

func newInMatch(op string, v any, coll *Collation) (*inMatch, error) {
	arr, ok := AsArray(v)
	if !ok {
		return nil, badValue("%s needs an array", op)
	}
	p := &inMatch{coll: coll}
	for _, x := range arr {
		if re, ok := x.(bson.Regex); ok {
			rp, err := newRegexMatch(re.Pattern, re.Options)
			if err != nil {
				return nil, err
			}
			p.regexes = append(p.regexes, rp)
			continue
		}
		if _, ok := isOperatorDoc(x); ok {
			return nil, badValue("cannot nest $ under %s", op)
		}
		x = Normalize(x)
		if _, ok := x.(bson.Undefined); ok {
			return nil, badValue("InMatchExpression equality cannot be undefined")
		}
		if s, ok := collatedString(x, coll); ok {
			if p.keys == nil {
				p.keys = map[string]struct{}{}
			}
			p.keys[string(coll.Key(s))] = struct{}{}
			continue
		}
		p.eq = append(p.eq, x)
	}
	return p, nil
}

func (p *inMatch) test(v any) bool {
	if p.keys != nil {
		if s, ok := collatedString(v, p.coll); ok {
			var buf [64]byte
			if _, hit := p.keys[string(p.coll.AppendKey(buf[:0], s))]; hit {
				return true
			}
		}
	}
	for _, x := range p.eq {
		if compareMatches(mEQ, v, x, p.coll) {
			return true
		}
	}
	for _, r := range p.regexes {
		if r.test(v) {
			return true
		}
	}
	return false
}
