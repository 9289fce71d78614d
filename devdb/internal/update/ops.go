package update

import (
	"math"
	"sort"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// result is what a leaf did to an existing element.
type result int

const (
	noop     result = iota // nothing changed
	modified               // the element has a new value
	remove                 // the element is removed ($unset)
	appended               // a $push only appended to a non-empty array
)

// operator is one update operator bound to its argument.
type operator interface {
	// update applies the operator to the existing value cur.
	update(a *applier, at *position, cur any) (any, result, error)
	// create returns the value of a path that does not exist yet; ok is
	// false when the operator does not create paths.
	create(a *applier, at *position) (v any, ok bool, err error)
}

// pathAccepting lists the query operators MongoDB's $pull treats as a
// condition on the array element itself rather than a document query.
var pathAccepting = map[string]bool{
	"$eq": true, "$ne": true, "$gt": true, "$gte": true, "$lt": true, "$lte": true,
	"$in": true, "$nin": true, "$exists": true, "$type": true, "$regex": true,
	"$options": true, "$mod": true, "$all": true, "$elemMatch": true, "$size": true,
	"$not": true, "$bitsAllSet": true, "$bitsAllClear": true, "$bitsAnySet": true,
	"$bitsAnyClear": true, "$geoWithin": true, "$geoIntersects": true, "$near": true,
	"$nearSphere": true, "$within": true, "$_internalSchemaType": true,
}

// compileOp parses the argument of one modifier for one path.
func compileOp(mod string, arg bson.E, coll *mql.Collation) (operator, error) {
	v := arg.Value
	switch mod {
	case "$set":
		return &setOp{val: v}, nil
	case "$setOnInsert":
		return &setOp{val: v, onInsert: true}, nil
	case "$unset":
		return unsetOp{}, nil
	case "$inc", "$mul":
		if !mql.IsNumber(v) {
			verb := "increment"
			if mod == "$mul" {
				verb = "multiply"
			}
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Cannot %s with non-numeric argument: {%s}", verb, formatElement(arg.Key, v))
		}
		return &arithOp{mul: mod == "$mul", name: mod, val: v}, nil
	case "$min", "$max":
		return &minMaxOp{max: mod == "$max", val: v, coll: coll}, nil
	case "$currentDate":
		return compileCurrentDate(v)
	case "$rename":
		to, ok := v.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The 'to' field for $rename must be a string: %s", formatElement(arg.Key, v))
		}
		return compileRename(arg.Key, to)
	case "$push":
		return compilePush(v, coll)
	case "$addToSet":
		return compileAddToSet(v, coll)
	case "$pop":
		n, err := parseInteger(arg.Key, v)
		if err != nil {
			return nil, err
		}
		if n != 1 && n != -1 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$pop expects 1 or -1, found: %d", n)
		}
		return &popOp{front: n == -1}, nil
	case "$pull":
		m, err := compilePullMatcher(v, coll)
		if err != nil {
			return nil, err
		}
		return &pullOp{match: m}, nil
	case "$pullAll":
		arr, ok := v.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "$pullAll requires an array argument but was given a %s", mql.TypeName(v))
		}
		vals := arr
		return &pullOp{match: func(e any) bool {
			for _, x := range vals {
				if mql.CompareCollated(e, x, coll) == 0 {
					return true
				}
			}
			return false
		}}, nil
	case "$bit":
		return compileBit(v)
	}
	return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", mod)
}

// parseInteger accepts what MongoDB's parseIntegerElementToLong accepts:
// a number with an integral value that fits in 64 bits.
func parseInteger(name string, v any) (int64, error) {
	if !mql.IsNumber(v) {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "Expected a number in: %s", formatElement(name, v))
	}
	switch x := v.(type) {
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	}
	f, _ := mql.ToFloat64(v)
	if math.IsNaN(f) || f != math.Trunc(f) {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "Expected an integer: %s", formatElement(name, v))
	}
	if f < -9.223372036854775808e18 || f >= 9.223372036854775808e18 {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot represent as a 64-bit integer: %s", formatElement(name, v))
	}
	return int64(f), nil
}

// idString renders the document's _id element for error messages
// ("_id: 1"), or fallback when the document has none.
func (a *applier) idString(fallback string) string {
	for _, e := range a.doc {
		if e.Key == "_id" {
			return formatElement("_id", e.Value)
		}
	}
	return fallback
}

// --- $set / $setOnInsert ---

type setOp struct {
	val      any
	onInsert bool
}

func (o *setOp) update(a *applier, _ *position, cur any) (any, result, error) {
	if o.onInsert && !a.ac.Insert {
		return nil, noop, nil
	}
	if mql.Identical(cur, o.val) {
		return nil, noop, nil
	}
	return deepCopy(o.val), modified, nil
}

func (o *setOp) create(a *applier, _ *position) (any, bool, error) {
	if o.onInsert && !a.ac.Insert {
		return nil, false, nil
	}
	return deepCopy(o.val), true, nil
}

// --- $unset ---

type unsetOp struct{}

func (unsetOp) update(*applier, *position, any) (any, result, error) {
	return nil, remove, nil
}

func (unsetOp) create(*applier, *position) (any, bool, error) { return nil, false, nil }

// placeholderOp marks the source path of a $rename so that other
// operators on it conflict; it does nothing itself.
type placeholderOp struct{}

func (placeholderOp) update(*applier, *position, any) (any, result, error) {
	return nil, noop, nil
}

func (placeholderOp) create(*applier, *position) (any, bool, error) { return nil, false, nil }

// --- $inc / $mul ---

type arithOp struct {
	mul  bool
	name string
	val  any
}

func (o *arithOp) update(a *applier, at *position, cur any) (any, result, error) {
	if !mql.IsNumber(cur) {
		return nil, noop, mongoerr.Errorf(mongoerr.TypeMismatch, "Cannot apply %s to a value of non-numeric type. {%s} has the field '%s' of non-numeric type %s", o.name, a.idString(""), at.field(), mql.TypeName(cur))
	}
	r, ok := mql.SafeArith(o.mul, o.val, cur)
	if !ok {
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "Failed to apply %s operations to current value (%s) for document {%s}", o.name, safeNumDebug(cur), a.idString(""))
	}
	if mql.Identical(r, cur) {
		return nil, noop, nil
	}
	return r, modified, nil
}

func (o *arithOp) create(*applier, *position) (any, bool, error) {
	if !o.mul {
		return o.val, true, nil
	}
	r, _ := mql.SafeArith(true, o.val, int32(0))
	return r, true, nil
}

// safeNumDebug renders a number as SafeNum::debugString does.
func safeNumDebug(v any) string {
	switch x := v.(type) {
	case int32:
		return "(NumberInt)" + mql.FormatValue(x)
	case int64:
		return "(NumberLong)" + mql.FormatValue(x)
	case float64:
		return "(NumberDouble)" + mql.FormatValue(x)
	case bson.Decimal128:
		return "(NumberDecimal)" + x.String()
	}
	return "(EOO)"
}

// --- $min / $max ---

type minMaxOp struct {
	max  bool
	val  any
	coll *mql.Collation
}

func (o *minMaxOp) update(_ *applier, _ *position, cur any) (any, result, error) {
	c := mql.CompareCollated(cur, o.val, o.coll)
	if c == 0 || (c < 0) != o.max {
		return nil, noop, nil
	}
	return deepCopy(o.val), modified, nil
}

func (o *minMaxOp) create(*applier, *position) (any, bool, error) {
	return deepCopy(o.val), true, nil
}

// --- $currentDate ---

type currentDateOp struct{ timestamp bool }

func compileCurrentDate(v any) (operator, error) {
	switch x := v.(type) {
	case bool:
		return &currentDateOp{}, nil
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
		return &currentDateOp{timestamp: ts}, nil
	}
	return nil, mongoerr.Errorf(mongoerr.BadValue, "%s is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'}).", mql.TypeName(v))
}

func (o *currentDateOp) value(a *applier) any {
	if o.timestamp {
		if a.ac.ClusterTime != (bson.Timestamp{}) {
			return a.ac.ClusterTime
		}
		return bson.Timestamp{T: uint32(a.now.Unix()), I: 1}
	}
	return bson.NewDateTimeFromTime(a.now)
}

func (o *currentDateOp) update(a *applier, _ *position, _ any) (any, result, error) {
	return o.value(a), modified, nil
}

func (o *currentDateOp) create(a *applier, _ *position) (any, bool, error) {
	return o.value(a), true, nil
}

// --- $rename ---

type renameOp struct {
	from, to  string
	fromParts []string
	toParts   []string
}

func compileRename(from, to string) (operator, error) {
	elem := formatElement(from, to)
	if strings.IndexByte(to, 0) >= 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The 'to' field for $rename cannot contain an embedded null byte")
	}
	if from == to {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The source and target field for $rename must differ: %s", elem)
	}
	if strings.HasPrefix(to, from+".") || strings.HasPrefix(from, to+".") {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The source and target field for $rename must not be on the same path: %s", elem)
	}
	if isDynamic(from) {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The source field for $rename may not be dynamic: %s", from)
	}
	if isDynamic(to) {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The destination field for $rename may not be dynamic: %s", to)
	}
	return &renameOp{from: from, to: to}, nil
}

func isDynamic(path string) bool {
	for _, p := range strings.Split(path, ".") {
		if p == "$" || isArrayFilterPart(p) {
			return true
		}
	}
	return false
}

// source finds the value to move, checking MongoDB's restrictions: the
// source may not be inside an array, and the destination neither.
func (o *renameOp) source(a *applier, at *position) (any, bool, error) {
	var cur any = a.doc
	parentIsArray, arrayName := false, ""
	for i, p := range o.fromParts {
		switch c := cur.(type) {
		case bson.D:
			v, ok := lookup(c, p)
			if !ok {
				return nil, false, nil
			}
			if parentIsArray {
				return nil, false, o.arrayErr(a, "source", o.from, arrayName)
			}
			cur = v
		case bson.A:
			idx, ok := arrayIndex(p)
			if !ok || idx >= len(c) {
				return nil, false, nil
			}
			return nil, false, o.arrayErr(a, "source", o.from, arrayName)
		default:
			return nil, false, mongoerr.Errorf(mongoerr.PathNotViable, "cannot use the part (%s of %s) to traverse the element ({%s})", p, o.from, formatElement(o.fromParts[i-1], cur))
		}
		_, parentIsArray = cur.(bson.A)
		arrayName = p
	}
	if at.inArray {
		return nil, false, o.arrayErr(a, "destination", o.to, at.arrayField)
	}
	return cur, true, nil
}

func (o *renameOp) arrayErr(a *applier, which, path, arrayField string) error {
	return mongoerr.Errorf(mongoerr.BadValue, "The %s field cannot be an array element, '%s' in doc with %s has an array field called '%s'", which, path, a.idString("no id"), arrayField)
}

func (o *renameOp) update(a *applier, at *position, cur any) (any, result, error) {
	v, ok, err := o.source(a, at)
	if err != nil || !ok {
		return nil, noop, err
	}
	a.fired = append(a.fired, o)
	// The destination keeps its value only when it is the same BSON (as
	// MongoDB's binary comparison): 1.0 moved onto 1 is written.
	if mql.Identical(v, cur) {
		return nil, noop, nil
	}
	return deepCopy(v), modified, nil
}

func (o *renameOp) create(a *applier, at *position) (any, bool, error) {
	v, ok, err := o.source(a, at)
	if err != nil || !ok {
		return nil, false, err
	}
	a.fired = append(a.fired, o)
	return deepCopy(v), true, nil
}

// --- $push ---

type pushOp struct {
	vals     bson.A
	slice    *int64
	sort     *sortSpec
	position int64
}

// sortSpec is a $push $sort: the whole element (pattern nil) or fields.
type sortSpec struct {
	whole   int
	pattern []sortKey
	coll    *mql.Collation
}

type sortKey struct {
	parts []string
	dir   int
}

func compilePush(v any, coll *mql.Collation) (operator, error) {
	op := &pushOp{position: math.MaxInt64}
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
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The argument to $each in $push must be an array but it was of type: %s", mql.TypeName(e.Value))
		}
		op.vals = arr
	}
	for _, e := range d {
		if e.Key != "$slice" {
			continue
		}
		n, err := parseInteger(e.Key, e.Value)
		if err != nil {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The value for $slice must be an integer value but was given type: %s", mql.TypeName(e.Value))
		}
		op.slice = &n
	}
	for _, e := range d {
		if e.Key != "$sort" {
			continue
		}
		s, err := compilePushSort(e.Value)
		if err != nil {
			return nil, err
		}
		s.coll = coll
		op.sort = s
	}
	for _, e := range d {
		if e.Key != "$position" {
			continue
		}
		n, err := parseInteger(e.Key, e.Value)
		if err != nil {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The value for $position must be an integer value, not of type: %s", mql.TypeName(e.Value))
		}
		op.position = n
	}
	return op, nil
}

func compilePushSort(v any) (*sortSpec, error) {
	if d, ok := v.(bson.D); ok {
		if len(d) == 0 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort pattern is empty when it should be a set of fields.")
		}
		spec := &sortSpec{}
		for _, e := range d {
			dir := 0.0
			if mql.IsNumber(e.Value) {
				dir, _ = mql.ToFloat64(e.Value)
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
			spec.pattern = append(spec.pattern, sortKey{parts: parts, dir: int(dir)})
		}
		return spec, nil
	}
	if mql.IsNumber(v) {
		dir, _ := mql.ToFloat64(v)
		if dir != 1 && dir != -1 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort element value must be either 1 or -1")
		}
		return &sortSpec{whole: int(dir)}, nil
	}
	return nil, mongoerr.Errorf(mongoerr.BadValue, "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields")
}

// compare orders two array elements by the sort specification: negative,
// zero or positive as x sorts before, with or after y.
func (s *sortSpec) compare(x, y any) int {
	if s.pattern == nil {
		return s.whole * mql.CompareCollated(x, y, s.coll)
	}
	for _, k := range s.pattern {
		c := mql.CompareCollated(sortKeyValue(x, k.parts), sortKeyValue(y, k.parts), s.coll) * k.dir
		if c != 0 {
			return c
		}
	}
	return 0
}

// sortKeyValue extracts a dotted path from an element the way
// extractElementsBasedOnTemplate does: non-documents are wrapped, missing
// values sort as null, arrays are entered by numeric index only.
func sortKeyValue(v any, parts []string) any {
	d, ok := v.(bson.D)
	if !ok {
		d = bson.D{{Key: "", Value: v}}
	}
	var cur any = d
	for _, p := range parts {
		switch c := cur.(type) {
		case bson.D:
			x, ok := lookup(c, p)
			if !ok {
				return nil
			}
			cur = x
		case bson.A:
			i, ok := arrayIndex(p)
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

// apply pushes onto arr. The result is appended when the values were only
// appended to a non-empty array: no $sort, a $position past the end (or
// none) and no $slice that cut anything, as MongoDB's push node decides
// which of its two log forms to use.
func (o *pushOp) apply(arr bson.A) (bson.A, result) {
	res := noop
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
			out = append(out, deepCopy(v))
		}
		out = append(out, arr[at:]...)
		res = modified
		if size > 0 && o.position > size {
			// Appended: MongoDB logs the new elements, not the array.
			res = appended
		}
	}
	if o.sort != nil {
		if res == noop {
			out = append(make(bson.A, 0, len(arr)), arr...) // [] stays [], not null
		}
		sort.SliceStable(out, func(i, j int) bool { return o.sort.compare(out[i], out[j]) < 0 })
		res = modified // logged whole, even when nothing moved
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
			res = modified // logged whole
		}
	}
	return out, res
}

// appendedCount is how many elements an appending push added.
func (o *pushOp) appendedCount() int { return len(o.vals) }

func (o *pushOp) update(a *applier, at *position, cur any) (any, result, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "The field '%s' must be an array but is of type %s in document {%s}", at.dotted(), mql.TypeName(cur), a.idString("no id"))
	}
	out, res := o.apply(arr)
	return out, res, nil
}

func (o *pushOp) create(*applier, *position) (any, bool, error) {
	out, _ := o.apply(bson.A{})
	if out == nil {
		out = bson.A{}
	}
	return out, true, nil
}

// --- $addToSet ---

type addToSetOp struct {
	vals bson.A
	coll *mql.Collation
}

func compileAddToSet(v any, coll *mql.Collation) (operator, error) {
	vals := bson.A{v}
	if d, ok := v.(bson.D); ok && len(d) > 0 && d[0].Key == "$each" {
		arr, ok := d[0].Value.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "The argument to $each in $addToSet must be an array but it was of type %s", mql.TypeName(d[0].Value))
		}
		if len(d) > 1 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "Found unexpected fields after $each in $addToSet: %s", mql.FormatValue(d))
		}
		vals = arr
	}
	var dedup bson.A
	for _, x := range vals {
		if !contains(dedup, x, coll) {
			dedup = append(dedup, x)
		}
	}
	return &addToSetOp{vals: dedup, coll: coll}, nil
}

// contains reports whether arr has an element equal to x under coll.
func contains(arr bson.A, x any, coll *mql.Collation) bool {
	for _, e := range arr {
		if mql.CompareCollated(e, x, coll) == 0 {
			return true
		}
	}
	return false
}

func (o *addToSetOp) update(_ *applier, at *position, cur any) (any, result, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply $addToSet to non-array field. Field named '%s' has non-array type %s", at.field(), mql.TypeName(cur))
	}
	var out bson.A
	for _, x := range o.vals {
		if !contains(arr, x, o.coll) {
			if out == nil {
				out = append(make(bson.A, 0, len(arr)+len(o.vals)), arr...)
			}
			out = append(out, deepCopy(x))
		}
	}
	if out == nil {
		return nil, noop, nil
	}
	return out, modified, nil
}

func (o *addToSetOp) create(*applier, *position) (any, bool, error) {
	out := make(bson.A, len(o.vals))
	for i, x := range o.vals {
		out[i] = deepCopy(x)
	}
	return out, true, nil
}

// --- $pop ---

type popOp struct{ front bool }

func (o *popOp) update(_ *applier, at *position, cur any) (any, result, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, noop, mongoerr.Errorf(mongoerr.TypeMismatch, "Path '%s' contains an element of non-array type '%s'", at.dotted(), mql.TypeName(cur))
	}
	if len(arr) == 0 {
		return nil, noop, nil
	}
	// A new array even when it is left empty: a nil bson.A is stored as
	// null, and MongoDB leaves [].
	out := make(bson.A, 0, len(arr)-1)
	if o.front {
		return append(out, arr[1:]...), modified, nil
	}
	return append(out, arr[:len(arr)-1]...), modified, nil
}

func (o *popOp) create(*applier, *position) (any, bool, error) { return nil, false, nil }

// --- $pull / $pullAll ---

type pullOp struct{ match func(any) bool }

// compilePullMatcher builds $pull's element test as MongoDB does: a
// document whose first field is not a query operator is a query on document
// elements; a document of operators or a regex is a condition on the element
// itself; anything else is compared for equality.
func compilePullMatcher(v any, coll *mql.Collation) (func(any) bool, error) {
	switch x := v.(type) {
	case bson.D:
		if len(x) == 0 || !pathAccepting[x[0].Key] {
			f, err := mql.CompileFilterCollation(x, coll)
			if err != nil {
				return nil, err
			}
			return func(e any) bool {
				d, ok := e.(bson.D)
				return ok && f.Match(d)
			}, nil
		}
		return wrapperMatcher(x, coll)
	case bson.Regex:
		return wrapperMatcher(x, coll)
	}
	return func(e any) bool { return mql.CompareCollated(e, v, coll) == 0 }, nil
}

// wrapperMatcher matches an element against a condition by wrapping it
// in a one-field document.
func wrapperMatcher(cond any, coll *mql.Collation) (func(any) bool, error) {
	const key = "pull"
	f, err := mql.CompileFilterCollation(bson.D{{Key: key, Value: cond}}, coll)
	if err != nil {
		return nil, err
	}
	return func(e any) bool { return f.Match(bson.D{{Key: key, Value: e}}) }, nil
}

func (o *pullOp) update(_ *applier, _ *position, cur any) (any, result, error) {
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply $pull to a non-array value")
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
		return nil, noop, nil
	}
	return out, modified, nil
}

func (o *pullOp) create(*applier, *position) (any, bool, error) { return nil, false, nil }

// --- $bit ---

type bitOp struct {
	ops []bson.E
}

func compileBit(v any) (operator, error) {
	d, ok := v.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "The $bit modifier is not compatible with a %s. You must pass in an embedded document: {$bit: {field: {and/or/xor: #}}", mql.TypeName(v))
	}
	op := &bitOp{}
	for _, e := range d {
		switch e.Key {
		case "and", "or", "xor":
		default:
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $bit modifier only supports 'and', 'or', and 'xor', not '%s' which is an unknown operator: {%s}", e.Key, formatElement(e.Key, e.Value))
		}
		switch e.Value.(type) {
		case int32, int64:
		default:
			return nil, mongoerr.Errorf(mongoerr.BadValue, "The $bit modifier field must be an Integer(32/64 bit); a '%s' is not supported here: {%s}", mql.TypeName(e.Value), formatElement(e.Key, e.Value))
		}
		op.ops = append(op.ops, e)
	}
	if len(op.ops) == 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "You must pass in at least one bitwise operation. The format is: {$bit: {field: {and/or/xor: #}}")
	}
	return op, nil
}

func (o *bitOp) apply(v any) any {
	for _, e := range o.ops {
		v = bitwise(e.Key, v, e.Value)
	}
	return v
}

func (o *bitOp) update(a *applier, at *position, cur any) (any, result, error) {
	switch cur.(type) {
	case int32, int64:
	default:
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply $bit to a value of non-integral type.%s has the field %s of non-integer type %s", a.idString(""), at.field(), mql.TypeName(cur))
	}
	r := o.apply(cur)
	if mql.Identical(r, cur) {
		return nil, noop, nil
	}
	return r, modified, nil
}

func (o *bitOp) create(*applier, *position) (any, bool, error) {
	return o.apply(int32(0)), true, nil
}
