package triggers

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/textcut"
)

// fieldHints are the fields other trigger tools (and MongoDB's own change
// stream options) call by another name, per section: the message says
// where changehook takes the setting. Typos are Suggest's job; these are
// the names no edit distance leads from.
var fieldHints = map[string]map[string]string{
	"trigger": {
		"filter":          `the query filter is called match`,
		"query":           `the query filter is called match`,
		"pipeline":        `changehook builds the pipeline from match and project; put the filter in match`,
		"operation_types": `the operation types are listed under operations`,
		"operationTypes":  `the operation types are listed under operations`,
		"operation_type":  `the operation types are listed under operations`,
		"events":          `the operation types are listed under operations`,
		"endpoint":        `the endpoint is webhook: {url: ...}`,
		"body":            bodyHint,
		"template":        bodyHint,
		"retries":         `retries are configured under retry: (retry: {max_attempts: ...})`,
		"disabled":        `use enabled: false`,
	},
	"webhook": {
		"signing_secret": `the signing key is secret`,
		"signing_key":    `the signing key is secret`,
		"body":           bodyHint,
		"template":       bodyHint,
	},
}

// bodyHint is the hint for a request body given as body or template.
const bodyHint = `the request body is built by webhook.payload, a MongoDB aggregation expression over the change event ` +
	`(payload: {text: {$concat: ["New order ", {$toString: "$fullDocument._id"}]}})`

// unknownFieldMessage is the problem reported for key k, not one of known,
// in section: a hint from fieldHints, a "did you mean" from Suggest, or
// the list of valid fields.
func unknownFieldMessage(k, v *yaml.Node, section string, known []string) string {
	switch {
	case section == "trigger" && (k.Value == "namespace" || k.Value == "ns"):
		return fmt.Sprintf("unknown field %s in trigger: %s", textcut.Quote(k.Value), namespaceHint(v))
	case fieldHints[section][k.Value] != "":
		return fmt.Sprintf("unknown field %s in %s: %s", textcut.Quote(k.Value), section, fieldHints[section][k.Value])
	case section == "trigger" && slices.Contains(webhookFields(), k.Value):
		return fmt.Sprintf("unknown field %s in trigger: %s belongs under webhook: (webhook: {%s: ...})", textcut.Quote(k.Value), k.Value, k.Value)
	}
	if s := Suggest(k.Value, known); s != "" {
		return fmt.Sprintf("unknown field %s in %s (did you mean %q?)", textcut.Quote(k.Value), section, s)
	}
	return fmt.Sprintf("unknown field %s in %s; valid fields: %s", textcut.Quote(k.Value), section, strings.Join(known, ", "))
}

// namespaceHint says how a namespace is written in a trigger, with the
// user's own "db.coll" split when that is what v holds.
func namespaceHint(v *yaml.Node) string {
	v = deref(v)
	if v != nil && v.Kind == yaml.ScalarNode && len(v.Value) <= textcut.QuoteLimit {
		if db, coll, ok := strings.Cut(v.Value, "."); ok && db != "" && coll != "" && !strings.ContainsAny(db, " $/\\\"") {
			return fmt.Sprintf("a trigger names its namespace with two fields, database: %s and collection: %s", db, coll)
		}
		if v.Value != "" && !strings.ContainsAny(v.Value, ". $/\\\"") {
			return fmt.Sprintf("a trigger names its namespace with two fields, database: %s and, for one collection, collection: NAME", v.Value)
		}
	}
	return "a trigger names its namespace with two fields, database and collection (leave collection out to watch the whole database)"
}

// operatorAliases are operator names from other query languages and
// no-code tools, each with the MongoDB operator that does the same.
var operatorAliases = map[string]string{
	"$equals": "$eq", "$equal": "$eq", "$is": "$eq", "$eql": "$eq",
	"$notEquals": "$ne", "$notEqual": "$ne", "$neq": "$ne", "$isNot": "$ne",
	"$lessThan": "$lt", "$less": "$lt",
	"$lessThanOrEqual": "$lte", "$lessThanOrEquals": "$lte", "$le": "$lte", "$atMost": "$lte",
	"$greaterThan": "$gt", "$greater": "$gt",
	"$greaterThanOrEqual": "$gte", "$greaterThanOrEquals": "$gte", "$ge": "$gte", "$atLeast": "$gte",
	"$notIn": "$nin", "$notin": "$nin",
	"$contains": "$regex", "$like": "$regex", "$startsWith": "$regex", "$endsWith": "$regex", "$matches": "$regex",
}

// Operator name lists, taken once from mql for the hints below.
var (
	topLevelNames   = mql.TopLevelOperatorNames()
	queryNames      = mql.QueryOperatorNames()
	expressionNames = mql.ExpressionOperatorNames()
)

// withOperatorHint returns mql's message msg with " (did you mean $x?)"
// added when it names an unknown operator that an alias or a near
// spelling identifies, or with a note when a field's operator ($gt) stands
// where a field name belongs; other messages are returned unchanged. The
// message itself stays MongoDB's, so that it reads as the server's would.
func withOperatorHint(msg string) string {
	var name, rest string
	var names []string
	topLevel := false
	switch {
	case strings.HasPrefix(msg, "unknown top level operator: "):
		topLevel = true
		name, rest, _ = strings.Cut(strings.TrimPrefix(msg, "unknown top level operator: "), ".")
		if rest != "" {
			rest = "." + rest
		}
		names = topLevelNames
	case strings.HasPrefix(msg, "unknown operator: "):
		name = strings.TrimPrefix(msg, "unknown operator: ")
		names = queryNames
	case strings.HasPrefix(msg, "Unrecognized expression '") && strings.HasSuffix(msg, "'"):
		name = strings.TrimSuffix(strings.TrimPrefix(msg, "Unrecognized expression '"), "'")
		names = expressionNames
	default:
		return msg
	}
	if topLevel && slices.Contains(queryNames, name) {
		return fmt.Sprintf("%s (%s applies to a field: {field: {%s: ...}})%s", strings.TrimSuffix(msg, rest), name, name, rest)
	}
	sg := Suggest(name, names)
	if a, ok := operatorAliases[name]; ok && slices.Contains(names, a) {
		sg = a
	}
	if sg == "" || sg == name {
		return msg
	}
	head := strings.TrimSuffix(msg, rest)
	return fmt.Sprintf("%s (did you mean %s?)%s", head, sg, rest)
}
