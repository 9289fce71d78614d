package mql

import (
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Projection is a compiled projection: a find projection (CompileProjection)
// or an aggregation $project stage (CompileProjectStage). It is immutable
// and safe for concurrent use.
type Projection struct {
	fields []*projField
	// index maps the names of fields to their positions (nil for short
	// lists: see projIndexMin).
	index     map[string]int
	inclusion bool
	// identity is set for an empty find projection: Apply returns the
	// document unchanged.
	identity      bool
	keepID        bool
	hasPositional bool
	// vars are variables computed fields see as $$name (a command's let).
	vars map[string]any
	// coll is the collation computed fields compare strings under.
	coll *Collation
}

// WithVars returns a copy of p whose computed fields see vars (a command's
// let variables, from CompileLet) as $$name. vars is only read.
func (p *Projection) WithVars(vars map[string]any) *Projection {
	q := *p
	q.vars = vars
	return &q
}

// projKind is what a projection does to one field.
type projKind uint8

const (
	projSubtree projKind = iota
	projInclude
	projExclude
	projExpr
	projSlice
	projElemMatch
	projPositional
)

// projField is one node of the projection tree.
type projField struct {
	name     string
	kind     projKind
	children []*projField
	// childIndex maps the names of children to their positions (nil for
	// short lists: see projIndexMin).
	childIndex map[string]int
	expr       *Expr
	// $slice: skip (possibly negative) and limit; hasSkip distinguishes
	// {$slice: n} from {$slice: [skip, n]}.
	skip, limit int64
	hasSkip     bool
	elemMatch   *elemMatchMatch
	// computed is set when this node or a descendant is projExpr.
	computed bool
}

// CompileProjection compiles a find (or findAndModify "fields") projection:
// 1/true (or any non-zero number) includes a field, 0/false excludes it,
// {a: {b: 1}} equals {"a.b": 1}, {$slice: n | [skip, n]}, {$elemMatch:
// {...}} and "a.$" are the find-only operators, and any other value (a
// string such as "$x", an operator document, a literal) is an aggregation
// expression computing the field. Inclusion and exclusion cannot be mixed
// except for _id (Location31254 / Location31253). An empty projection
// returns documents unchanged.
func CompileProjection(spec bson.D) (*Projection, error) {
	return compileProjection(spec, false, nil)
}

// CompileProjectionCollation is CompileProjection for a find with the
// collation c: $elemMatch and computed fields compare strings under it
// (nil: binary).
func CompileProjectionCollation(spec bson.D, c *Collation) (*Projection, error) {
	return compileProjection(spec, false, c)
}

// CompileProjectStage compiles the specification of an aggregation $project
// stage: the same rules as CompileProjection except that $slice and
// $elemMatch are the aggregation expressions of those names, positional
// "a.$" is not allowed, and an empty specification is an error
// (Location51272).
func CompileProjectStage(spec bson.D) (*Projection, error) {
	if len(spec) == 0 {
		return nil, mongoerr.Errorf(mongoerr.ProjectionEmpty, "Invalid $project :: caused by :: projection specification must have at least one field")
	}
	return compileProjection(spec, true, nil)
}

// projBuilder accumulates a projection while compiling.
type projBuilder struct {
	p *Projection
	// mode: 0 undecided, 1 inclusion, 2 exclusion.
	mode  int
	stage bool
	// idMode is the _id flag: 0 absent, 1 included, 2 excluded.
	idMode int
}

func compileProjection(spec bson.D, stage bool, coll *Collation) (*Projection, error) {
	b := &projBuilder{p: &Projection{coll: coll}, stage: stage}
	if len(spec) == 0 {
		b.p.identity, b.p.keepID = true, true
		return b.p, nil
	}
	if err := b.addSpec("", spec, 0); err != nil {
		return nil, err
	}
	switch b.mode {
	case 1:
		b.p.inclusion = true
	case 0:
		// Only _id flags and $slice: _id: 1 alone is an inclusion of _id.
		b.p.inclusion = b.idMode == 1
	}
	b.p.keepID = b.idMode != 2
	if b.p.inclusion && b.idMode == 0 && findProjField(b.p.fields, "_id") == nil {
		// _id is included by default; its node goes first.
		b.p.fields = append([]*projField{{name: "_id", kind: projInclude}}, b.p.fields...)
	}
	if !b.p.inclusion && b.idMode == 1 {
		// An explicit _id: 1 in an exclusion projection is the default.
		b.p.fields = removeProjField(b.p.fields, "_id")
	}
	// The _id changes above moved the top-level fields.
	b.p.index = buildProjIndex(b.p.fields)
	return b.p, nil
}

// projIndexMin is the length from which a list of projection fields gets a
// name index: shorter lists are scanned, which is faster for them, and
// longer ones are looked up in the index, so that compiling and applying a
// projection stay linear in the numbers of fields.
var projIndexMin = 16

// buildProjIndex returns the name index of fs, nil when fs is short.
func buildProjIndex(fs []*projField) map[string]int {
	if len(fs) < projIndexMin {
		return nil
	}
	idx := make(map[string]int, len(fs))
	for i, f := range fs {
		if _, dup := idx[f.name]; !dup {
			idx[f.name] = i
		}
	}
	return idx
}

// projFieldIndex returns the position of the first field named name in fs
// (with idx its index or nil), -1 if there is none.
func projFieldIndex(fs []*projField, idx map[string]int, name string) int {
	if idx != nil {
		if i, ok := idx[name]; ok {
			return i
		}
		return -1
	}
	for i, f := range fs {
		countStep()
		if f.name == name {
			return i
		}
	}
	return -1
}

// appendProjField appends f to *fs, keeping the index *idx up to date.
func appendProjField(fs *[]*projField, idx *map[string]int, f *projField) {
	*fs = append(*fs, f)
	switch {
	case *idx != nil:
		if _, dup := (*idx)[f.name]; !dup {
			(*idx)[f.name] = len(*fs) - 1
		}
	case len(*fs) >= projIndexMin:
		*idx = buildProjIndex(*fs)
	}
}

func removeProjField(fs []*projField, name string) []*projField {
	out := fs[:0]
	for _, f := range fs {
		if f.name != name {
			out = append(out, f)
		}
	}
	return out
}

// addSpec adds the fields of a (sub-)projection document under prefix.
func (b *projBuilder) addSpec(prefix string, spec bson.D, depth int) error {
	if depth > maxFilterDepth {
		return badValue("projection nested too deeply")
	}
	for _, e := range spec {
		path := e.Key
		if prefix != "" {
			path = prefix + "." + e.Key
		}
		if err := b.addField(path, e.Value, depth); err != nil {
			return err
		}
	}
	return nil
}

// addField classifies one projection value and inserts it.
func (b *projBuilder) addField(path string, v any, depth int) error {
	if path == "" || strings.HasPrefix(path, "$") && path != "$" {
		return badValue("FieldPath field names may not start with '$'. Consider using $getField or $setField.")
	}
	if strings.HasSuffix(path, ".$") {
		return b.addPositional(strings.TrimSuffix(path, ".$"), v)
	}
	if strings.Contains(path, ".$.") || path == "$" {
		return badValue("Positional projection '%s' contains the positional operator '.$' in a non-terminal position", path)
	}
	parts := splitPath(path)
	for _, p := range parts {
		if p == "" {
			return badValue("FieldPath field names may not be empty strings.")
		}
	}
	switch x := v.(type) {
	case bool:
		return b.addFlag(path, parts, x)
	case bson.D, bson.M, map[string]any:
		d, _ := AsDocument(x)
		if len(d) == 0 {
			return mongoerr.Errorf(mongoerr.ProjectionEmptySubProjection, "An empty sub-projection is not a valid value. Found empty object at path %s", path)
		}
		if !strings.HasPrefix(d[0].Key, "$") {
			return b.addSpec(path, d, depth+1)
		}
		if !b.stage && len(d) == 1 {
			switch d[0].Key {
			case "$slice":
				return b.addSlice(path, parts, d[0].Value)
			case "$elemMatch":
				return b.addElemMatch(path, parts, d[0].Value, depth)
			case "$meta":
				return mongoerr.Errorf(mongoerr.NotImplemented, "$meta projection is not supported by devdb")
			}
		}
		return b.addExpr(path, parts, x)
	}
	if IsNumber(v) {
		f, _ := ToFloat64(v)
		return b.addFlag(path, parts, f != 0)
	}
	return b.addExpr(path, parts, v)
}

// setMode records the projection's mode, failing on a mix.
func (b *projBuilder) setMode(path string, inclusion bool) error {
	switch {
	case b.mode == 0 && inclusion:
		b.mode = 1
	case b.mode == 0:
		b.mode = 2
	case b.mode == 1 && !inclusion:
		return mongoerr.Errorf(mongoerr.ProjectionExclusionInInclusion, "Cannot do exclusion on field %s in inclusion projection", path)
	case b.mode == 2 && inclusion:
		return mongoerr.Errorf(mongoerr.ProjectionInclusionInExclusion, "Cannot do inclusion on field %s in exclusion projection", path)
	}
	return nil
}

func (b *projBuilder) addFlag(path string, parts []string, include bool) error {
	if path == "_id" {
		b.idMode = 2
		if include {
			b.idMode = 1
		}
		kind := projExclude
		if include {
			kind = projInclude
		}
		_, err := b.insert(path, parts, &projField{kind: kind})
		return err
	}
	if err := b.setMode(path, include); err != nil {
		return err
	}
	kind := projExclude
	if include {
		kind = projInclude
	}
	_, err := b.insert(path, parts, &projField{kind: kind})
	return err
}

func (b *projBuilder) addExpr(path string, parts []string, v any) error {
	if b.mode == 2 {
		return mongoerr.Errorf(mongoerr.ProjectionExpressionInExclusion, "Cannot use expression other than $meta in exclusion projection")
	}
	x, err := compileExprOpen(v)
	if err != nil {
		return err
	}
	if err := b.setMode(path, true); err != nil {
		return err
	}
	if path == "_id" {
		b.idMode = 1
	}
	_, err = b.insert(path, parts, &projField{kind: projExpr, expr: x, computed: true})
	return err
}

func (b *projBuilder) addSlice(path string, parts []string, v any) error {
	f := &projField{kind: projSlice}
	if arr, ok := AsArray(v); ok {
		if len(arr) != 2 {
			return badValue("$slice array argument must be of the form [skip, limit]")
		}
		skip, ok1 := sliceInt(arr[0])
		limit, ok2 := sliceInt(arr[1])
		if !ok1 || !ok2 {
			return badValue("$slice array argument must contain two numeric values")
		}
		if limit <= 0 {
			return mongoerr.Errorf(mongoerr.SliceInvalid, "First argument to $slice must be an array, limit must be positive")
		}
		f.skip, f.limit, f.hasSkip = skip, limit, true
	} else {
		n, ok := sliceInt(v)
		if !ok {
			return badValue("$slice only supports numbers and [skip, limit] arrays")
		}
		f.limit = n
	}
	_, err := b.insert(path, parts, f)
	return err
}

// sliceInt converts a $slice argument, truncating fractional numbers.
func sliceInt(v any) (int64, bool) {
	if !IsNumber(v) {
		return 0, false
	}
	return truncNumberToInt64(v), true
}

func (b *projBuilder) addElemMatch(path string, parts []string, v any, depth int) error {
	if len(parts) > 1 {
		return mongoerr.Errorf(mongoerr.ProjectionNestedPositional, "Cannot use $elemMatch projection on a nested field.")
	}
	if _, ok := AsDocument(v); !ok {
		return badValue("elemMatch: Invalid argument, object required.")
	}
	m, err := newElemMatchMatch(v, compileCx{depth: depth, coll: b.p.coll})
	if err != nil {
		return err
	}
	if err := b.setMode(path, true); err != nil {
		return err
	}
	_, err = b.insert(path, parts, &projField{kind: projElemMatch, elemMatch: m})
	return err
}

func (b *projBuilder) addPositional(path string, v any) error {
	if b.stage {
		return badValue("Cannot use positional projection in aggregation projection")
	}
	if b.p.hasPositional {
		return mongoerr.Errorf(mongoerr.ProjectionPositionalTwice, "Cannot specify more than one positional projection per query.")
	}
	if f, ok := ToFloat64(v); !ok && v != true || ok && f == 0 {
		return badValue("positional projection only accepts an inclusion (1 or true)")
	}
	if path == "" || strings.Contains(path, "$") {
		return badValue("Positional projection '%s.$' is invalid", path)
	}
	if err := b.setMode(path, true); err != nil {
		return err
	}
	b.p.hasPositional = true
	_, err := b.insert(path, splitPath(path), &projField{kind: projPositional})
	return err
}

// insert places leaf at parts, creating subtrees, and reports path
// collisions as MongoDB does.
func (b *projBuilder) insert(path string, parts []string, leaf *projField) (*projField, error) {
	list, index := &b.p.fields, &b.p.index
	var chain []*projField
	for i, part := range parts {
		var found *projField
		if j := projFieldIndex(*list, *index, part); j >= 0 {
			found = (*list)[j]
		}
		last := i == len(parts)-1
		if last {
			if found != nil {
				return nil, mongoerr.Errorf(mongoerr.ProjectionPathCollision, "Path collision at %s", path)
			}
			leaf.name = part
			appendProjField(list, index, leaf)
			if leaf.computed {
				for _, c := range chain {
					c.computed = true
				}
			}
			return leaf, nil
		}
		if found == nil {
			found = &projField{name: part, kind: projSubtree}
			appendProjField(list, index, found)
		} else if found.kind != projSubtree {
			return nil, mongoerr.Errorf(mongoerr.ProjectionPathPrefixCollision, "Path collision at %s remaining portion %s", path, strings.Join(parts[i+1:], "."))
		}
		chain = append(chain, found)
		list, index = &found.children, &found.childIndex
	}
	return nil, badValue("empty projection path")
}

// KeepsID reports whether _id survives the projection.
func (p *Projection) KeepsID() bool { return p.keepID }

// Keeps reports whether the field at path (dotted) survives the
// projection whole, with its value or one an expression computes: in an
// inclusion projection it or an ancestor is included or computed
// (including only some of its subfields does not keep it: a string or a
// number there is dropped, a document keeps only those); in an exclusion
// projection neither it nor an ancestor is excluded (excluding some of its
// subfields keeps it, without them).
func (p *Projection) Keeps(path string) bool {
	if p.identity {
		return true
	}
	fields, index := p.fields, p.index
	for _, part := range splitPath(path) {
		var f *projField
		if i := projFieldIndex(fields, index, part); i >= 0 {
			f = fields[i]
		}
		switch {
		case f == nil:
			return !p.inclusion
		case f.kind == projSubtree:
			fields, index = f.children, f.childIndex
		case p.inclusion:
			return f.kind == projInclude || f.kind == projExpr
		default:
			return f.kind != projExclude
		}
	}
	// Only some subfields of path are listed.
	return !p.inclusion
}

// IsInclusion reports whether the projection is an inclusion projection
// (only the listed fields, plus _id unless excluded, survive).
func (p *Projection) IsInclusion() bool { return p.inclusion }

// HasPositional reports whether the projection has a positional "a.$"
// field, which needs ApplyPositional with the index from
// Filter.MatchPositional.
func (p *Projection) HasPositional() bool { return p.hasPositional }

// Includes reports whether the top-level field survives the projection in
// some form (included, computed, sliced or matched); for an exclusion
// projection, every field not excluded as a whole is included.
func (p *Projection) Includes(field string) bool {
	if p.identity {
		return true
	}
	var f *projField
	if i := projFieldIndex(p.fields, p.index, field); i >= 0 {
		f = p.fields[i]
	}
	if p.inclusion {
		return f != nil && f.kind != projExclude
	}
	return f == nil || f.kind != projExclude
}

// Apply projects doc; it never modifies doc (the result may share unchanged
// values with it). It returns an error when an expression fails or when the
// projection is positional (use ApplyPositional).
func (p *Projection) Apply(doc bson.D) (bson.D, error) {
	if p.hasPositional {
		return nil, mongoerr.Errorf(mongoerr.ProjectionPositionalNoMatch, "positional operator '.$' couldn't find a matching element in the array")
	}
	return p.ApplyPositional(doc, -1)
}

// ApplyPositional projects doc with index as the array position for the
// positional "a.$" field (from Filter.MatchPositional). A positional
// projection with no matching element (index < 0 or out of range) is
// Location51246, as MongoDB reports it.
func (p *Projection) ApplyPositional(doc bson.D, index int) (bson.D, error) {
	return p.applyVars(doc, index, p.vars, p.coll)
}

// applyVars is ApplyPositional with vars visible to computed fields.
func (p *Projection) applyVars(doc bson.D, index int, vars map[string]any, coll *Collation) (bson.D, error) {
	if p.identity {
		return doc, nil
	}
	a := projApplier{root: doc, index: index, vars: vars, coll: coll}
	if p.inclusion {
		return a.include(doc, p.fields, p.index)
	}
	return a.exclude(doc, p.fields, p.index), nil
}

// projApplier carries per-document state while projecting.
type projApplier struct {
	root  bson.D
	index int
	vars  map[string]any
	coll  *Collation
}

func findProjField(fs []*projField, name string) *projField {
	for _, f := range fs {
		if f.name == name {
			return f
		}
	}
	return nil
}

// include applies an inclusion (sub-)projection to a document: listed
// fields in document order, then computed fields that the document lacks
// in projection order.
func (a *projApplier) include(doc bson.D, fields []*projField, index map[string]int) (bson.D, error) {
	out := make(bson.D, 0, len(fields))
	seen := make([]bool, len(fields))
	for _, e := range doc {
		i := projFieldIndex(fields, index, e.Key)
		if i < 0 || seen[i] {
			continue
		}
		f := fields[i]
		if f.kind == projExpr {
			continue
		}
		seen[i] = true
		v, keep, err := a.includeValue(f, e.Value)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, bson.E{Key: e.Key, Value: v})
		}
	}
	for i, f := range fields {
		if seen[i] || !f.computed {
			continue
		}
		var v any
		if f.kind == projExpr {
			r, err := f.expr.evalColl(a.root, a.vars, a.coll)
			if err != nil {
				return nil, err
			}
			if IsMissing(r) {
				continue
			}
			v = r
		} else {
			sub, err := a.include(bson.D{}, f.children, f.childIndex)
			if err != nil {
				return nil, err
			}
			v = sub
		}
		out = append(out, bson.E{Key: f.name, Value: v})
	}
	return out, nil
}

// includeValue projects the value of an included field; keep is false
// when the field is dropped.
func (a *projApplier) includeValue(f *projField, v any) (any, bool, error) {
	switch f.kind {
	case projInclude:
		return v, true, nil
	case projExclude:
		return nil, false, nil
	case projSlice:
		return sliceValue(f, v), true, nil
	case projElemMatch:
		arr, ok := AsArray(v)
		if !ok {
			return nil, false, nil
		}
		for _, e := range arr {
			if f.elemMatch.matchElement(e) {
				return bson.A{e}, true, nil
			}
		}
		return nil, false, nil
	case projPositional:
		arr, ok := AsArray(v)
		if !ok || a.index < 0 || a.index >= len(arr) {
			return nil, false, mongoerr.Errorf(mongoerr.ProjectionPositionalNoMatch, "positional operator '.$' couldn't find a matching element in the array")
		}
		return bson.A{arr[a.index]}, true, nil
	}
	// Subtree.
	return a.includeSub(f, v)
}

// includeSub applies a subtree to a value: documents are projected,
// arrays element-wise; scalars are dropped unless the subtree computes
// fields, in which case they are replaced by a document of those fields.
func (a *projApplier) includeSub(f *projField, v any) (any, bool, error) {
	if d, ok := AsDocument(v); ok {
		out, err := a.include(d, f.children, f.childIndex)
		return out, err == nil, err
	}
	if arr, ok := AsArray(v); ok {
		out := make(bson.A, 0, len(arr))
		for _, e := range arr {
			x, keep, err := a.includeSub(f, e)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, x)
			}
		}
		return out, true, nil
	}
	if f.computed {
		out, err := a.include(bson.D{}, f.children, f.childIndex)
		return out, err == nil, err
	}
	return nil, false, nil
}

// exclude applies an exclusion (sub-)projection: every field is kept in
// document order except the excluded ones; $slice fields are sliced.
func (a *projApplier) exclude(doc bson.D, fields []*projField, index map[string]int) bson.D {
	out := make(bson.D, 0, len(doc))
	for _, e := range doc {
		i := projFieldIndex(fields, index, e.Key)
		if i < 0 {
			out = append(out, e)
			continue
		}
		f := fields[i]
		switch f.kind {
		case projExclude:
			continue
		case projSlice:
			out = append(out, bson.E{Key: e.Key, Value: sliceValue(f, e.Value)})
		case projSubtree:
			out = append(out, bson.E{Key: e.Key, Value: a.excludeSub(f, e.Value)})
		default:
			out = append(out, e)
		}
	}
	return out
}

func (a *projApplier) excludeSub(f *projField, v any) any {
	if d, ok := AsDocument(v); ok {
		return a.exclude(d, f.children, f.childIndex)
	}
	if arr, ok := AsArray(v); ok {
		out := make(bson.A, len(arr))
		for i, e := range arr {
			out[i] = a.excludeSub(f, e)
		}
		return out
	}
	return v
}

// sliceValue applies find's $slice to an array value; other values are
// returned unchanged.
func sliceValue(f *projField, v any) any {
	arr, ok := AsArray(v)
	if !ok {
		return v
	}
	n := int64(len(arr))
	var start, end int64
	if !f.hasSkip {
		if f.limit >= 0 {
			start, end = 0, min(f.limit, n)
		} else {
			start, end = max(n+f.limit, 0), n
		}
	} else {
		start = f.skip
		if start < 0 {
			start = max(n+start, 0)
		}
		start = min(start, n)
		end = start + min(f.limit, n-start)
	}
	out := make(bson.A, end-start)
	copy(out, arr[start:end])
	return out
}
