package mql

import (
	"iter"
	"slices"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// reshapeStages is the table of per-document stages that reshape
// documents: $project, $addFields/$set, $unset, $replaceRoot/$replaceWith
// and $unwind.
func reshapeStages() map[string]stageCompiler {
	addFields := func(name string, spec any) (stage, error) {
		d, ok := spec.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.StageNotObject, "%s specification stage must be an object, got %s", name, TypeName(spec))
		}
		return compileAddFields(d)
	}
	return map[string]stageCompiler{
		"$project": func(_ string, spec any) (stage, error) {
			d, ok := spec.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.ProjectNotObject, "$project specification must be an object")
			}
			pr, err := CompileProjectStage(d)
			if err != nil {
				return nil, err
			}
			return &projectStage{p: pr}, nil
		},
		"$addFields":   addFields,
		"$set":         addFields,
		"$unset":       func(_ string, spec any) (stage, error) { return compileUnset(spec) },
		"$replaceRoot": func(_ string, spec any) (stage, error) { return compileReplaceRoot(spec) },
		"$replaceWith": func(_ string, spec any) (stage, error) {
			e, err := compileExprOpen(spec)
			if err != nil {
				return nil, err
			}
			return &replaceRootStage{e: e, what: "'replacement document' "}, nil
		},
		"$unwind": func(_ string, spec any) (stage, error) { return compileUnwind(spec) },
	}
}

// compileReplaceRoot compiles {$replaceRoot: {newRoot: <expression>}}.
func compileReplaceRoot(spec any) (stage, error) {
	d, ok := spec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ReplaceRootNotObject, "expected an object as specification for $replaceRoot stage, got %s", TypeName(spec))
	}
	var root any
	found := false
	for _, e := range d {
		if e.Key != "newRoot" {
			return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '$replaceRoot.%s' is an unknown field.", e.Key)
		}
		root, found = e.Value, true
	}
	if !found {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field '$replaceRoot.newRoot' is missing but a required field")
	}
	e, err := compileExprOpen(root)
	if err != nil {
		return nil, err
	}
	return &replaceRootStage{e: e, what: "'newRoot' expression "}, nil
}

// projectStage is $project.
type projectStage struct{ p *Projection }

func (s *projectStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	if s.p.hasPositional {
		_, err := s.p.Apply(doc)
		return nil, false, err
	}
	out, err := s.p.applyVars(doc, -1, rc.vars, rc.coll)
	return out, err == nil, err
}

func (s *projectStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// addFieldsStage is $addFields / $set: every expression is evaluated
// against the input document, then the results are set in order.
type addFieldsStage struct {
	paths [][]string
	exprs []*Expr
}

func compileAddFields(spec bson.D) (stage, error) {
	s := &addFieldsStage{}
	seen := &pathTrie{}
	var walk func(prefix []string, d bson.D) error
	walk = func(prefix []string, d bson.D) error {
		for _, e := range d {
			if e.Key == "" {
				return mongoerr.Errorf(mongoerr.FieldPathEmpty, "FieldPath cannot be constructed with empty string")
			}
			if strings.HasPrefix(e.Key, "$") {
				return mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
			}
			parts, err := aggSplitFieldPath(e.Key)
			if err != nil {
				return err
			}
			path := append(slices.Clone(prefix), parts...)
			if sub, ok := e.Value.(bson.D); ok && len(sub) > 0 && !strings.HasPrefix(sub[0].Key, "$") {
				if err := walk(path, sub); err != nil {
					return err
				}
				continue
			}
			key := strings.Join(path, ".")
			if p, conflict := seen.add(path, key); conflict {
				return mongoerr.Errorf(mongoerr.ConflictingPaths, "specification contains two conflicting paths. Cannot specify both '%s' and '%s'", p, key)
			}
			x, err := compileExprOpen(e.Value)
			if err != nil {
				return err
			}
			s.paths = append(s.paths, path)
			s.exprs = append(s.exprs, x)
		}
		return nil
	}
	if err := walk(nil, spec); err != nil {
		return nil, err
	}
	return s, nil
}

// pathTrie is a set of field paths, split at the dots, in which no path is
// a prefix of another. Adding a path costs steps in proportion to its
// number of parts, whatever the size of the set.
type pathTrie struct {
	children map[string]*pathTrie
	// key is the dotted path that ends at this node ("" if none ends here);
	// first is the first path added that passes through or ends here.
	key, first string
}

// add adds path (key is its dotted form) unless the set holds it, one of
// its prefixes or a path it is a prefix of: then it returns that path and
// true, and the set is unchanged. path must not be empty.
func (t *pathTrie) add(path []string, key string) (string, bool) {
	n := t
	for i, part := range path {
		countStep()
		next := n.children[part]
		if next == nil {
			for _, part := range path[i:] {
				countStep()
				next = &pathTrie{first: key}
				if n.children == nil {
					n.children = map[string]*pathTrie{}
				}
				n.children[part] = next
				n = next
			}
			n.key = key
			return "", false
		}
		if next.key != "" {
			// A stored path is path or one of its prefixes.
			return next.key, true
		}
		n = next
	}
	// path is a proper prefix of stored paths.
	return n.first, true
}

func (s *addFieldsStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	vals := make([]any, len(s.exprs))
	for i, e := range s.exprs {
		v, err := rc.evalDoc(e, doc)
		if err != nil {
			return nil, false, err
		}
		vals[i] = v
	}
	return aggSetPaths(doc, s.paths, vals), true, nil
}

func (s *addFieldsStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// aggSetPath returns a copy of doc with path set to v (removed when v is
// Missing). Arrays on the path are traversed element-wise, and non-document
// values on the path are replaced by documents, as $addFields does. doc is
// not modified.
func aggSetPath(doc bson.D, path []string, v any) bson.D {
	out := make(bson.D, 0, len(doc)+1)
	found := false
	for _, e := range doc {
		if e.Key != path[0] {
			out = append(out, e)
			continue
		}
		if found {
			continue
		}
		found = true
		if len(path) == 1 {
			if v != Missing {
				out = append(out, bson.E{Key: e.Key, Value: v})
			}
			continue
		}
		out = append(out, bson.E{Key: e.Key, Value: aggSetInValue(e.Value, path[1:], v)})
	}
	if !found && v != Missing {
		if len(path) == 1 {
			out = append(out, bson.E{Key: path[0], Value: v})
		} else {
			out = append(out, bson.E{Key: path[0], Value: aggSetPath(bson.D{}, path[1:], v)})
		}
	}
	return out
}

func aggSetInValue(cur any, path []string, v any) any {
	switch t := cur.(type) {
	case bson.D:
		return aggSetPath(t, path, v)
	case bson.A:
		out := make(bson.A, len(t))
		for i, el := range t {
			out[i] = aggSetInValue(el, path, v)
		}
		return out
	}
	return aggSetPath(bson.D{}, path, v)
}

// unsetStage is $unset.
type unsetStage struct {
	// tree holds the paths merged, so that apply copies the document once.
	tree *unsetNode
}

// unsetNode is a field of an $unset tree: removed, or entered to remove
// some of its children.
type unsetNode struct {
	remove   bool
	children map[string]*unsetNode
}

// add merges path into the tree under n; a removed field's children do not
// matter.
func (n *unsetNode) add(path []string) {
	for _, part := range path {
		if n.children == nil {
			n.children = map[string]*unsetNode{}
		}
		c := n.children[part]
		if c == nil {
			c = &unsetNode{}
			n.children[part] = c
		}
		n = c
	}
	n.remove = true
}

// unsetTreeDoc returns a copy of doc without the paths of the tree under n:
// the result of aggUnsetPath applied path by path, in one pass.
func unsetTreeDoc(doc bson.D, n *unsetNode) bson.D {
	out := make(bson.D, 0, len(doc))
	for _, e := range doc {
		countStep()
		c := n.children[e.Key]
		switch {
		case c == nil:
			out = append(out, e)
		case c.remove:
		default:
			out = append(out, bson.E{Key: e.Key, Value: unsetTreeValue(e.Value, c)})
		}
	}
	return out
}

func unsetTreeValue(cur any, n *unsetNode) any {
	switch t := cur.(type) {
	case bson.D:
		return unsetTreeDoc(t, n)
	case bson.A:
		out := make(bson.A, len(t))
		for i, el := range t {
			out[i] = unsetTreeValue(el, n)
		}
		return out
	}
	return cur
}

func compileUnset(spec any) (stage, error) {
	var fields []any
	switch t := spec.(type) {
	case string:
		fields = []any{t}
	case bson.A:
		if len(t) == 0 {
			return nil, mongoerr.Errorf(mongoerr.UnsetEmpty, "$unset specification must be a string or an array with at least one field")
		}
		fields = t
	default:
		return nil, mongoerr.Errorf(mongoerr.UnsetNotString, "$unset specification must be a string or an array")
	}
	s := &unsetStage{tree: &unsetNode{}}
	for _, f := range fields {
		str, ok := f.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.UnsetNotString, "$unset specification must be a string or an array containing only string values")
		}
		if str == "" {
			return nil, mongoerr.Errorf(mongoerr.FieldPathEmpty, "FieldPath cannot be constructed with empty string")
		}
		if strings.HasPrefix(str, "$") {
			return nil, mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		parts, err := aggSplitFieldPath(str)
		if err != nil {
			return nil, err
		}
		s.tree.add(parts)
	}
	return s, nil
}

func (s *unsetStage) apply(_ *runCtx, doc bson.D) (bson.D, bool, error) {
	return unsetTreeDoc(doc, s.tree), true, nil
}

func (s *unsetStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// aggUnsetPath returns a copy of doc without path (arrays traversed).
func aggUnsetPath(doc bson.D, path []string) bson.D {
	out := make(bson.D, 0, len(doc))
	for _, e := range doc {
		if e.Key != path[0] {
			out = append(out, e)
			continue
		}
		if len(path) == 1 {
			continue
		}
		out = append(out, bson.E{Key: e.Key, Value: aggUnsetInValue(e.Value, path[1:])})
	}
	return out
}

func aggUnsetInValue(cur any, path []string) any {
	switch t := cur.(type) {
	case bson.D:
		return aggUnsetPath(t, path)
	case bson.A:
		out := make(bson.A, len(t))
		for i, el := range t {
			out[i] = aggUnsetInValue(el, path)
		}
		return out
	}
	return cur
}

// replaceRootStage is $replaceRoot / $replaceWith.
type replaceRootStage struct {
	e    *Expr
	what string
}

func (s *replaceRootStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	v, err := rc.evalDoc(s.e, doc)
	if err != nil {
		return nil, false, err
	}
	d, ok := v.(bson.D)
	if !ok {
		return nil, false, mongoerr.Errorf(mongoerr.ReplaceRootNewRootNotObject, "%smust evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'. Input document: %s",
			s.what, aggFmt(v), TypeName(v), aggFmt(doc))
	}
	return d, true, nil
}

func (s *replaceRootStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// unwindStage is $unwind.
type unwindStage struct {
	path      []string
	indexPath []string
	preserve  bool
}

func compileUnwind(spec any) (stage, error) {
	s := &unwindStage{}
	var pathStr string
	switch t := spec.(type) {
	case string:
		pathStr = t
	case bson.D:
		hasPath := false
		for _, e := range t {
			switch e.Key {
			case "path":
				p, ok := e.Value.(string)
				if !ok {
					return nil, mongoerr.Errorf(mongoerr.UnwindPathNotString, "expected a string as the path for $unwind stage, got %s", TypeName(e.Value))
				}
				pathStr, hasPath = p, true
			case "includeArrayIndex":
				p, ok := e.Value.(string)
				if !ok || p == "" {
					return nil, mongoerr.Errorf(mongoerr.UnwindIndexFieldEmpty, "expected a non-empty string for the includeArrayIndex  option to $unwind stage, got %s", TypeName(e.Value))
				}
				if strings.HasPrefix(p, "$") {
					return nil, mongoerr.Errorf(mongoerr.UnwindIndexFieldDollar, "includeArrayIndex option to $unwind stage should not be prefixed with a '$': %s", p)
				}
				parts, err := aggSplitFieldPath(p)
				if err != nil {
					return nil, err
				}
				s.indexPath = parts
			case "preserveNullAndEmptyArrays":
				b, ok := e.Value.(bool)
				if !ok {
					return nil, mongoerr.Errorf(mongoerr.UnwindPreserveNotBool, "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage, got %s", TypeName(e.Value))
				}
				s.preserve = b
			default:
				return nil, mongoerr.Errorf(mongoerr.UnwindUnknownOption, "unrecognized option to $unwind stage: %s", e.Key)
			}
		}
		if !hasPath {
			return nil, mongoerr.Errorf(mongoerr.UnwindMissingPath, "no path specified to $unwind stage")
		}
	default:
		return nil, mongoerr.Errorf(mongoerr.UnwindNotStringOrObject, "expected either a string or an object as specification for $unwind stage, got %s", TypeName(spec))
	}
	if !strings.HasPrefix(pathStr, "$") {
		return nil, mongoerr.Errorf(mongoerr.UnwindPathNoDollar, "path option to $unwind stage should be prefixed with a '$': %s", pathStr)
	}
	parts, err := aggSplitFieldPath(pathStr[1:])
	if err != nil {
		return nil, err
	}
	s.path = parts
	return s, nil
}

func (s *unwindStage) run(_ *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			v := aggDocPath(d, s.path)
			arr, isArr := v.(bson.A)
			switch {
			case isArr && len(arr) > 0:
				for i, el := range arr {
					out := aggSetPath(d, s.path, el)
					if s.indexPath != nil {
						out = aggSetPath(out, s.indexPath, int64(i))
					}
					if !yield(out, nil) {
						return
					}
				}
				continue
			case isArr || aggNullish(v):
				if !s.preserve {
					continue
				}
				out := d
				if isArr {
					out = aggUnsetPath(d, s.path)
				}
				if s.indexPath != nil {
					out = aggSetPath(out, s.indexPath, nil)
				}
				if !yield(out, nil) {
					return
				}
				continue
			}
			out := d
			if s.indexPath != nil {
				out = aggSetPath(out, s.indexPath, nil)
			}
			if !yield(out, nil) {
				return
			}
		}
	}
}

// aggDocPath follows path through embedded documents only (no array
// traversal), as $unwind does.
func aggDocPath(d bson.D, path []string) any {
	var v any = d
	for _, p := range path {
		doc, ok := v.(bson.D)
		if !ok {
			return Missing
		}
		v = docField(doc, p)
	}
	return v
}
