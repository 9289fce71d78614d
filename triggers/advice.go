package triggers

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"gopkg.in/yaml.v3"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/textcut"
)

// Advice returns what a valid trigger's configuration very likely gets
// wrong, one sentence each, for `validate` and the run's log: settings
// that are accepted (they can be meant) but that the endpoint, or the
// reader of what it receives, almost never wants. Nil when there is none.
func Advice(t *Trigger) []string {
	var out []string
	if s, ok := placeholderString(t.Webhook.PayloadSpec, 0); ok {
		out = append(out, fmt.Sprintf("webhook.payload: %s looks like a template placeholder, but payload is a MongoDB expression "+
			"and sends a string as written: build it with $concat and field paths, e.g. "+
			`{$concat: ["Order ", {$toString: "$fullDocument._id"}]}`, textcut.Quote(s)))
	}
	if t.Batch != nil && chatHook(t.Webhook.URL) {
		out = append(out, "batch: a batched request's body is a JSON array of events, which chat incoming webhooks "+
			"(Slack, Discord, Teams) refuse; remove batch for this endpoint")
	}
	out = append(out, matchAdvice(t)...)
	return out
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

// matchAdvice returns advice on t's match filter: a field path that is no
// field of a change event (the changed document is under fullDocument); a
// condition on fullDocument while updates, which carry no fullDocument
// without full_document, are delivered; a condition that no event the
// trigger delivers can satisfy (see neverHolds); and a comparison with a
// quoted ${VAR} that reads as a number.
func matchAdvice(t *Trigger) []string {
	var paths []string
	matchPaths(t.Match, 0, &paths)
	var foreign, full []string
	for _, p := range paths {
		first, _, _ := strings.Cut(p, ".")
		switch {
		case !eventFields[first]:
			if !slices.Contains(foreign, p) {
				foreign = append(foreign, p)
			}
		case first == "fullDocument":
			if !slices.Contains(full, p) {
				full = append(full, p)
			}
		}
	}
	var out []string
	if len(foreign) > 0 {
		foreign = foreign[:min(len(foreign), maxAdvisedPaths)]
		out = append(out, fmt.Sprintf("match: %s %s no field of a change event, so every event sees it missing; "+
			"the changed document is under fullDocument (%s)", strings.Join(foreign, ", "), plural(len(foreign), "is", "are"),
			"fullDocument."+foreign[0]))
	}
	noFull := t.FullDocument == "" || t.FullDocument == "default"
	if len(full) > 0 && noFull && slices.Contains(t.Operations, "update") {
		full = full[:min(len(full), maxAdvisedPaths)]
		out = append(out, fmt.Sprintf("match: update events carry no fullDocument unless full_document is updateLookup, "+
			"whenAvailable or required, so for every update %s %s missing; set full_document: updateLookup, "+
			"or test updateDescription.updatedFields", strings.Join(full, ", "), plural(len(full), "is", "are")))
	}
	out = append(out, neverHolds(t)...)
	for _, q := range t.quotedNumbers {
		out = append(out, fmt.Sprintf("match: %s: {%s: %s} compares with the string %s, not a number: a quoted ${VAR} stays a string, "+
			"and %s with a string matches only string values; if %s holds numbers, write the condition in block style with the variable unquoted, "+
			"%s on a line of its own; if it holds strings, write %s to say so (see ${VAR} under Configuration reference in README.md)",
			q.path, q.op, textcut.Quote(q.written), textcut.Quote(q.value), q.op, q.path, q.op+": "+q.written, q.op+": !!str "+textcut.Quote(q.written)))
	}
	return out
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

// neverHolds returns advice on the conditions of t's match that must hold
// for it to hold (at the top level and inside $and: one under $or, $nor or
// $not can be true through another branch) but test a field that no event
// t delivers carries, and that a missing field does not satisfy ($exists:
// false, null and $ne do): fullDocument when no operation carries it,
// fullDocumentBeforeChange without full_document_before_change or without
// an operation carrying it, updateDescription without update.
func neverHolds(t *Trigger) []string {
	var conds bson.D
	requiredConditions(t.Match, 0, &conds)
	var full, before, desc []string
	for _, c := range conds {
		first, _, _ := strings.Cut(c.Key, ".")
		var list *[]string
		switch {
		case first == "fullDocument" && !carriesFullDocument(t) && !slices.Contains(t.Operations, "update"):
			list = &full
		case first == "fullDocumentBeforeChange" && (!preImages(t) || !slices.ContainsFunc(t.Operations, func(op string) bool {
			return op == "update" || op == "replace" || op == "delete"
		})):
			list = &before
		case first == "updateDescription" && !slices.Contains(t.Operations, "update"):
			list = &desc
		default:
			continue
		}
		if f, err := mql.CompileFilter(bson.D{c}); err != nil || f.Match(bson.D{}) || slices.Contains(*list, c.Key) {
			continue
		}
		*list = append(*list, c.Key)
	}
	ops := strings.Join(t.Operations, ", ")
	var out []string
	if len(full) > 0 {
		out = append(out, fmt.Sprintf("match: %s must hold, but no operation delivered (%s) carries fullDocument "+
			"(insert and replace events do, and update events with full_document), so the match never holds", joinPaths(full), ops))
	}
	if len(before) > 0 && !preImages(t) {
		out = append(out, fmt.Sprintf("match: %s must hold, but full_document_before_change is off, so no event carries "+
			"fullDocumentBeforeChange and the match never holds; set full_document_before_change: whenAvailable or required "+
			"(the collection needs changeStreamPreAndPostImages)", joinPaths(before)))
	} else if len(before) > 0 {
		out = append(out, fmt.Sprintf("match: %s must hold, but no operation delivered (%s) carries fullDocumentBeforeChange "+
			"(update, replace and delete events do), so the match never holds", joinPaths(before), ops))
	}
	if len(desc) > 0 {
		out = append(out, fmt.Sprintf("match: %s must hold, but only update events carry updateDescription and the operations "+
			"delivered (%s) do not include update, so the match never holds", joinPaths(desc), ops))
	}
	return out
}

// preImages reports whether t asks for fullDocumentBeforeChange.
func preImages(t *Trigger) bool {
	return t.FullDocumentBeforeChange != "" && t.FullDocumentBeforeChange != options.Off
}

// joinPaths names at most maxAdvisedPaths of paths.
func joinPaths(paths []string) string {
	return strings.Join(paths[:min(len(paths), maxAdvisedPaths)], ", ")
}

// requiredConditions appends the field conditions of filter that must
// hold for it to hold: those at its top level and inside $and.
func requiredConditions(filter bson.D, depth int, out *bson.D) {
	if depth > maxAdviceDepth {
		return
	}
	for _, e := range filter {
		switch {
		case e.Key == "$and":
			arr, _ := e.Value.(bson.A)
			for _, c := range arr {
				if d, ok := c.(bson.D); ok {
					requiredConditions(d, depth+1, out)
				}
			}
		case !strings.HasPrefix(e.Key, "$"):
			*out = append(*out, e)
		}
	}
}

// quotedNumber is a comparison in a match whose operand is a quoted
// ${VAR} that reads as a number.
type quotedNumber struct {
	path    string // the field compared
	op      string // $lt, $lte, $gt or $gte
	written string // the operand as written, "${LIMIT}"
	value   string // the operand's value, "20"
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
					out = append(out, quotedNumber{path: k.Value, op: op, written: written, value: operand.Value})
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

// matchPaths appends the field paths filter's conditions test, at the top
// level and under $and, $or and $nor (not inside $expr or other operators).
func matchPaths(filter bson.D, depth int, out *[]string) {
	if depth > maxAdviceDepth {
		return
	}
	for _, e := range filter {
		switch e.Key {
		case "$and", "$or", "$nor":
			arr, _ := e.Value.(bson.A)
			for _, c := range arr {
				if d, ok := c.(bson.D); ok {
					matchPaths(d, depth+1, out)
				}
			}
		default:
			if !strings.HasPrefix(e.Key, "$") {
				*out = append(*out, e.Key)
			}
		}
	}
}

// placeholder matches the {{ name }} and ${ name } placeholders of
// template languages.
var placeholder = regexp.MustCompile(`\{\{[^{}]*\}\}|\$\{[^{}]*\}`)

// maxAdviceDepth bounds placeholderString's walk; payloads are parsed with
// a nesting limit far below it.
const maxAdviceDepth = 200

// placeholderString returns the first string in spec (a payload's BSON
// form) that holds a template placeholder.
func placeholderString(spec any, depth int) (string, bool) {
	if depth > maxAdviceDepth {
		return "", false
	}
	switch v := spec.(type) {
	case string:
		if placeholder.MatchString(v) {
			return v, true
		}
	case bson.D:
		for _, e := range v {
			if e.Key == "$literal" {
				continue // sent as written on purpose
			}
			if s, ok := placeholderString(e.Value, depth+1); ok {
				return s, true
			}
		}
	case bson.A:
		for _, e := range v {
			if s, ok := placeholderString(e, depth+1); ok {
				return s, true
			}
		}
	}
	return "", false
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
