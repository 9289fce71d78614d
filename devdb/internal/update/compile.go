package update

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Options are the options of an update that affect how it is compiled.
type Options struct {
	// ArrayFilters are the update's arrayFilters: each is a query filter on
	// one identifier used as $[<identifier>] in the update's paths, for
	// example {"elem.grade": {$gte: 85}} or {elem: {$gte: 85}}.
	ArrayFilters []bson.D
	// Collation is the update's collation (nil: simple binary comparison):
	// array filters, $pull, $pullAll, $addToSet, $min, $max and $push's
	// $sort compare strings under it, as in MongoDB.
	Collation *mql.Collation
}

// ApplyContext is what an update needs to know about the write it is part of.
type ApplyContext struct {
	// Insert is true when the update builds the document an upsert inserts:
	// $setOnInsert only applies then.
	Insert bool
	// Now is the time $currentDate writes (a date with millisecond
	// precision). The zero value means time.Now().
	Now time.Time
	// ClusterTime is the timestamp $currentDate {$type: "timestamp"} writes.
	// The zero value means a timestamp built from Now (seconds, increment 1).
	ClusterTime bson.Timestamp
	// Positional is the array index the query matched, which the positional
	// operator `$` stands for; -1 when the query matched no array element.
	Positional int
}

// Update is a compiled operator update ({$set: ..., $inc: ...}).
// It is immutable and safe for concurrent use.
type Update struct {
	root       *objectNode
	filters    map[string]*arrayFilter
	idPath     string
	positional bool
	coll       *mql.Collation
}

// arrayFilter is one compiled arrayFilters entry.
type arrayFilter struct {
	id     string
	filter *mql.Filter
}

// node is a node of the update tree: *objectNode, *arrayNode or *leafNode.
type node interface{ nodeKind() string }

// objectNode holds the updates below a document (or array) path.
type objectNode struct {
	children   map[string]node
	order      []string
	positional node
}

// arrayNode holds the updates of `$[]` (identifier "") and `$[<id>]`.
type arrayNode struct {
	children map[string]node
	order    []string
}

// leafNode is one operator applied to one path.
type leafNode struct {
	op   operator
	path string
}

func (*objectNode) nodeKind() string { return "object" }
func (*arrayNode) nodeKind() string  { return "array" }
func (*leafNode) nodeKind() string   { return "leaf" }

// modifierNames lists the update operators in the form MongoDB accepts.
var modifierNames = map[string]bool{
	"$set": true, "$unset": true, "$inc": true, "$mul": true, "$min": true, "$max": true,
	"$rename": true, "$setOnInsert": true, "$currentDate": true, "$push": true,
	"$addToSet": true, "$pop": true, "$pull": true, "$pullAll": true, "$bit": true,
}

var identifierRe = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// IsOperatorUpdate reports whether u is an update-operator document (its
// first field name starts with "$") rather than a replacement document.
func IsOperatorUpdate(u bson.D) bool {
	return len(u) > 0 && strings.HasPrefix(u[0].Key, "$")
}

// ValidateReplacement checks a replacement document as MongoDB does before
// it replaces a matched document: no top-level field name may start with
// "$" (code 52 DollarPrefixedFieldName).
func ValidateReplacement(doc bson.D) error {
	for _, e := range doc {
		if strings.HasPrefix(e.Key, "$") {
			return mongoerr.Errorf(mongoerr.DollarPrefixedFieldName, "The dollar ($) prefixed field '%s' in '%s' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith.", e.Key, e.Key)
		}
	}
	return nil
}

// Compile compiles an update-operator document such as
// {$set: {a: 1}, $inc: {n: 1}}. Errors are *mongoerr.Error values with the codes and
// messages MongoDB reports when it parses the update: unknown modifiers and
// malformed arguments (9 FailedToParse, 2 BadValue, 14 TypeMismatch),
// conflicting paths (40 ConflictingUpdateOperators), invalid paths (56
// EmptyFieldName, 2 BadValue) and array filters that are malformed, unused or
// missing (9, 2).
func Compile(u bson.D, opts Options) (*Update, error) {
	filters, err := compileArrayFilters(opts.ArrayFilters, opts.Collation)
	if err != nil {
		return nil, err
	}
	up := &Update{root: &objectNode{}, filters: filters, coll: opts.Collation}
	used := map[string]bool{}
	for _, mod := range u {
		if !modifierNames[mod.Key] {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", mod.Key)
		}
		args, ok := mod.Value.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Modifiers operate on fields but we found type %s instead. For example: {$mod: {<field>: ...}} not {%s}", mql.TypeName(mod.Value), formatElement(mod.Key, mod.Value))
		}
		if len(args) == 0 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "'%s' is empty. You must specify a field like so: {%s: {<field>: ...}}", mod.Key, mod.Key)
		}
		for _, arg := range args {
			if err := up.addOperator(mod.Key, arg, used); err != nil {
				return nil, err
			}
		}
	}
	for _, id := range sortedKeys(filters) {
		if !used[id] {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "The array filter for identifier '%s' was not used in the update %s", id, mql.FormatValue(u))
		}
	}
	finish(up.root)
	return up, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compileArrayFilters parses arrayFilters as MongoDB does: each filter
// names exactly one top-level identifier.
func compileArrayFilters(afs []bson.D, coll *mql.Collation) (map[string]*arrayFilter, error) {
	out := make(map[string]*arrayFilter, len(afs))
	for _, af := range afs {
		ids := map[string]bool{}
		var order []string
		filterIdentifiers(af, ids, &order)
		if len(order) == 0 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot use an expression without a top-level field name in arrayFilters")
		}
		if len(order) > 1 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Error parsing array filter :: caused by :: Expected a single top-level field name, found '%s' and '%s'", order[0], order[1])
		}
		id := order[0]
		if !identifierRe.MatchString(id) {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found '%s'", id)
		}
		if _, dup := out[id]; dup {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Found multiple array filters with the same top-level field name %s", id)
		}
		f, err := mql.CompileFilterCollation(af, coll)
		if err != nil {
			if me, ok := err.(*mongoerr.Error); ok {
				return nil, &mongoerr.Error{Code: me.Code, Message: "Error parsing array filter :: caused by :: " + me.Message}
			}
			return nil, fmt.Errorf("compile array filter: %w", err)
		}
		out[id] = &arrayFilter{id: id, filter: f}
	}
	return out, nil
}

// filterIdentifiers collects the distinct top-level field names (the
// part before the first dot) of a filter, looking inside $and/$or/$nor.
func filterIdentifiers(f bson.D, ids map[string]bool, order *[]string) {
	for _, e := range f {
		if strings.HasPrefix(e.Key, "$") {
			switch e.Key {
			case "$and", "$or", "$nor":
				if arr, ok := e.Value.(bson.A); ok {
					for _, c := range arr {
						if d, ok := c.(bson.D); ok {
							filterIdentifiers(d, ids, order)
						}
					}
				}
			}
			continue
		}
		id, _, _ := strings.Cut(e.Key, ".")
		if !ids[id] {
			ids[id] = true
			*order = append(*order, id)
		}
	}
}

// splitPath validates an update path as MongoDB's fieldchecker does and
// splits it into its components.
func splitPath(path string) ([]string, error) {
	if path == "" {
		return nil, mongoerr.Errorf(mongoerr.EmptyFieldName, "An empty update path is not valid.")
	}
	parts := strings.Split(path, ".")
	for _, p := range parts {
		if p == "" {
			return nil, mongoerr.Errorf(mongoerr.EmptyFieldName, "The update path '%s' contains an empty field name, which is not allowed.", path)
		}
	}
	positional := 0
	for i, p := range parts {
		if p == "$" {
			positional++
			if i == 0 {
				return nil, mongoerr.Errorf(mongoerr.BadValue, "Cannot have positional (i.e. '$') element in the first position in path '%s'", path)
			}
		}
		if isArrayFilterPart(p) && i == 0 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in path '%s'", path)
		}
	}
	if positional > 1 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "Too many positional (i.e. '$') elements found in path '%s'", path)
	}
	return parts, nil
}

func isArrayFilterPart(p string) bool {
	return strings.HasPrefix(p, "$[") && strings.HasSuffix(p, "]")
}

// addOperator parses one {path: argument} of one modifier and merges it
// into the update tree.
func (up *Update) addOperator(mod string, arg bson.E, used map[string]bool) error {
	parts, err := splitPath(arg.Key)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if strings.HasPrefix(p, "$") && p != "$" && !isArrayFilterPart(p) {
			return mongoerr.Errorf(mongoerr.DollarPrefixedFieldName, "The dollar ($) prefixed field '%s' in '%s' is not valid for storage.", p, arg.Key)
		}
	}
	op, err := compileOp(mod, arg, up.coll)
	if err != nil {
		return err
	}
	if ren, ok := op.(*renameOp); ok {
		toParts, err := splitPath(ren.to)
		if err != nil {
			return err
		}
		ren.fromParts = parts
		ren.toParts = toParts
		// MongoDB places a conflict placeholder at the source and the
		// rename itself at the destination.
		if err := up.merge(parts, arg.Key, &leafNode{op: placeholderOp{}, path: arg.Key}, used); err != nil {
			return err
		}
		if err := up.merge(toParts, ren.to, &leafNode{op: ren, path: ren.to}, used); err != nil {
			return err
		}
		up.notePath(parts, arg.Key)
		up.notePath(toParts, ren.to)
		return nil
	}
	if err := up.merge(parts, arg.Key, &leafNode{op: op, path: arg.Key}, used); err != nil {
		return err
	}
	up.notePath(parts, arg.Key)
	return nil
}

// notePath records facts about a path the update touches.
func (up *Update) notePath(parts []string, path string) {
	if parts[0] == "_id" && up.idPath == "" {
		up.idPath = path
	}
	for _, p := range parts {
		if p == "$" {
			up.positional = true
		}
	}
}

// merge inserts leaf at parts into the tree, reporting conflicts the way
// UpdateObjectNode::parseAndMerge does.
func (up *Update) merge(parts []string, path string, leaf *leafNode, used map[string]bool) error {
	var cur node = up.root
	for i, p := range parts {
		last := i == len(parts)-1
		conflictAt := strings.Join(parts[:i+1], ".")
		if isArrayFilterPart(p) {
			id := p[2 : len(p)-1]
			if id != "" {
				if _, ok := up.filters[id]; !ok {
					return mongoerr.Errorf(mongoerr.BadValue, "No array filter found for identifier '%s' in path '%s'", id, path)
				}
				used[id] = true
			}
		}
		// The node at cur must be an array node for $[...] parts and an
		// object node otherwise.
		wantArray := isArrayFilterPart(p)
		key := p
		if wantArray {
			key = p[2 : len(p)-1]
		}
		var children map[string]node
		var existing node
		switch n := cur.(type) {
		case *objectNode:
			if wantArray {
				return mongoerr.Errorf(mongoerr.ConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'", path, strings.Join(parts[:i], "."))
			}
			if key == "$" {
				existing = n.positional
			} else {
				if n.children == nil {
					n.children = map[string]node{}
				}
				children = n.children
				existing = n.children[key]
			}
		case *arrayNode:
			if !wantArray {
				return mongoerr.Errorf(mongoerr.ConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'", path, strings.Join(parts[:i], "."))
			}
			if n.children == nil {
				n.children = map[string]node{}
			}
			children = n.children
			existing = n.children[key]
		}
		if last {
			if existing != nil {
				return mongoerr.Errorf(mongoerr.ConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'", path, path)
			}
			setChild(cur, children, key, leaf)
			return nil
		}
		if existing != nil {
			if _, isLeaf := existing.(*leafNode); isLeaf {
				return mongoerr.Errorf(mongoerr.ConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'", path, conflictAt)
			}
			cur = existing
			continue
		}
		var next node = &objectNode{}
		if isArrayFilterPart(parts[i+1]) {
			next = &arrayNode{}
		}
		setChild(cur, children, key, next)
		cur = next
	}
	return nil
}

func setChild(parent node, children map[string]node, key string, child node) {
	if o, ok := parent.(*objectNode); ok && key == "$" {
		o.positional = child
		return
	}
	children[key] = child
}

// finish computes the processing order of every node's children: since
// MongoDB 5.0 fields are processed in lexicographic order, numeric field
// names in numeric order.
func finish(n node) {
	switch x := n.(type) {
	case *objectNode:
		x.order = sortedFields(x.children)
		for _, c := range x.children {
			finish(c)
		}
		if x.positional != nil {
			finish(x.positional)
		}
	case *arrayNode:
		x.order = sortedKeys(x.children)
		for _, c := range x.children {
			finish(c)
		}
	}
}

func sortedFields(m map[string]node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.SliceStable(keys, func(i, j int) bool { return fieldLess(keys[i], keys[j]) })
	return keys
}

// fieldLess orders field names: two numeric names numerically, anything
// else bytewise.
func fieldLess(a, b string) bool {
	_, an := arrayIndex(a)
	_, bn := arrayIndex(b)
	if an && bn {
		if len(a) != len(b) {
			return len(a) < len(b)
		}
	}
	return a < b
}

// arrayIndex parses a path component as an array index: decimal digits
// without a leading zero (or "0").
func arrayIndex(p string) (int, bool) {
	if p == "" || len(p) > 9 || (len(p) > 1 && p[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
