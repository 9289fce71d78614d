package triggers

import (
	"net/url"
	"regexp"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"gopkg.in/yaml.v3"

	"github.com/changehook/changehook/internal/mql"
)

// advise records, as warnings of t (Config.Warnings, Problem.Trigger set
// to its name), what a valid trigger's configuration very likely gets
// wrong: settings that are accepted (they can be meant) but that the
// endpoint, or the reader of what it receives, almost never wants. Each is
// at the node it is about: payload is the webhook.payload entry t's
// payload came from, batch the batch entry (the trigger's own, else the
// defaults section's) and match the match entry.
func (d *decoder) advise(t *Trigger, payload, batch, match entry) {
	if len(d.problems) > 0 {
		return // a file with problems has no Config, so no warnings
	}
	if payload.set() {
		if s, path, ok := placeholderString(t.Webhook.PayloadSpec, nil, 0); ok {
			at := d.locateValue(payload.val, path)
			if strings.HasPrefix(s, "$") {
				// "$${HOME}" is "${HOME}" once loaded: a field path
				// ("{HOME}"), not text, and the event lacks that field.
				d.warnTrigger(t, at, "webhook.payload: %q looks like a template placeholder, but payload is a MongoDB expression "+
					"and reads a string that starts with \"$\" as a field path (%q), not as text: "+
					"for the text as written use {$literal: %q}; to build it from fields use $concat and field paths, e.g. "+
					`{$concat: ["Order ", {$toString: "$fullDocument._id"}]}`, s, s[1:], strings.ReplaceAll(s, "${", "$${"))
			} else {
				d.warnTrigger(t, at, "webhook.payload: %q looks like a template placeholder, but payload is a MongoDB expression "+
					"and sends a string as written: build it with $concat and field paths, e.g. "+
					`{$concat: ["Order ", {$toString: "$fullDocument._id"}]}`, s)
			}
		}
	}
	if t.Batch != nil && batch.set() && chatHook(t.Webhook.URL) {
		d.warnTrigger(t, batch.key, "batch: a batched request's body is a JSON array of events, which chat incoming webhooks "+
			"(Slack, Discord, Teams) refuse; remove batch for this endpoint")
	}
	if match.set() {
		d.matchAdvice(t, match.val)
	}
}

// warnTrigger records a warning about trigger t at n, its arguments shown
// as errorf's are.
func (d *decoder) warnTrigger(t *Trigger, n *yaml.Node, format string, args ...any) {
	d.warnings = append(d.warnings, d.problem(n, format, args...))
	d.warnings[len(d.warnings)-1].Trigger = t.Name
}

// locateValue returns the node at path under n, as locatePath does, but
// the value, not the key, when the last step is a document key.
func (d *decoder) locateValue(n *yaml.Node, path []mql.PathStep) *yaml.Node {
	if len(path) == 0 || path[len(path)-1].IsIndex {
		return d.locatePath(n, path)
	}
	parent := d.locatePath(n, path[:len(path)-1])
	if parent == nil || parent.Kind != yaml.MappingNode {
		return parent
	}
	if j := d.keyAt(parent, path[len(path)-1].Key); j >= 0 {
		return deref(parent.Content[j+1])
	}
	return parent
}

// eventFields are the top-level fields a change event may carry (MongoDB's
// manual, Change Events, expanded events included).
var eventFields = map[string]bool{
	"_id": true, "operationType": true, "clusterTime": true, "wallTime": true, "ns": true, "to": true,
	"documentKey": true, "fullDocument": true, "fullDocumentBeforeChange": true, "updateDescription": true,
	"txnNumber": true, "lsid": true, "collectionUUID": true, "operationDescription": true, "splitEvent": true,
	"nsType": true, "commitTimestamp": true,
}

// maxAdvisedPaths bounds how many field paths one piece of match advice names.
const maxAdvisedPaths = 3

// matchAdvice warns about t's match filter, whose YAML node is at: a field
// path that is no field of a change event (the changed document is under
// fullDocument); a condition on fullDocument while updates, which carry no
// fullDocument without full_document, are delivered; a condition that no
// event the trigger delivers can satisfy (see neverHolds); and a
// comparison with a quoted ${VAR} that reads as a number. Each warning is
// at the key of the first condition it names, the last at the operand.
func (d *decoder) matchAdvice(t *Trigger, at *yaml.Node) {
	var foreign, full []string
	var foreignAt, fullAt []mql.PathStep
	walkConditions(t.Match, nil, true, 0, func(key string, _ any, path []mql.PathStep) {
		first, _, _ := strings.Cut(key, ".")
		switch {
		case !eventFields[first]:
			if len(foreign) == 0 {
				foreignAt = slices.Clone(path)
			}
			if len(foreign) < maxAdvisedPaths && !slices.Contains(foreign, key) {
				foreign = append(foreign, key)
			}
		case first == "fullDocument":
			if len(full) == 0 {
				fullAt = slices.Clone(path)
			}
			if len(full) < maxAdvisedPaths && !slices.Contains(full, key) {
				full = append(full, key)
			}
		}
	})
	if len(foreign) > 0 {
		d.warnTrigger(t, d.locatePath(at, foreignAt), "match: %s %s no field of a change event, so every event sees it missing; "+
			"the changed document is under fullDocument (%s)", strings.Join(foreign, ", "), plural(len(foreign), "is", "are"),
			"fullDocument."+foreign[0])
	}
	noFull := t.FullDocument == "" || t.FullDocument == "default"
	if len(full) > 0 && noFull && slices.Contains(t.Operations, "update") {
		d.warnTrigger(t, d.locatePath(at, fullAt), "match: update events carry no fullDocument unless full_document is updateLookup, "+
			"whenAvailable or required, so for every update %s %s missing; set full_document: updateLookup, "+
			"or test updateDescription.updatedFields", strings.Join(full, ", "), plural(len(full), "is", "are"))
	}
	d.neverHolds(t, at)
	for _, q := range d.quotedNumberComparisons(at, 0) {
		d.warnTrigger(t, q.at, "match: %s: {%s: %q} compares with the string %q, not a number: a quoted ${VAR} stays a string, "+
			"and %s with a string matches only string values; if %s holds numbers, write the condition in block style with the variable unquoted, "+
			"%s: %s on a line of its own; if it holds strings, write %s: !!str %q to say so (see ${VAR} under Configuration reference in README.md)",
			q.path, q.op, q.written, q.value, q.op, q.path, q.op, q.written, q.op, q.written)
	}
}

// A field of a change event that only some operations carry (MongoDB's
// manual, Change Events): fullDocument is in insert and replace events,
// and in update events with full_document (updateLookup, whenAvailable or
// required); fullDocumentBeforeChange in update, replace and delete events
// with full_document_before_change (whenAvailable or required);
// updateDescription in update events.

// carriesFullDocument reports whether an operation t delivers carries
// fullDocument.
func carriesFullDocument(t *Trigger) bool {
	for _, op := range t.Operations {
		if op == "insert" || op == "replace" {
			return true
		}
	}
	return false // an update without full_document: matchAdvice says so
}

// neverHolds warns about the conditions of t's match (whose YAML node is
// at) that must hold for it to hold (at the top level and inside $and: one
// under $or, $nor or $not can be true through another branch) but test a
// field that no event t delivers carries, and that a missing field does
// not satisfy ($exists: false, null and $ne do): fullDocument when no
// operation carries it, fullDocumentBeforeChange without
// full_document_before_change or without an operation carrying it,
// updateDescription without update. Each warning is at the key of the
// first condition it names.
func (d *decoder) neverHolds(t *Trigger, at *yaml.Node) {
	type list struct {
		paths []string
		at    []mql.PathStep
	}
	var full, before, desc list
	walkConditions(t.Match, nil, false, 0, func(key string, value any, path []mql.PathStep) {
		first, _, _ := strings.Cut(key, ".")
		var l *list
		switch {
		case first == "fullDocument" && !carriesFullDocument(t) && !slices.Contains(t.Operations, "update"):
			l = &full
		case first == "fullDocumentBeforeChange" && (!preImages(t) || !slices.ContainsFunc(t.Operations, func(op string) bool {
			return op == "update" || op == "replace" || op == "delete"
		})):
			l = &before
		case first == "updateDescription" && !slices.Contains(t.Operations, "update"):
			l = &desc
		default:
			return
		}
		if len(l.paths) == maxAdvisedPaths || slices.Contains(l.paths, key) {
			return // named enough, or already
		}
		if f, err := mql.CompileFilter(bson.D{{Key: key, Value: value}}); err != nil || f.Match(bson.D{}) {
			return
		}
		if len(l.paths) == 0 {
			l.at = slices.Clone(path)
		}
		l.paths = append(l.paths, key)
	})
	ops := strings.Join(t.Operations, ", ")
	if len(full.paths) > 0 {
		d.warnTrigger(t, d.locatePath(at, full.at), "match: %s must hold, but no operation delivered (%s) carries fullDocument "+
			"(insert and replace events do, and update events with full_document), so the match never holds", joinPaths(full.paths), ops)
	}
	if len(before.paths) > 0 && !preImages(t) {
		d.warnTrigger(t, d.locatePath(at, before.at), "match: %s must hold, but full_document_before_change is off, so no event carries "+
			"fullDocumentBeforeChange and the match never holds; set full_document_before_change: whenAvailable or required "+
			"(the collection needs changeStreamPreAndPostImages)", joinPaths(before.paths))
	} else if len(before.paths) > 0 {
		d.warnTrigger(t, d.locatePath(at, before.at), "match: %s must hold, but no operation delivered (%s) carries fullDocumentBeforeChange "+
			"(update, replace and delete events do), so the match never holds", joinPaths(before.paths), ops)
	}
	if len(desc.paths) > 0 {
		d.warnTrigger(t, d.locatePath(at, desc.at), "match: %s must hold, but only update events carry updateDescription and the operations "+
			"delivered (%s) do not include update, so the match never holds", joinPaths(desc.paths), ops)
	}
}

// preImages reports whether t asks for fullDocumentBeforeChange.
func preImages(t *Trigger) bool {
	return t.FullDocumentBeforeChange != "" && t.FullDocumentBeforeChange != options.Off
}

// joinPaths names paths (at most maxAdvisedPaths).
func joinPaths(paths []string) string {
	return strings.Join(paths, ", ")
}

// walkConditions calls visit with each field condition of filter, at
// path in the match, in order: its key (the field path tested), its value
// (what it asks of the field) and its path from the match to its key,
// which visit must copy to keep. It walks the top level and $and, and with
// branches also $or and $nor (not $expr or other operators): with
// branches it visits every field the filter tests, without only the
// conditions that must hold for it to hold.
func walkConditions(filter bson.D, path []mql.PathStep, branches bool, depth int, visit func(key string, value any, path []mql.PathStep)) {
	if depth > maxAdviceDepth {
		return
	}
	for _, e := range filter {
		switch {
		case e.Key == "$and" || branches && (e.Key == "$or" || e.Key == "$nor"):
			arr, _ := e.Value.(bson.A)
			for i, c := range arr {
				if d, ok := c.(bson.D); ok {
					walkConditions(d, append(path, mql.PathStep{Key: e.Key}, mql.PathStep{Index: i, IsIndex: true}), branches, depth+1, visit)
				}
			}
		case !strings.HasPrefix(e.Key, "$"):
			visit(e.Key, e.Value, append(path, mql.PathStep{Key: e.Key}))
		}
	}
}

// quotedNumber is a comparison in a match whose operand is a quoted
// ${VAR} that reads as a number.
type quotedNumber struct {
	path    string     // the field compared
	op      string     // $lt, $lte, $gt or $gte
	written string     // the operand as written, "${LIMIT}"
	value   string     // the operand's value, "20"
	at      *yaml.Node // the operand
}

// quotedUntagged reports whether n is written in single or double quotes
// without an explicit tag: a string perhaps only by accident. A block
// scalar or an explicit !!str says "a string" on purpose.
func quotedUntagged(n *yaml.Node) bool {
	return n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle
}

// noteQuotedNumber records n, a quoted scalar whose ${VAR}s are about to
// be replaced by text that reads as a number.
func (d *decoder) noteQuotedNumber(n *yaml.Node) {
	if d.quotedNumbers == nil {
		d.quotedNumbers = map[*yaml.Node]string{}
	}
	d.quotedNumbers[n] = n.Value
}

// quotedNumberComparisons returns the comparisons ($lt, $lte, $gt, $gte)
// of match, a match mapping, that must hold for it to hold (at the top
// level and inside $and) and whose operand is a quoted ${VAR} that reads
// as a number.
func (d *decoder) quotedNumberComparisons(match *yaml.Node, depth int) []quotedNumber {
	match = deref(match)
	if len(d.quotedNumbers) == 0 || match == nil || match.Kind != yaml.MappingNode || depth > maxAdviceDepth {
		return nil
	}
	var out []quotedNumber
	for i := 0; i+1 < len(match.Content); i += 2 {
		k, v := deref(match.Content[i]), deref(match.Content[i+1])
		switch {
		case k.Value == "$and" && v.Kind == yaml.SequenceNode:
			for _, c := range v.Content {
				out = append(out, d.quotedNumberComparisons(c, depth+1)...)
			}
		case !strings.HasPrefix(k.Value, "$") && v.Kind == yaml.MappingNode:
			for j := 0; j+1 < len(v.Content); j += 2 {
				op, operand := deref(v.Content[j]).Value, deref(v.Content[j+1])
				written, ok := d.quotedNumbers[operand]
				if ok && (op == "$lt" || op == "$lte" || op == "$gt" || op == "$gte") {
					out = append(out, quotedNumber{path: k.Value, op: op, written: written, value: operand.Value, at: operand})
				}
			}
		}
	}
	return out
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// placeholder matches the {{ name }} and ${ name } placeholders of
// template languages.
var placeholder = regexp.MustCompile(`\{\{[^{}]*\}\}|\$\{[^{}]*\}`)

// maxAdviceDepth bounds placeholderString's walk; payloads are parsed with
// a nesting limit far below it.
const maxAdviceDepth = 200

// placeholderString returns the first string in spec (a payload's BSON
// form, at path) that holds a template placeholder, and its path.
func placeholderString(spec any, path []mql.PathStep, depth int) (string, []mql.PathStep, bool) {
	if depth > maxAdviceDepth {
		return "", nil, false
	}
	switch v := spec.(type) {
	case string:
		if placeholder.MatchString(v) {
			return v, path, true
		}
	case bson.D:
		for _, e := range v {
			if e.Key == "$literal" {
				continue // sent as written on purpose
			}
			if s, p, ok := placeholderString(e.Value, append(path, mql.PathStep{Key: e.Key}), depth+1); ok {
				return s, p, true
			}
		}
	case bson.A:
		for i, e := range v {
			if s, p, ok := placeholderString(e, append(path, mql.PathStep{Index: i, IsIndex: true}), depth+1); ok {
				return s, p, true
			}
		}
	}
	return "", nil, false
}

// chatHook reports whether raw is the URL of a chat service's incoming
// webhook, whose body must be one message.
func chatHook(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case host == "hooks.slack.com":
		return true
	case (host == "discord.com" || host == "discordapp.com") && strings.HasPrefix(u.Path, "/api/webhooks/"):
		return true
	case strings.HasSuffix(host, ".webhook.office.com"):
		return true
	}
	return false
}
