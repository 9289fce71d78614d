package triggers

// The match and project documents: YAML turned into BSON, then checked
// with MongoDB's query language (internal/mql), every problem at its line
// and column.

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/textcut"
	"go.mongodb.org/mongo-driver/v2/bson"
	"gopkg.in/yaml.v3"
)

// match decodes a trigger's match filter and reports every problem in it:
// the static problems of its $expr expressions, then each part the query
// compiler rejects.
func (d *decoder) match(e entry) bson.D {
	v := deref(e.val)
	if v.Kind != yaml.MappingNode {
		d.errorf(v, "match: expected a query document (a mapping), got %s", describe(v))
		return nil
	}
	spec, ok := d.toBSON(v, 0)
	if !ok {
		return nil
	}
	doc, _ := spec.(bson.D)
	reported := map[string]bool{}
	d.matchExprProblems(v, doc, nil, reported, 0)
	for _, fe := range filterErrors(d.withoutRefusedInPipeline(v, doc, 0), nil) {
		if !reported[mqlMessage(fe.err)] {
			d.errorf(d.locateFilterError(v, fe), "match: %s", withOperatorHint(mqlMessage(fe.err)))
		}
	}
	return doc
}

// refusedInPipeline are the query operators MongoDB refuses in a change
// stream's $match (an aggregation $match after the $changeStream stage),
// with its reason and what to use instead.
var refusedInPipeline = map[string]string{
	"$where": "$where is not allowed in a change stream's match: MongoDB refuses it in any aggregation $match (16395); use $expr",
	"$text":  "$text is not allowed in a change stream's match: MongoDB allows it only in a $match that is a pipeline's first stage (17313), and a change stream's comes after $changeStream; use $regex",
}

// withoutRefusedInPipeline reports each operator of refusedInPipeline in
// doc (at the top level and inside $and, $or and $nor) at its key, and
// returns doc without them for the query compiler's own checks (its
// message for them is about a find, not a change stream). doc itself is
// not modified.
func (d *decoder) withoutRefusedInPipeline(root *yaml.Node, doc bson.D, depth int) bson.D {
	if depth > maxDepth {
		return doc
	}
	out := make(bson.D, 0, len(doc))
	for _, e := range doc {
		if msg, refused := refusedInPipeline[e.Key]; refused {
			at := findKey(root, e.Key, 0)
			if at == nil {
				at = root
			}
			d.errorf(at, "match: %s", msg)
			continue
		}
		if branches, ok := e.Value.(bson.A); ok && (e.Key == "$and" || e.Key == "$or" || e.Key == "$nor") {
			kept := make(bson.A, len(branches))
			for i, b := range branches {
				if bd, ok := b.(bson.D); ok {
					b = d.withoutRefusedInPipeline(root, bd, depth+1)
				}
				kept[i] = b
			}
			e.Value = kept
		}
		out = append(out, e)
	}
	return out
}

// matchExprProblems reports every static problem of the $expr expressions
// in a query filter (at the top level and inside $and, $or and $nor),
// recording each message in reported so that the compiler's first error
// for the same mistake is not reported twice.
func (d *decoder) matchExprProblems(root *yaml.Node, doc bson.D, path []mql.PathStep, reported map[string]bool, depth int) {
	if depth > maxDepth {
		return
	}
	for _, e := range doc {
		p := append(append([]mql.PathStep(nil), path...), mql.PathStep{Key: e.Key})
		switch e.Key {
		case "$expr":
			for _, prob := range mql.CheckExpr(e.Value) {
				full := append(append([]mql.PathStep(nil), p...), prob.Path...)
				d.errorf(d.locatePath(root, full), "match: $expr: %s", withOperatorHint(prob.Message))
				reported[prob.Message] = true
			}
		case "$and", "$or", "$nor":
			branches, _ := e.Value.(bson.A)
			for i, b := range branches {
				if bd, ok := b.(bson.D); ok {
					d.matchExprProblems(root, bd, append(append([]mql.PathStep(nil), p...), mql.PathStep{Index: i, IsIndex: true}), reported, depth+1)
				}
			}
		}
	}
}

// filterError is one problem of a query filter and the path, in the
// filter, of the condition it concerns: a field's key, a field's operator
// (field, then operator) or a $and/$or/$nor key with the branch's index
// and the condition inside it; nil for a problem of the whole filter.
type filterError struct {
	err  error
	path []mql.PathStep
}

// filterErrors returns every problem of a query filter, not only the first
// one mql.CompileFilter stops at: each condition, each operator of a
// field's operator document and each branch of $and, $or and $nor is
// compiled on its own. Only when no part fails alone is the whole filter's
// error returned (a problem of the combination). path is doc's own path.
// An operator MongoDB evaluates but the local evaluator does not
// ($geoWithin, $geoIntersects, $sampleRate: mql.UnevaluatedError) is not a
// problem: the server runs match.
func filterErrors(doc bson.D, path []mql.PathStep) []filterError {
	at := func(steps ...mql.PathStep) []mql.PathStep { return append(slices.Clip(path), steps...) }
	if _, err := mql.CompileFilter(doc); err == nil {
		return nil
	} else if len(doc) == 0 {
		return []filterError{{err, path}}
	}
	var errs []filterError
	seen := map[string]bool{}
	add := func(fe filterError) {
		if msg := fe.err.Error(); !seen[msg] {
			seen[msg] = true
			errs = append(errs, fe)
		}
	}
	for _, e := range doc {
		one := bson.D{e}
		if _, err := mql.CompileFilter(one); err == nil {
			continue
		} else {
			var parts []filterError
			switch v := e.Value.(type) {
			case bson.A:
				if e.Key == "$and" || e.Key == "$or" || e.Key == "$nor" {
					for i, branch := range v {
						if bd, ok := branch.(bson.D); ok {
							parts = append(parts, filterErrors(bd, at(mql.PathStep{Key: e.Key}, mql.PathStep{Index: i, IsIndex: true}))...)
						}
					}
				}
			case bson.D:
				if !strings.HasPrefix(e.Key, "$") && len(v) > 1 && strings.HasPrefix(v[0].Key, "$") {
					// $options belongs to its $regex: compiled with it, never alone.
					opts := slices.IndexFunc(v, func(op bson.E) bool { return op.Key == "$options" })
					hasRegex := slices.ContainsFunc(v, func(op bson.E) bool { return op.Key == "$regex" })
					for _, op := range v {
						cond := bson.D{op}
						switch {
						case op.Key == "$options" && hasRegex:
							continue
						case op.Key == "$regex" && opts >= 0:
							cond = append(cond, v[opts])
						}
						if _, perr := mql.CompileFilter(bson.D{{Key: e.Key, Value: cond}}); perr != nil && !unevaluated(perr) {
							parts = append(parts, filterError{perr, at(mql.PathStep{Key: e.Key}, mql.PathStep{Key: op.Key})})
						}
					}
				}
			}
			if len(parts) == 0 && !unevaluated(err) {
				p := at(mql.PathStep{Key: e.Key})
				if v, ok := e.Value.(bson.D); ok && len(v) == 1 && !strings.HasPrefix(e.Key, "$") && strings.HasPrefix(v[0].Key, "$") {
					p = append(p, mql.PathStep{Key: v[0].Key}) // the field's one operator
				}
				parts = []filterError{{err, p}}
			}
			for _, p := range parts {
				add(p)
			}
		}
	}
	if len(errs) == 0 {
		if _, err := mql.CompileFilter(doc); !unevaluated(err) {
			errs = append(errs, filterError{err, path})
		}
	}
	return errs
}

// unevaluated reports whether err is only that a filter uses an operator
// MongoDB evaluates but the local evaluator does not.
func unevaluated(err error) bool {
	var ue *mql.UnevaluatedError
	return errors.As(err, &ue)
}

// UnevaluatedMatchOperators returns the operators of the trigger's match
// that MongoDB evaluates but changehook's local evaluator does not
// ($geoWithin, $within, $geoIntersects, $sampleRate), once each in the
// order they appear; nil when there is none. Such a trigger runs against
// MongoDB, but changehook test and validate --events cannot tell whether
// an event matches, and devdb cannot serve its stream.
func (t *Trigger) UnevaluatedMatchOperators() []string {
	var out []string
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > maxDepth {
			return
		}
		switch x := v.(type) {
		case bson.D:
			for _, e := range x {
				if mql.IsUnevaluatedOperator(e.Key) && !slices.Contains(out, e.Key) {
					out = append(out, e.Key)
				}
				walk(e.Value, depth+1)
			}
		case bson.A:
			for _, e := range x {
				walk(e, depth+1)
			}
		}
	}
	walk(t.Match, 0)
	return out
}

// locateFilterError points at the key of an operator the message of fe
// names inside the condition it concerns, or else at the condition's own
// key (root, the filter, for a problem of the whole filter).
func (d *decoder) locateFilterError(root *yaml.Node, fe filterError) *yaml.Node {
	if len(fe.path) == 0 {
		return locateOperator(root, fe.err)
	}
	key := d.locatePath(root, fe.path)
	// The condition's value: the path once more, to a key no filter has.
	val := d.locatePath(root, append(slices.Clip(fe.path), mql.PathStep{Key: "\x00"}))
	if val != key {
		if k := locateOperator(val, fe.err); k != val {
			return k
		}
	}
	return key
}

func (d *decoder) project(e entry, ordering Ordering) bson.D {
	v := deref(e.val)
	if v.Kind != yaml.MappingNode {
		d.errorf(v, "project: expected a $project document (a mapping), got %s", describe(v))
		return nil
	}
	spec, ok := d.toBSON(v, 0)
	if !ok {
		return nil
	}
	doc, _ := spec.(bson.D)
	if len(doc) == 0 {
		d.errorf(v, "project: an empty $project is not allowed; remove project")
		return nil
	}
	bad := d.projectExprProblems(v, doc, nil, 0)
	p, err := mql.CompileProjectStage(doc)
	switch {
	case err != nil:
		if !bad {
			d.errorf(locateOperator(v, err), "project: %s", withOperatorHint(mqlMessage(err)))
		}
	case bad:
	case d.idChanged(v, doc):
	case !p.KeepsID():
		d.errorf(v, "project: must keep _id (the resume token); MongoDB fails the change stream with ChangeStreamFatalError (280) otherwise")
	case !p.Keeps("operationType"):
		d.errorf(v, "project: must keep operationType; changehook needs it to recognise invalidate events")
	case ordering == PerDocument && !p.Keeps("documentKey._id"):
		d.errorf(v, "project: must keep documentKey when ordering is per_document (events are ordered by documentKey)")
	}
	return doc
}

// idChanged reports, at its key, each field of the projection doc (at
// root) that changes _id, the event's resume token, and whether there was
// one: a part of it ("_id._data": 0, _id: {_data: 1}) or a value computed
// for it (_id: {$literal: 1}, _id: "$documentKey"). MongoDB fails the
// change stream with ChangeStreamFatalError (280) on the first event whose
// _id a pipeline changed. _id is kept unchanged only when it is absent,
// included (1, true or any other non-zero number) or "$_id"; excluding it
// (0, false) is reported by the caller.
func (d *decoder) idChanged(root *yaml.Node, doc bson.D) bool {
	const why = "MongoDB fails the change stream with ChangeStreamFatalError (280) on the first event when the resume token is changed"
	found := false
	for _, f := range doc {
		switch {
		case strings.HasPrefix(f.Key, "_id."):
			d.errorf(d.locatePath(root, []mql.PathStep{{Key: f.Key}}), "project: %s: a part of _id (the resume token) cannot be projected; leave _id out of project, or write _id: 1; %s", f.Key, why)
			found = true
		case f.Key == "_id" && !idUnchanged(f.Value):
			d.errorf(d.locatePath(root, []mql.PathStep{{Key: f.Key}}), "project: _id: must be kept unchanged (left out of project, 1 or \"$_id\"), not computed or projected in part: it is the resume token; %s", why)
			found = true
		}
	}
	return found
}

// idUnchanged reports whether v, the value of _id in a $project, leaves
// _id as it is or excludes it: a boolean, a number (0 excludes, any other
// includes) or "$_id".
func idUnchanged(v any) bool {
	switch x := v.(type) {
	case bool, int32, int64, float64, bson.Decimal128:
		return true
	case string:
		return x == "$_id"
	}
	return false
}

// projectExprProblems reports the problems of the expressions of a
// projection (doc, at path): each field's value, or each field of its
// sub-projection, that is an operator expression, an array or a "$" field
// path or variable. A sub-projection is not an expression (its field names
// may be dotted) and is not checked as one. It reports whether it found
// a problem.
func (d *decoder) projectExprProblems(root *yaml.Node, doc bson.D, path []mql.PathStep, depth int) bool {
	if depth > maxDepth {
		return false
	}
	bad := false
	for _, f := range doc {
		p := append(slices.Clip(path), mql.PathStep{Key: f.Key})
		switch x := f.Value.(type) {
		case bson.D:
			if len(x) > 0 && !strings.HasPrefix(x[0].Key, "$") {
				bad = d.projectExprProblems(root, x, p, depth+1) || bad
				continue
			}
		case bson.A:
		case string:
			if !strings.HasPrefix(x, "$") {
				continue
			}
		default:
			continue
		}
		bad = d.exprProblems(root, p, f.Value, "project") > 0 || bad
	}
	return bad
}

// payloadShape rejects payload specs that can never evaluate to a document.
func payloadShape(spec any) string {
	switch x := spec.(type) {
	case bson.D:
		return ""
	case string:
		if strings.HasPrefix(x, "$") {
			return ""
		}
	}
	return "must be a document (a mapping of fields to expressions), a field path such as $fullDocument, or an operator expression"
}

// mqlMessage is an mql error's message without its code-name prefix.
func mqlMessage(err error) string {
	var me *mongoerr.Error
	if errors.As(err, &me) {
		return me.Message
	}
	return err.Error()
}

// locateOperator points at the key of n's subtree named in err (an unknown
// "$operator"), or at n itself.
func locateOperator(n *yaml.Node, err error) *yaml.Node {
	msg := mqlMessage(err)
	for i := 0; i < len(msg); i++ {
		if msg[i] != '$' {
			continue
		}
		j := i + 1
		for j < len(msg) && (msg[j] == '_' || 'a' <= msg[j] && msg[j] <= 'z' || 'A' <= msg[j] && msg[j] <= 'Z' || '0' <= msg[j] && msg[j] <= '9') {
			j++
		}
		if j == i+1 {
			continue
		}
		if k := findKey(n, msg[i:j], 0); k != nil {
			return k
		}
	}
	return n
}

func findKey(n *yaml.Node, key string, depth int) *yaml.Node {
	n = deref(n)
	if n == nil || depth > maxDepth {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i]
			}
			if k := findKey(n.Content[i+1], key, depth+1); k != nil {
				return k
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if k := findKey(c, key, depth+1); k != nil {
				return k
			}
		}
	}
	return nil
}

// toBSON converts a YAML value into the shared value model: mappings to
// bson.D, lists to bson.A, scalars by their resolved tag (int → int32, or
// int64 when it does not fit; float → float64; timestamp → bson.DateTime).
// A single-key mapping {$oid | $date | $numberLong | $numberInt |
// $numberDouble | $numberDecimal: value} is read as Extended JSON.
func (d *decoder) toBSON(n *yaml.Node, depth int) (any, bool) {
	n = deref(n)
	if d.poisoned[n] {
		return nil, false // already reported
	}
	d.budget--
	if d.budget < 0 {
		d.exhausted(n)
		return nil, false
	}
	if depth > maxDepth {
		d.errorf(n, "document nested more than %d levels deep", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		doc := make(bson.D, 0, len(n.Content)/2)
		seen := make(map[string]bool, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := deref(n.Content[i])
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				d.errorf(k, "a merge key (<<) is not supported in match, project or payload (MongoDB documents, not configuration sections); write the fields out, or use an alias (*name) of a whole document")
				ok = false
				continue
			}
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, "field names must be strings")
				ok = false
				continue
			}
			if seen[k.Value] {
				d.errorf(k, "field %q is set twice", k.Value)
				ok = false
				continue
			}
			seen[k.Value] = true
			v, vok := d.toBSON(n.Content[i+1], depth+1)
			ok = ok && vok
			doc = append(doc, bson.E{Key: k.Value, Value: v})
		}
		if !ok {
			return nil, false
		}
		if len(doc) == 1 && strings.HasPrefix(doc[0].Key, "$") {
			if v, handled, msg := extJSON(doc[0].Key, doc[0].Value); handled {
				if msg != "" {
					d.errorf(n, "%s", msg)
					return nil, false
				}
				return v, true
			}
		}
		return doc, true
	case yaml.SequenceNode:
		arr := make(bson.A, 0, len(n.Content))
		ok := true
		for _, c := range n.Content {
			v, vok := d.toBSON(c, depth+1)
			ok = ok && vok
			arr = append(arr, v)
		}
		return arr, ok
	case yaml.ScalarNode:
		v, msg := scalarToBSON(n)
		if msg != "" {
			d.errorf(n, "%s", msg)
			return nil, false
		}
		return v, true
	}
	d.errorf(n, "unsupported YAML value")
	return nil, false
}

func scalarToBSON(n *yaml.Node) (any, string) {
	switch n.ShortTag() {
	case "!!null":
		return nil, ""
	case "!!bool":
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil {
			return nil, fmt.Sprintf("%s is not a boolean", textcut.Quote(n.Value))
		}
		return b, ""
	case "!!int":
		i, err := parseCoreInt(n.Value)
		if errors.Is(err, errNotCoreNumber) { // an explicit !!int tag on another text
			return nil, fmt.Sprintf("%s is not an integer such as 10, 0o17 or 0x1F", textcut.Quote(n.Value))
		}
		if err != nil {
			return nil, fmt.Sprintf("integer %s does not fit in 64 bits", textcut.Marked(n.Value, 80))
		}
		if i >= math.MinInt32 && i <= math.MaxInt32 {
			return int32(i), ""
		}
		return i, ""
	case "!!float":
		f, err := parseCoreFloat(n.Value)
		if err != nil {
			return nil, fmt.Sprintf("%s is not a number", textcut.Quote(n.Value))
		}
		return f, ""
	case "!!timestamp":
		// yaml.v3's own reading, so that every scalar it resolves as a
		// timestamp (2024-1-5, 2001-12-14t21:59:43.10-05:00) is one.
		var ts time.Time
		if err := n.Decode(&ts); err != nil {
			return nil, fmt.Sprintf("%s is not a timestamp such as 2025-01-31 or 2025-01-31T12:00:00Z", textcut.Quote(n.Value))
		}
		return bson.NewDateTimeFromTime(ts), ""
	case "!!str":
		if n.Style == 0 && yaml11Number(n.Value) {
			// A number to YAML 1.1 (and to changehook before it read
			// the core schema): compared or sent as a string, it would
			// match nothing or change the payload's type unnoticed.
			return nil, fmt.Sprintf("%s is a string in YAML 1.2's core schema, not a number: write the integer as 1024, 0o17 or 0x1F (no digit separators, no 0b), or quote it if a string is meant", textcut.Quote(n.Value))
		}
		return n.Value, ""
	}
	return nil, fmt.Sprintf("unsupported YAML tag %s", n.Tag)
}

// extJSON reads the single-key Extended JSON wrappers. handled is false for
// any other key (an operator).
func extJSON(key string, v any) (out any, handled bool, msg string) {
	s, isStr := v.(string)
	bad := func(what string) (any, bool, string) {
		return nil, true, fmt.Sprintf("%s: expected %s", key, what)
	}
	switch key {
	case "$oid":
		if !isStr {
			return bad("a 24-digit hex string")
		}
		id, err := bson.ObjectIDFromHex(s)
		if err != nil {
			return bad("a 24-digit hex string")
		}
		return id, true, ""
	case "$date":
		switch x := v.(type) {
		case bson.DateTime:
			return x, true, ""
		case string:
			ts, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return bad("an RFC 3339 time")
			}
			return bson.NewDateTimeFromTime(ts), true, ""
		case int32:
			return bson.DateTime(x), true, ""
		case int64:
			return bson.DateTime(x), true, ""
		}
		return bad("an RFC 3339 time or milliseconds since the epoch")
	case "$numberLong":
		i, err := strconv.ParseInt(s, 10, 64)
		if !isStr || err != nil {
			return bad("a decimal integer string")
		}
		return i, true, ""
	case "$numberInt":
		i, err := strconv.ParseInt(s, 10, 32)
		if !isStr || err != nil {
			return bad("a 32-bit decimal integer string")
		}
		return int32(i), true, ""
	case "$numberDouble":
		f, err := strconv.ParseFloat(s, 64)
		if !isStr || err != nil {
			return bad("a number string")
		}
		return f, true, ""
	case "$numberDecimal":
		dec, err := bson.ParseDecimal128(s)
		if !isStr || err != nil {
			return bad("a decimal number string")
		}
		return dec, true, ""
	}
	return nil, false, ""
}
