package mql

import (
	"math"
	"sort"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// updResult is what a leaf did to an existing element.
type updResult int

const (
	updNoop     updResult = iota // nothing changed
	updModified                  // the element has a new value
	updRemove                    // the element is removed ($unset)
)

// updOp is one update operator bound to its argument.
type updOp interface {
	// update applies the operator to the existing value cur.
	update(a *updApply, at *updPos, cur any) (any, updResult, error)
	// create returns the value of a path that does not exist yet; ok is
	// false when the operator does not create paths.
	create(a *updApply, at *updPos) (v any, ok bool, err error)
}

// updPathAccepting lists the query operators MongoDB's $pull treats as a
// condition on the array element itself rather than a document query.
var updPathAccepting = map[string]bool{
	"$eq": true, "$ne": true, "$gt": true, "$gte": true, "$lt": true, "$lte": true,
	"$in": true, "$nin": true, "$exists": true, "$type": true, "$regex": true,
	"$options": true, "$mod": true, "$all": true, "$elemMatch": true, "$size": true,
	"$not": true, "$bitsAllSet": true, "$bitsAllClear": true, "$bitsAnySet": true,
	"$bitsAnyClear": true, "$geoWithin": true, "$geoIntersects": true, "$near": true,
	"$nearSphere": true, "$within": true, "$_internalSchemaType": true,
}

// updCompileOp parses the argument of one modifier for one path.
func updCompileOp(mod string, arg bson.E) (updOp, error) {
	v := arg.Value
	switch mod {
	case "$set":
		return &updSetOp{val: v}, nil
	case "$setOnInsert":
		return &updSetOp{val: v, onInsert: true}, nil
	case "$unset":
		return updUnsetOp{}, nil
	case "$inc", "$mul":
		if aggNumKind(v) == aggKNone {
			verb := "increment"
			if mod == "$mul" {
				verb = "multiply"
			}
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Cannot %s with non-numeric argument: {%s}", verb, updFormatElement(arg.Key, v))
		}
		return &updArithOp{mul: mod == "$mul", name: mod, val: v}, nil
	case "$min", "$max":
		return &updMinMaxOp{max: mod == "$max", val: v}, nil
	case "$currentDate":
		return updCompileCurrentDate(v)
	case "$rename":
		to, ok := v.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The 'to' field for $rename must be a string: %s", updFormatElement(arg.Key, v))
		}
		return updCompileRename(arg.Key, to)
	case "$push":
		return updCompilePush(v)
	case "$addToSet":
		return updCompileAddToSet(v)
	case "$pop":
		n, err := updParseInteger(arg.Key, v)
		if err != nil {
			return nil, err
		}
		if n != 1 && n != -1 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$pop expects 1 or -1, found: %d", n)
		}
		return &updPopOp{front: n == -1}, nil
	case "$pull":
		m, err := updCompilePullMatcher(v)
		if err != nil {
			return nil, err
		}
		return &updPullOp{match: m}, nil
	case "$pullAll":
		arr, ok := v.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "$pullAll requires an array argument but was given a %s", TypeName(v))
		}
		vals := arr
		return &updPullOp{match: func(e any) bool {
			for _, x := range vals {
				if Compare(e, x) == 0 {
					return true
				}
			}
			return false
		}}, nil
	case "$bit":
		return updCompileBit(v)
	}
	return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", mod)
}

// updParseInteger accepts what MongoDB's parseIntegerElementToLong accepts:
// a number with an integral value that fits in 64 bits.
func updParseInteger(name string, v any) (int64, error) {
	if aggNumKind(v) == aggKNone {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "Expected a number in: %s", updFormatElement(name, v))
	}
	switch x := v.(type) {
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	}
	f, _ := ToFloat64(v)
	if math.IsNaN(f) || f != math.Trunc(f) {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "Expected an integer: %s", updFormatElement(name, v))
	}
	if f < -9.223372036854775808e18 || f >= 9.223372036854775808e18 {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot represent as a 64-bit integer: %s", updFormatElement(name, v))
	}
	return int64(f), nil
}

// updIDString renders the document's _id element for error messages
// ("_id: 1"), or fallback when the document has none.
func (a *updApply) idString(fallback string) string {
	for _, e := range a.doc {
		if e.Key == "_id" {
			return updFormatElement("_id", e.Value)
		}
	}
	return fallback
}

// --- $set / $setOnInsert ---

type updSetOp struct {
	val      any
	onInsert bool
}

func (o *updSetOp) update(a *updApply, _ *updPos, cur any) (any, updResult, error) {
	if o.onInsert && !a.ac.Insert {
		return nil, updNoop, nil
	}
	if Identical(cur, o.val) {
		return nil, updNoop, nil
	}
	return updDeepCopy(o.val), updModified, nil
}

func (o *updSetOp) create(a *updApply, _ *updPos) (any, bool, error) {
	if o.onInsert && !a.ac.Insert {
		return nil, false, nil
	}
	return updDeepCopy(o.val), true, nil
}

// --- $unset ---

type updUnsetOp struct{}

func (updUnsetOp) update(*updApply, *updPos, any) (any, updResult, error) {
	return nil, updRemove, nil
}

func (updUnsetOp) create(*updApply, *updPos) (any, bool, error) { return nil, false, nil }

// updPlaceholderOp marks the source path of a $rename so that other
// operators on it conflict; it does nothing itself.
type updPlaceholderOp struct{}

func (updPlaceholderOp) update(*updApply, *updPos, any) (any, updResult, error) {
	return nil, updNoop, nil
}

func (updPlaceholderOp) create(*updApply, *updPos) (any, bool, error) { return nil, false, nil }

// --- $inc / $mul ---

type updArithOp struct {
	mul  bool
	name string
	val  any
}

func (o *updArithOp) update(a *updApply, at *updPos, cur any) (any, updResult, error) {
	if aggNumKind(cur) == aggKNone {
		return nil, updNoop, mongoerr.Errorf(mongoerr.TypeMismatch, "Cannot apply %s to a value of non-numeric type. {%s} has the field '%s' of non-numeric type %s", o.name, a.idString(""), at.field(), TypeName(cur))
	}
	r, ok := updArith(o.mul, o.val, cur)
	if !ok {
		return nil, updNoop, mongoerr.Errorf(mongoerr.BadValue, "Failed to apply %s operations to current value (%s) for document {%s}", o.name, updSafeNumDebug(cur), a.idString(""))
	}
	if Identical(r, cur) {
		return nil, updNoop, nil
	}
	return r, updModified, nil
}

func (o *updArithOp) create(*updApply, *updPos) (any, bool, error) {
	if !o.mul {
		return o.val, true, nil
	}
	r, _ := updArith(true, o.val, int32(0))
	return r, true, nil
}

// updSafeNumDebug renders a number as SafeNum::debugString does.
func updSafeNumDebug(v any) string {
	switch x := v.(type) {
	case int32:
		return "(NumberInt)" + FormatValue(x)
	case int64:
		return "(NumberLong)" + FormatValue(x)
	case float64:
		return "(NumberDouble)" + FormatValue(x)
	case bson.Decimal128:
		return "(NumberDecimal)" + x.String()
	}
	return "(EOO)"
}

// --- $min / $max ---

type updMinMaxOp struct {
	max bool
	val any
}

func (o *updMinMaxOp) update(_ *updApply, _ *updPos, cur any) (any, updResult, error) {
	c := Compare(cur, o.val)
	if c == 0 || (c < 0) != o.max {
		return nil, updNoop, nil
	}
	return updDeepCopy(o.val), updModified, nil
}

func (o *updMinMaxOp) create(*updApply, *updPos) (any, bool, error) {
	return updDeepCopy(o.val), true, nil
}

// --- $currentDate ---

type updCurrentDateOp struct{ timestamp bool }

func updCompileCurrentDate(v any) (updOp, error) {
	switch x := v.(type) {
	case bool:
		return &updCurrentDateOp{}, nil
	case bson.D:
		found, ts := false, false
		for _, e := range x {
			if e.Key != "$type" {
				return nil, mongoerr.Errorf(mongoerr.BadValue, "Unrecognized $currentDate option: %s", e.Key)
			}
			if s, ok := e.Value.(string); ok {
				switch s {
				case "date":
					found, ts = true, false
				case "timestamp":
					found, ts = true, true
				}
			}
		}
		if !found {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}")
		}
		return &updCurrentDateOp{timestamp: ts}, nil
	}
	return nil, mongoerr.Errorf(mongoerr.BadValue, "%s is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'}).", TypeName(v))
}

func (o *updCurrentDateOp) value(a *updApply) any {
	if o.timestamp {
		if a.ac.ClusterTime != (bson.Timestamp{}) {
			return a.ac.ClusterTime
		}
		return bson.Timestamp{T: uint32(a.now.Unix()), I: 1}
	}
	return bson.NewDateTimeFromTime(a.now)
}

func (o *updCurrentDateOp) update(a *updApply, _ *updPos, _ any) (any, updResult, error) {
	return o.value(a), updModified, nil
}

func (o *updCurrentDateOp) create(a *updApply, _ *updPos) (any, bool, error) {
	return o.value(a), true, nil
}

// --- $rename ---

type updRenameOp struct {
	from, to  string
	fromParts []string
	toParts   []string
}

func updCompileRename(from, to string) (updOp, error) {
	elem := updFormatElement(from, to)
	if strings.IndexByte(to, 0) >= 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The 'to' field for $rename cannot contain an embedded null byte")
	}
	if from == to {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The source and target field for $rename must differ: %s", elem)
	}
	if strings.HasPrefix(to, from+".") || strings.HasPrefix(from, to+".") {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The source and target field for $rename must not be on the same path: %s", elem)
	}
	if updIsDynamic(from) {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The source field for $rename may not be dynamic: %s", from)
	}
	if updIsDynamic(to) {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The destination field for $rename may not be dynamic: %s", to)
	}
	return &updRenameOp{from: from, to: to}, nil
}

func updIsDynamic(path string) bool {
	for _, p := range strings.Split(path, ".") {
		if p == "$" || updIsArrayFilterPart(p) {
			return true
		}
	}
	return false
}

// source finds the value to move, checking MongoDB's restrictions: the
// source may not be inside an array, and the destination neither.
func (o *updRenameOp) source(a *updApply, at *updPos) (any, bool, error) {
	var cur any = a.doc
	parentIsArray, arrayName := false, ""
	for i, p := range o.fromParts {
		switch c := cur.(type) {
		case bson.D:
			v, ok := updLookup(c, p)
			if !ok {
				return nil, false, nil
			}
			if parentIsArray {
				return nil, false, o.arrayErr(a, "source", o.from, arrayName)
			}
			cur = v
		case bson.A:
			idx, ok := updArrayIndex(p)
			if !ok || idx >= len(c) {
				return nil, false, nil
			}
			return nil, false, o.arrayErr(a, "source", o.from, arrayName)
		default:
			return nil, false, mongoerr.Errorf(mongoerr.PathNotViable, "cannot use the part (%s of %s) to traverse the element ({%s})", p, o.from, updFormatElement(o.fromParts[i-1], cur))
		}
		_, parentIsArray = cur.(bson.A)
		arrayName = p
	}
	if at.inArray {
		return nil, false, o.arrayErr(a, "destination", o.to, at.arrayField)
	}
	return cur, true, nil
}

func (o *updRenameOp) arrayErr(a *updApply, which, path, arrayField string) error {
	return mongoerr.Errorf(mongoerr.BadValue, "The %s field cannot be an array element, '%s' in doc with %s has an array field called '%s'", which, path, a.idString("no id"), arrayField)
}

func (o *updRenameOp) update(a *updApply, at *updPos, cur any) (any, updResult, error) {
	v, ok, err := o.source(a, at)
	if err != nil || !ok {
		return nil, updNoop, err
	}
	a.fired = append(a.fired, o)
	if Compare(v, cur) == 0 {
		return nil, updNoop, nil
	}
	return updDeepCopy(v), updModified, nil
}

func (o *updRenameOp) create(a *updApply, at *updPos) (any, bool, error) {
	v, ok, err := o.source(a, at)
	if err != nil || !ok {
		return nil, false, err
	}
	a.fired = append(a.fired, o)
	return updDeepCopy(v), true, nil
}

// --- $push ---

type updPushOp struct {
	vals     bson.A
	slice    *int64
	sort     *updSortSpec
	position int64
}

// updSortSpec is a $push $sort: the whole element (pattern nil) or fields.
type updSortSpec struct {
	whole   int
	pattern []updSortKey
}

type updSortKey struct {
	parts []string
	dir   int
}

func updCompilePush(v any) (updOp, error) {
	op := &updPushOp{position: math.MaxInt64}
	d, ok := v.(bson.D)
	hasEach := false
	if ok {
		for _, e := range d {
			if e.Key == "$each" {
				hasEach = true
			}
		}
	}
	if !hasEach {
		op.vals = bson.A{v}
		return op, nil
	}
	seen := map[string]bool{}
	for _, e := range d {
		switch e.Key {
		case "$each", "$slice", "$sort", "$position":
		default:
			return nil, mongoerr.Errorf(mongoerr.BadValue, "Unrecognized clause in $push: %s", e.Key)
		}
		if seen[e.Key] {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "Only one %s is supported.", e.Key)
		}
		seen[e.Key] = true
	}
	for _, e := range d {
		if e.Key != "$each" {
			continue
		}
		arr, ok := e.Value.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The argument to $each in $push must be an array but it was of type: %s", TypeName(e.Value))
		}
		op.vals = arr
	}
	for _, e := range d {
		if e.Key != "$slice" {
			continue
		}
		n, err := updParseInteger(e.Key, e.Value)
		if err != nil {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The value for $slice must be an integer value but was given type: %s", TypeName(e.Value))
		}
		op.slice = &n
	}
	for _, e := range d {
		if e.Key != "$sort" {
			continue
		}
		s, err := updCompilePushSort(e.Value)
		if err != nil {
			return nil, err
		}
		op.sort = s
	}
	for _, e := range d {
		if e.Key != "$position" {
			continue
		}
		n, err := updParseInteger(e.Key, e.Value)
		if err != nil {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The value for $position must be an integer value, not of type: %s", TypeName(e.Value))
		}
		op.position = n
	}
	return op, nil
}

func updCompilePushSort(v any) (*updSortSpec, error) {
	if d, ok := v.(bson.D); ok {
		if len(d) == 0 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort pattern is empty when it should be a set of fields.")
		}
		spec := &updSortSpec{}
		for _, e := range d {
			dir := 0.0
			if aggNumKind(e.Value) != aggKNone {
				dir, _ = ToFloat64(e.Value)
			}
			if dir != 1 && dir != -1 {
				return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort element value must be either 1 or -1")
			}
			if e.Key == "" {
				return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort field cannot be empty")
			}
			parts := strings.Split(e.Key, ".")
			for _, p := range parts {
				if p == "" {
					return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort field is a dotted field but has an empty part: %s", e.Key)
				}
			}
			spec.pattern = append(spec.pattern, updSortKey{parts: parts, dir: int(dir)})
		}
		return spec, nil
	}
	if aggNumKind(v) != aggKNone {
		dir, _ := ToFloat64(v)
		if dir != 1 && dir != -1 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort element value must be either 1 or -1")
		}
		return &updSortSpec{whole: int(dir)}, nil
	}
	return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields")
}

// less orders two array elements by the sort specification.
func (s *updSortSpec) compare(x, y any) int {
	if s.pattern == nil {
		return s.whole * Compare(x, y)
	}
	for _, k := range s.pattern {
		c := Compare(updSortKeyValue(x, k.parts), updSortKeyValue(y, k.parts)) * k.dir
		if c != 0 {
			return c
		}
	}
	return 0
}

// updSortKeyValue extracts a dotted path from an element the way
// extractElementsBasedOnTemplate does: non-documents are wrapped, missing
// values sort as null, arrays are entered by numeric index only.
func updSortKeyValue(v any, parts []string) any {
	d, ok := v.(bson.D)
	if !ok {
		d = bson.D{{Key: "", Value: v}}
	}
	var cur any = d
	for _, p := range parts {
		switch c := cur.(type) {
		case bson.D:
			x, ok := updLookup(c, p)
			if !ok {
				return nil
			}
			cur = x
		case bson.A:
			i, ok := updArrayIndex(p)
			if !ok || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func (o *updPushOp) apply(arr bson.A) (bson.A, updResult) {
	res := updNoop
	out := arr
	if len(o.vals) > 0 {
		size := int64(len(arr))
		var at int64
		switch p := o.position; {
		case size == 0:
			at = 0
		case p > size:
			at = size
		case p > 0:
			at = p
		case p < 0 && -p < size:
			at = size + p
		default:
			at = 0
		}
		out = make(bson.A, 0, len(arr)+len(o.vals))
		out = append(out, arr[:at]...)
		for _, v := range o.vals {
			out = append(out, updDeepCopy(v))
		}
		out = append(out, arr[at:]...)
		res = updModified
	}
	if o.sort != nil {
		if res == updNoop {
			out = append(bson.A(nil), arr...)
		}
		sort.SliceStable(out, func(i, j int) bool { return o.sort.compare(out[i], out[j]) < 0 })
		res = updModified
	}
	if o.slice != nil {
		n := *o.slice
		if n == math.MinInt64 {
			n++
		}
		abs := n
		if abs < 0 {
			abs = -abs
		}
		if int64(len(out)) > abs {
			if n >= 0 {
				out = out[:abs:abs]
			} else {
				out = out[int64(len(out))-abs:]
			}
			res = updModified
		}
	}
	return out, res
}

func (o *updPushOp) update(a *updApply, at *updPos, cur any) (any, updResult, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, updNoop, mongoerr.Errorf(mongoerr.BadValue, "The field '%s' must be an array but is of type %s in document {%s}", at.dotted(), TypeName(cur), a.idString("no id"))
	}
	out, res := o.apply(arr)
	return out, res, nil
}

func (o *updPushOp) create(*updApply, *updPos) (any, bool, error) {
	out, _ := o.apply(bson.A{})
	if out == nil {
		out = bson.A{}
	}
	return out, true, nil
}

// --- $addToSet ---

type updAddToSetOp struct{ vals bson.A }

func updCompileAddToSet(v any) (updOp, error) {
	vals := bson.A{v}
	if d, ok := v.(bson.D); ok && len(d) > 0 && d[0].Key == "$each" {
		arr, ok := d[0].Value.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "The argument to $each in $addToSet must be an array but it was of type %s", TypeName(d[0].Value))
		}
		if len(d) > 1 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "Found unexpected fields after $each in $addToSet: %s", FormatValue(d))
		}
		vals = arr
	}
	var dedup bson.A
	for _, x := range vals {
		if !updContains(dedup, x) {
			dedup = append(dedup, x)
		}
	}
	return &updAddToSetOp{vals: dedup}, nil
}

func updContains(arr bson.A, x any) bool {
	for _, e := range arr {
		if Compare(e, x) == 0 {
			return true
		}
	}
	return false
}

func (o *updAddToSetOp) update(_ *updApply, at *updPos, cur any) (any, updResult, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, updNoop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply $addToSet to non-array field. Field named '%s' has non-array type %s", at.field(), TypeName(cur))
	}
	var out bson.A
	for _, x := range o.vals {
		if !updContains(arr, x) {
			if out == nil {
				out = append(make(bson.A, 0, len(arr)+len(o.vals)), arr...)
			}
			out = append(out, updDeepCopy(x))
		}
	}
	if out == nil {
		return nil, updNoop, nil
	}
	return out, updModified, nil
}

func (o *updAddToSetOp) create(*updApply, *updPos) (any, bool, error) {
	out := make(bson.A, len(o.vals))
	for i, x := range o.vals {
		out[i] = updDeepCopy(x)
	}
	return out, true, nil
}

// --- $pop ---

type updPopOp struct{ front bool }

func (o *updPopOp) update(_ *updApply, at *updPos, cur any) (any, updResult, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, updNoop, mongoerr.Errorf(mongoerr.TypeMismatch, "Path '%s' contains an element of non-array type '%s'", at.dotted(), TypeName(cur))
	}
	if len(arr) == 0 {
		return nil, updNoop, nil
	}
	if o.front {
		return append(bson.A(nil), arr[1:]...), updModified, nil
	}
	return append(bson.A(nil), arr[:len(arr)-1]...), updModified, nil
}

func (o *updPopOp) create(*updApply, *updPos) (any, bool, error) { return nil, false, nil }

// --- $pull / $pullAll ---

type updPullOp struct{ match func(any) bool }

// updCompilePullMatcher builds $pull's element test as MongoDB does: a
// document whose first field is not a query operator is a query on document
// elements; a document of operators or a regex is a condition on the element
// itself; anything else is compared for equality.
func updCompilePullMatcher(v any) (func(any) bool, error) {
	switch x := v.(type) {
	case bson.D:
		if len(x) == 0 || !updPathAccepting[x[0].Key] {
			f, err := CompileFilter(x)
			if err != nil {
				return nil, err
			}
			return func(e any) bool {
				d, ok := e.(bson.D)
				return ok && f.Match(d)
			}, nil
		}
		return updWrapperMatcher(x)
	case bson.Regex:
		return updWrapperMatcher(x)
	}
	return func(e any) bool { return Compare(e, v) == 0 }, nil
}

// updWrapperMatcher matches an element against a condition by wrapping it
// in a one-field document.
func updWrapperMatcher(cond any) (func(any) bool, error) {
	const key = "pull"
	f, err := CompileFilter(bson.D{{Key: key, Value: cond}})
	if err != nil {
		return nil, err
	}
	return func(e any) bool { return f.Match(bson.D{{Key: key, Value: e}}) }, nil
}

func (o *updPullOp) update(_ *updApply, _ *updPos, cur any) (any, updResult, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, updNoop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply $pull to a non-array value")
	}
	var out bson.A
	removed := false
	for i, e := range arr {
		if o.match(e) {
			if !removed {
				out = append(make(bson.A, 0, len(arr)), arr[:i]...)
				removed = true
			}
			continue
		}
		if removed {
			out = append(out, e)
		}
	}
	if !removed {
		return nil, updNoop, nil
	}
	return out, updModified, nil
}

func (o *updPullOp) create(*updApply, *updPos) (any, bool, error) { return nil, false, nil }

// --- $bit ---

type updBitOp struct {
	ops []bson.E
}

func updCompileBit(v any) (updOp, error) {
	d, ok := v.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The $bit modifier is not compatible with a %s. You must pass in an embedded document: {$bit: {field: {and/or/xor: #}}", TypeName(v))
	}
	op := &updBitOp{}
	for _, e := range d {
		switch e.Key {
		case "and", "or", "xor":
		default:
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $bit modifier only supports 'and', 'or', and 'xor', not '%s' which is an unknown operator: {%s}", e.Key, updFormatElement(e.Key, e.Value))
		}
		switch e.Value.(type) {
		case int32, int64:
		default:
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $bit modifier field must be an Integer(32/64 bit); a '%s' is not supported here: {%s}", TypeName(e.Value), updFormatElement(e.Key, e.Value))
		}
		op.ops = append(op.ops, e)
	}
	if len(op.ops) == 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "You must pass in at least one bitwise operation. The format is: {$bit: {field: {and/or/xor: #}}")
	}
	return op, nil
}

func (o *updBitOp) apply(v any) any {
	for _, e := range o.ops {
		v = updBitwise(e.Key, v, e.Value)
	}
	return v
}

func (o *updBitOp) update(a *updApply, at *updPos, cur any) (any, updResult, error) {
	switch cur.(type) {
	case int32, int64:
	default:
		return nil, updNoop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply $bit to a value of non-integral type.%s has the field %s of non-integer type %s", a.idString(""), at.field(), TypeName(cur))
	}
	r := o.apply(cur)
	if Identical(r, cur) {
		return nil, updNoop, nil
	}
	return r, updModified, nil
}

func (o *updBitOp) create(*updApply, *updPos) (any, bool, error) {
	return o.apply(int32(0)), true, nil
}
