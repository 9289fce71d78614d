package mql

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// accumulator is the running state of one group accumulator for one group.
type accumulator interface {
	// add folds one evaluated argument (possibly Missing) into the state and
	// returns the number of bytes the state grew by (for the memory limit).
	add(v any) int
	// result returns the accumulated value.
	result() any
}

// collatedAcc is an accumulator whose result depends on how strings
// compare ($min, $max, $addToSet); the group stage sets its collation.
type collatedAcc interface {
	setCollation(c *Collation)
}

// accumSpec is a compiled {field: {$op: expr}} of a $group stage.
type accumSpec struct {
	field string
	arg   exprNode
	// newAcc returns fresh state for one group.
	newAcc func() accumulator
}

// accumulators maps every $group accumulator devdb implements to the
// constructor of its per-group state. It is only read.
var accumulators = map[string]func() accumulator{
	"$sum":          func() accumulator { return &sumAcc{} },
	"$count":        func() accumulator { return &sumAcc{} },
	"$avg":          func() accumulator { return &sumAcc{avg: true} },
	"$min":          func() accumulator { return &minMaxAcc{min: true, best: Missing} },
	"$max":          func() accumulator { return &minMaxAcc{best: Missing} },
	"$first":        func() accumulator { return &firstAcc{} },
	"$last":         func() accumulator { return &lastAcc{} },
	"$push":         func() accumulator { return &pushAcc{out: bson.A{}} },
	"$addToSet":     func() accumulator { return &pushAcc{out: bson.A{}, seen: map[string]bool{}} },
	"$mergeObjects": func() accumulator { return &mergeAcc{m: docMerger{out: bson.D{}}} },
	"$stdDevPop":    func() accumulator { return &stdDevAcc{} },
	"$stdDevSamp":   func() accumulator { return &stdDevAcc{sample: true} },
}

// compileAccumulator compiles the {$op: expr} document of a $group field.
// An unknown $op is code 15952 UnknownGroupOperator, one MongoDB has but
// mql does not implement code 238 NotImplemented.
func compileAccumulator(field string, spec any) (accumSpec, error) {
	d, ok := spec.(bson.D)
	if !ok {
		return accumSpec{}, mongoerr.Errorf(mongoerr.GroupFieldNotAccumulator, "The field '%s' must be an accumulator object", field)
	}
	if len(d) != 1 {
		return accumSpec{}, mongoerr.Errorf(mongoerr.GroupFieldTwoAccumulators, "The field '%s' must specify one accumulator", field)
	}
	op, arg := d[0].Key, d[0].Value
	if nAccumulators[op] {
		return compileNAccumulator(field, op, arg)
	}
	newAcc, ok := accumulators[op]
	if !ok {
		if !strings.HasPrefix(op, "$") {
			return accumSpec{}, mongoerr.Errorf(mongoerr.GroupFieldNotAccumulator, "The field '%s' must be an accumulator object", field)
		}
		if unsupportedAccumulators[op] {
			return accumSpec{}, unsupportedOperatorErr(op)
		}
		return accumSpec{}, mongoerr.Errorf(mongoerr.UnknownGroupOperator, "unknown group operator '%s'", op)
	}
	if op == "$count" {
		// $count is $sum: 1 and takes no argument.
		if ad, ok := arg.(bson.D); !ok || len(ad) != 0 {
			return accumSpec{}, mongoerr.Errorf(mongoerr.TypeMismatch, "$count takes no arguments, i.e. $count:{}")
		}
		return accumSpec{field: field, arg: constNode{int32(1)}, newAcc: newAcc}, nil
	}
	if _, ok := arg.(bson.A); ok {
		return accumSpec{}, mongoerr.Errorf(mongoerr.AccumulatorUnary, "The %s accumulator is a unary operator", op)
	}
	n, err := compileNode(arg)
	if err != nil {
		return accumSpec{}, err
	}
	if err := foldErr(n); err != nil {
		return accumSpec{}, err
	}
	return accumSpec{field: field, arg: n, newAcc: newAcc}, nil
}

// sumAcc is $sum (non-numbers ignored) and $avg (null without numbers).
type sumAcc struct {
	s   aggSummer
	avg bool
}

func (a *sumAcc) add(v any) int { a.s.add(v); return 0 }
func (a *sumAcc) result() any {
	if a.avg {
		return a.s.avg()
	}
	return a.s.result()
}

// minMaxAcc is $min / $max (null and missing ignored).
type minMaxAcc struct {
	min  bool
	best any
	coll *Collation
}

func (a *minMaxAcc) setCollation(c *Collation) { a.coll = c }

func (a *minMaxAcc) add(v any) int {
	if aggNullish(v) {
		return 0
	}
	if a.best == Missing {
		a.best = v
		return aggSize(v)
	}
	c := aggCompare(v, a.best, a.coll)
	if a.min && c < 0 || !a.min && c > 0 {
		a.best = v
		return aggSize(v)
	}
	return 0
}

func (a *minMaxAcc) result() any {
	if a.best == Missing {
		return nil
	}
	return a.best
}

// firstAcc is $first (a missing value is null).
type firstAcc struct {
	v   any
	set bool
}

func (a *firstAcc) add(v any) int {
	if a.set {
		return 0
	}
	a.v, a.set = v, true
	return aggSize(v)
}

func (a *firstAcc) result() any {
	if !a.set || a.v == Missing {
		return nil
	}
	return a.v
}

// lastAcc is $last.
type lastAcc struct{ v any }

func (a *lastAcc) add(v any) int { a.v = v; return aggSize(v) }
func (a *lastAcc) result() any {
	if a.v == nil || a.v == Missing {
		return nil
	}
	return a.v
}

// pushAcc is $push and, with seen, $addToSet (missing values skipped).
type pushAcc struct {
	out  bson.A
	seen map[string]bool
	coll *Collation
}

func (a *pushAcc) setCollation(c *Collation) { a.coll = c }

func (a *pushAcc) add(v any) int {
	if v == Missing {
		return 0
	}
	if a.seen != nil {
		k := string(aggKey(nil, v, a.coll))
		if a.seen[k] {
			return 0
		}
		a.seen[k] = true
		a.out = append(a.out, v)
		return aggSize(v) + len(k)
	}
	a.out = append(a.out, v)
	return aggSize(v)
}

func (a *pushAcc) result() any { return a.out }

// mergeAcc is the $mergeObjects accumulator.
type mergeAcc struct {
	m   docMerger
	err error
}

func (a *mergeAcc) add(v any) int {
	if aggNullish(v) {
		return 0
	}
	d, ok := v.(bson.D)
	if !ok {
		if a.err == nil {
			a.err = mongoerr.Errorf(mongoerr.MergeObjectsNotObject, "$mergeObjects requires object inputs, but input %s is of type %s", aggFmt(v), TypeName(v))
		}
		return 0
	}
	a.m.merge(d)
	return aggSize(v)
}

func (a *mergeAcc) result() any { return a.m.out }

// stdDevAcc is $stdDevPop / $stdDevSamp (Welford's algorithm).
type stdDevAcc struct {
	sample  bool
	n       int64
	mean, m float64
}

func (a *stdDevAcc) add(v any) int {
	k := aggNumKind(v)
	if k == aggKNone {
		return 0
	}
	x := aggToFloat(v)
	a.n++
	d := x - a.mean
	a.mean += d / float64(a.n)
	a.m += d * (x - a.mean)
	return 0
}

func (a *stdDevAcc) result() any {
	if a.sample {
		if a.n < 2 {
			return nil
		}
		return math.Sqrt(a.m / float64(a.n-1))
	}
	if a.n == 0 {
		return nil
	}
	return math.Sqrt(a.m / float64(a.n))
}

// aggSize estimates the BSON size of a value, for memory limits.
func aggSize(v any) int {
	switch t := v.(type) {
	case bson.D:
		n := 5
		for _, e := range t {
			n += len(e.Key) + 2 + aggSize(e.Value)
		}
		return n
	case bson.A:
		n := 5
		for _, e := range t {
			n += 3 + aggSize(e)
		}
		return n
	case string:
		return len(t) + 5
	case bson.Binary:
		return len(t.Data) + 5
	case bson.Decimal128:
		return 16
	case bson.ObjectID:
		return 12
	case bool, nil:
		return 1
	case int32:
		return 4
	case bson.Regex:
		return len(t.Pattern) + len(t.Options) + 2
	}
	return 8
}

// aggKey appends a canonical encoding of v to b such that two values get
// the same key exactly when MongoDB's $group / $addToSet treat them as
// equal (numbers compare by value across types; null and missing are one
// key).
func aggKey(b []byte, v any, coll *Collation) []byte {
	switch t := v.(type) {
	case nil:
		return append(b, 'n')
	case bson.Undefined:
		return append(b, 'n')
	case int32:
		return aggKeyInt(b, int64(t))
	case int64:
		return aggKeyInt(b, t)
	case float64:
		if t == math.Trunc(t) && t >= -9.223372036854775808e18 && t < 9.223372036854775808e18 {
			return aggKeyInt(b, int64(t))
		}
		if math.IsNaN(t) {
			return append(b, 'N')
		}
		b = append(b, 'f')
		return binary.BigEndian.AppendUint64(b, math.Float64bits(t))
	case bson.Decimal128:
		d := aggDecFrom(t)
		switch {
		case d.nan:
			return append(b, 'N')
		case d.inf != 0:
			return aggKey(b, math.Inf(d.inf), coll)
		}
		r, _ := d.rat()
		if r.IsInt() && r.Num().IsInt64() {
			return aggKeyInt(b, r.Num().Int64())
		}
		if f, exact := r.Float64(); exact {
			return aggKey(b, f, coll)
		}
		b = append(b, 'd')
		return aggKeyStr(b, new(big.Rat).Set(r).String())
	case string:
		if coll != nil {
			return aggKeyStr(append(b, 's'), string(coll.Key(t)))
		}
		return aggKeyStr(append(b, 's'), t)
	case bson.Symbol:
		if coll != nil {
			return aggKeyStr(append(b, 's'), string(coll.Key(string(t))))
		}
		return aggKeyStr(append(b, 's'), string(t))
	case bson.D:
		b = append(b, 'o')
		b = binary.AppendUvarint(b, uint64(len(t)))
		for _, e := range t {
			b = aggKeyStr(b, e.Key)
			b = aggKey(b, e.Value, coll)
		}
		return b
	case bson.A:
		b = append(b, 'a')
		b = binary.AppendUvarint(b, uint64(len(t)))
		for _, e := range t {
			b = aggKey(b, e, coll)
		}
		return b
	case bool:
		if t {
			return append(b, 'B', 1)
		}
		return append(b, 'B', 0)
	case bson.DateTime:
		return binary.BigEndian.AppendUint64(append(b, 't'), uint64(t))
	case bson.ObjectID:
		return append(append(b, 'O'), t[:]...)
	case bson.Timestamp:
		b = binary.BigEndian.AppendUint32(append(b, 'T'), t.T)
		return binary.BigEndian.AppendUint32(b, t.I)
	}
	if v == Missing {
		return append(b, 'n')
	}
	return aggKeyStr(append(b, 'x'), fmt.Sprintf("%T:%v", v, v))
}

func aggKeyInt(b []byte, i int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 'i'), uint64(i))
}

func aggKeyStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
