package server

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// The explain command reports how devdb runs a find, aggregate, count,
// distinct, update, delete or findAndModify, in the shape of MongoDB 6.0's
// classic engine (explainVersion "1"). The plans describe what devdb's
// access paths actually do: an _id equality is a point lookup on the _id
// index (IDHACK, or FETCH over an IXSCAN of _id_ when more conditions
// follow), everything else a collection scan (COLLSCAN), since devdb keeps
// no ordered secondary index entries; a sort an index would provide is
// read in that index's order without holding the documents (FETCH over a
// SORT of record ids over the scan), any other sort is a blocking SORT.
// With executionStats the command really runs (writes in a storage
// transaction that is rolled back) and the counts are those of that run.

// explainVerbosity is an explain command's verbosity.
type explainVerbosity int

const (
	explainQueryPlanner explainVerbosity = iota
	explainExecutionStats
	explainAllPlansExecution
)

// explainRequest is what an explain command hands the handler of the
// command it explains (Request.explain).
type explainRequest struct {
	verbosity explainVerbosity
}

// executes reports whether the verbosity asks for execution statistics,
// so that the explained command must run.
func (x *explainRequest) executes() bool { return x.verbosity >= explainExecutionStats }

// explainable are the commands MongoDB 6.0 explains that devdb implements
// (mapReduce is not one of them).
var explainable = map[string]bool{
	"find": true, "aggregate": true, "count": true, "distinct": true,
	"update": true, "delete": true, "findAndModify": true, "findandmodify": true,
}

// explainWrites are the explainable commands that write.
var explainWrites = map[string]bool{"update": true, "delete": true, "findAndModify": true, "findandmodify": true}

// cmdExplain answers explain {<command>, verbosity}: it parses the request
// as MongoDB's explain command does and runs the explained command's
// handler in explain mode.
func (s *Server) cmdExplain(ctx context.Context, req *Request) (bson.D, error) {
	x := &explainRequest{verbosity: explainAllPlansExecution} // MongoDB's default for the command
	for _, e := range req.Body[1:] {
		switch {
		case e.Key == "verbosity":
			v, ok := e.Value.(string)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'explain.verbosity' is the wrong type '%s', expected type 'string'", mql.TypeName(e.Value))
			}
			switch v {
			case "queryPlanner":
				x.verbosity = explainQueryPlanner
			case "executionStats":
				x.verbosity = explainExecutionStats
			case "allPlansExecution":
				x.verbosity = explainAllPlansExecution
			default:
				return nil, mongoerr.Errorf(mongoerr.BadValue, "Enumeration value '%s' for field 'explain.verbosity' is not a valid value.", v)
			}
		case e.Key == "collation" || e.Key == "use44SortKeys" || e.Key == "useNewUpsert" || genericCommandFields[e.Key]:
		default:
			return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field 'explain.%s' is an unknown field.", e.Key)
		}
	}
	inner, ok := req.Body[0].Value.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'explain.explain' is the wrong type '%s', expected type 'object'", mql.TypeName(req.Body[0].Value))
	}
	if v, ok := fieldOf(inner, "$db"); ok {
		if db, _ := v.(string); db != req.DB {
			return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "Mismatched $db in explain command. Expected %s but got %s", req.DB, mql.FormatValue(v))
		}
	}
	name := ""
	if len(inner) > 0 {
		name = inner[0].Key
	}
	h, ok := s.handlers[name]
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.CommandNotFound, "Explain failed due to unknown command: %s", name)
	}
	switch {
	case name == "explain":
		return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "Explain cannot explain itself.")
	case !explainable[name]:
		return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "Cannot explain cmd: %s", name)
	}
	if req.conn != nil && req.conn.secondary && (explainWrites[name] || writesOut(&Request{Name: name, Body: inner})) {
		return nil, mongoerr.Errorf(mongoerr.ExplainOnSecondary, "Explain's child command cannot run on this node. Are you explaining a write command on a secondary?")
	}
	sub := &Request{DB: req.DB, Name: name, Body: inner, ConnID: req.ConnID, Remote: req.Remote, conn: req.conn, explain: x}
	return s.invokeHandler(ctx, sub, h)
}

// explainCommand is the explained command as the reply's "command" field
// shows it: as sent, with its database as $db.
func explainCommand(req *Request) bson.D {
	out := append(bson.D(nil), req.Body...)
	if _, ok := fieldOf(out, "$db"); !ok {
		out = append(out, bson.E{Key: "$db", Value: req.DB})
	}
	return out
}

// explainServerInfo is the reply's serverInfo: this server's host name
// and port and the version devdb presents.
func (s *Server) explainServerInfo() bson.D {
	host, _ := os.Hostname()
	_, p, _ := net.SplitHostPort(s.addr)
	port, _ := strconv.Atoi(p)
	return bson.D{
		{Key: "host", Value: host},
		{Key: "port", Value: int32(port)},
		{Key: "version", Value: Version},
		{Key: "gitVersion", Value: "devdb"},
	}
}

// explainServerParameters are the query memory limits MongoDB 6.0 lists
// in explain, with the values devdb applies.
func explainServerParameters() bson.D {
	limit := int32(mql.DefaultMemoryLimit)
	return bson.D{
		{Key: "internalQueryFacetBufferSizeBytes", Value: limit},
		{Key: "internalQueryFacetMaxOutputDocSizeBytes", Value: limit},
		{Key: "internalLookupStageIntermediateDocumentMaxSizeBytes", Value: limit},
		{Key: "internalDocumentSourceGroupMaxMemoryBytes", Value: limit},
		{Key: "internalQueryMaxBlockingSortMemoryUsageBytes", Value: int32(maxSortBytes)},
		{Key: "internalQueryProhibitBlockingMergeOnMongoS", Value: int32(0)},
		{Key: "internalQueryMaxAddToSetBytes", Value: limit},
		{Key: "internalDocumentSourceSetWindowFieldsMaxMemoryBytes", Value: limit},
	}
}

// explainReply assembles a query's explain reply: explainVersion, the
// queryPlanner and (when executed) executionStats sections, then command,
// serverInfo and serverParameters, as MongoDB 6.0 orders them.
func (s *Server) explainReply(req *Request, planner, exec bson.D) bson.D {
	out := bson.D{{Key: "explainVersion", Value: "1"}, {Key: "queryPlanner", Value: planner}}
	if exec != nil {
		out = append(out, bson.E{Key: "executionStats", Value: exec})
	}
	return append(out,
		bson.E{Key: "command", Value: explainCommand(req)},
		bson.E{Key: "serverInfo", Value: s.explainServerInfo()},
		bson.E{Key: "serverParameters", Value: explainServerParameters()})
}

// queryPlannerSection is the queryPlanner section of a plan on ns for
// filter: devdb has one plan per query, so no plan is ever rejected.
func queryPlannerSection(ns string, filter bson.D, winning *planNode) bson.D {
	return bson.D{
		{Key: "namespace", Value: ns},
		{Key: "indexFilterSet", Value: false},
		{Key: "parsedQuery", Value: parsedQuery(filter)},
		{Key: "maxIndexedOrSolutionsReached", Value: false},
		{Key: "maxIndexedAndSolutionsReached", Value: false},
		{Key: "maxScansToExplodeReached", Value: false},
		{Key: "winningPlan", Value: winning.plannerDoc()},
		{Key: "rejectedPlans", Value: bson.A{}},
	}
}

// executionRun is the outcome of one explained execution.
type executionRun struct {
	returned int64
	elapsed  time.Duration
	stats    *scanStats
	err      error // a failure while running (not while parsing)
}

// executionStatsSection is the executionStats section for the run r of
// the plan root; allPlansExecution adds the (always empty) list of the
// other plans' executions.
func executionStatsSection(x *explainRequest, root *planNode, r *executionRun) bson.D {
	ms := r.elapsed.Milliseconds()
	d := bson.D{{Key: "executionSuccess", Value: r.err == nil}}
	if r.err != nil {
		ce, _ := asCommandError(r.err)
		d = append(d, bson.E{Key: "errorMessage", Value: ce.Message}, bson.E{Key: "errorCode", Value: int32(ce.Code)})
	}
	d = append(d,
		bson.E{Key: "nReturned", Value: int32OrInt64(r.returned)},
		bson.E{Key: "executionTimeMillis", Value: int32OrInt64(ms)},
		bson.E{Key: "totalKeysExamined", Value: int32OrInt64(r.stats.keys)},
		bson.E{Key: "totalDocsExamined", Value: int32OrInt64(r.stats.scanned + r.stats.fetched + r.stats.sortFetched)},
		bson.E{Key: "executionStages", Value: root.execDoc(ms)})
	if x.verbosity == explainAllPlansExecution {
		d = append(d, bson.E{Key: "allPlansExecution", Value: bson.A{}})
	}
	return d
}

// planNode is one stage of an explained plan: what queryPlanner shows of
// it and what one execution counted.
type planNode struct {
	stage  string
	filter bson.D // shown right after the stage name when not empty
	plan   bson.D // the stage's other queryPlanner fields
	in     *planNode

	returned int64  // documents (or keys) the stage passed up
	consumed int64  // documents or keys it read or received: its units of work
	eof      bool   // it reached its end
	exec     bson.D // its executionStats-only fields
}

// plannerDoc is the node as queryPlanner's winningPlan shows it.
func (n *planNode) plannerDoc() bson.D {
	d := bson.D{{Key: "stage", Value: n.stage}}
	if len(n.filter) > 0 {
		d = append(d, bson.E{Key: "filter", Value: n.filter})
	}
	d = append(d, n.plan...)
	if n.in != nil {
		d = append(d, bson.E{Key: "inputStage", Value: n.in.plannerDoc()})
	}
	return d
}

// execDoc is the node as executionStats' executionStages shows it: the
// common counters, derived from what the stage consumed and returned
// (works = consumed + 1 at its end, needTime = consumed - returned), then
// the planner fields and the stage's own counters. devdb does not time
// stages: each shows the whole execution's milliseconds, an upper bound of
// MongoDB's cumulative estimate. It never yields, so needYield, saveState
// and restoreState are 0.
func (n *planNode) execDoc(ms int64) bson.D {
	d := bson.D{{Key: "stage", Value: n.stage}}
	if len(n.filter) > 0 {
		d = append(d, bson.E{Key: "filter", Value: n.filter})
	}
	eof := int32(0)
	if n.eof {
		eof = 1
	}
	d = append(d,
		bson.E{Key: "nReturned", Value: int32OrInt64(n.returned)},
		bson.E{Key: "executionTimeMillisEstimate", Value: int32OrInt64(ms)},
		bson.E{Key: "works", Value: int32OrInt64(n.consumed + int64(eof))},
		bson.E{Key: "advanced", Value: int32OrInt64(n.returned)},
		bson.E{Key: "needTime", Value: int32OrInt64(max(n.consumed-n.returned, 0))},
		bson.E{Key: "needYield", Value: int32(0)},
		bson.E{Key: "saveState", Value: int32(0)},
		bson.E{Key: "restoreState", Value: int32(0)},
		bson.E{Key: "isEOF", Value: eof})
	d = append(d, n.plan...)
	d = append(d, n.exec...)
	if n.in != nil {
		d = append(d, bson.E{Key: "inputStage", Value: n.in.execDoc(ms)})
	}
	return d
}

// accessPath is how devdb reads the documents a filter selects.
type accessPath int

const (
	pathEOF      accessPath = iota // the collection does not exist: nothing is read
	pathCollScan                   // every document, in natural order
	pathIDHack                     // an _id equality alone: one _id index lookup
	pathIDIndex                    // an _id equality with more conditions: the lookup, then the filter
)

// accessPathOf returns the access path of p on db.coll as stream, each and
// sortKeys take it. idHack allows IDHACK for a filter that is only the _id
// equality (MongoDB does not use it for a find with skip).
func accessPathOf(st dataStore, db, coll string, p *queryPlan, filter bson.D, idHack bool) (accessPath, error) {
	path := pathEOF
	err := st.View(func(tx *storage.Tx) error {
		path = accessPathIn(tx, db, coll, p, filter, idHack)
		return nil
	})
	if err != nil {
		return pathEOF, dataErr(err)
	}
	return path, nil
}

// accessPathIn is accessPathOf inside the storage transaction tx.
func accessPathIn(tx *storage.Tx, db, coll string, p *queryPlan, filter bson.D, idHack bool) accessPath {
	if isOplog(db, coll) {
		return pathCollScan
	}
	c, err := tx.Collection(db, coll)
	switch {
	case err != nil || c == nil:
		return pathEOF
	case !p.useID(c):
		return pathCollScan
	case idHack && len(filter) == 1:
		return pathIDHack
	}
	return pathIDIndex
}

// sourceNode is the plan stage of the access path reading the documents
// of filter; returned are the documents it passed up and st what the
// execution read (zero without execution).
func sourceNode(path accessPath, p *queryPlan, filter bson.D, backward bool, returned int64, st *scanStats) *planNode {
	switch path {
	case pathEOF:
		return &planNode{stage: "EOF", eof: true}
	case pathIDHack:
		return &planNode{stage: "IDHACK", returned: returned, consumed: 1, eof: true, exec: bson.D{
			{Key: "keysExamined", Value: int32OrInt64(st.keys)},
			{Key: "docsExamined", Value: int32OrInt64(st.fetched)},
		}}
	case pathIDIndex:
		var rest bson.D
		for _, e := range filter {
			if e.Key != "_id" {
				rest = append(rest, e)
			}
		}
		bound := "[" + boundString(p.id) + ", " + boundString(p.id) + "]"
		ix := &planNode{
			stage: "IXSCAN",
			plan: bson.D{
				{Key: "keyPattern", Value: bson.D{{Key: "_id", Value: int32(1)}}},
				{Key: "indexName", Value: "_id_"},
				{Key: "isMultiKey", Value: false},
				{Key: "multiKeyPaths", Value: bson.D{{Key: "_id", Value: bson.A{}}}},
				{Key: "isUnique", Value: true},
				{Key: "isSparse", Value: false},
				{Key: "isPartial", Value: false},
				{Key: "indexVersion", Value: int32(2)},
				{Key: "direction", Value: "forward"},
				{Key: "indexBounds", Value: bson.D{{Key: "_id", Value: bson.A{bound}}}},
			},
			returned: st.keys, consumed: st.keys, eof: true,
			exec: bson.D{
				{Key: "keysExamined", Value: int32OrInt64(st.keys)},
				{Key: "seeks", Value: int32(1)},
				{Key: "dupsTested", Value: int32(0)},
				{Key: "dupsDropped", Value: int32(0)},
			},
		}
		return &planNode{stage: "FETCH", filter: nonEmpty(parsedQuery(rest)), in: ix,
			returned: returned, consumed: st.fetched, eof: true,
			exec: bson.D{{Key: "docsExamined", Value: int32OrInt64(st.fetched)}, {Key: "alreadyHasObj", Value: int32(0)}}}
	}
	dir := "forward"
	if backward {
		dir = "backward"
	}
	return &planNode{stage: "COLLSCAN", filter: nonEmpty(parsedQuery(filter)), plan: bson.D{{Key: "direction", Value: dir}},
		returned: returned, consumed: st.scanned, eof: st.scanEOF,
		exec: bson.D{{Key: "docsExamined", Value: int32OrInt64(st.scanned)}}}
}

// nonEmpty returns d, or nil for an empty document.
func nonEmpty(d bson.D) bson.D {
	if len(d) == 0 {
		return nil
	}
	return d
}

// sortNode is a SORT stage of sortSpec over in. memLimit 0 is devdb's
// index-order sort, which holds only sort keys and record ids and has no
// memory limit; limit > 0 keeps only the first limit documents (top-k).
func sortNode(sortSpec bson.D, memLimit, limit int64, in *planNode) *planNode {
	plan := bson.D{{Key: "sortPattern", Value: sortSpec}}
	if memLimit > 0 {
		plan = append(plan, bson.E{Key: "memLimit", Value: int32OrInt64(memLimit)})
	}
	if limit > 0 {
		plan = append(plan, bson.E{Key: "limitAmount", Value: int32OrInt64(limit)})
	}
	plan = append(plan, bson.E{Key: "type", Value: "simple"})
	return &planNode{stage: "SORT", plan: plan, in: in}
}

// projectionStage is MongoDB's name for the projection stage of spec:
// PROJECTION_SIMPLE for inclusions or exclusions of top-level fields,
// PROJECTION_DEFAULT otherwise.
func projectionStage(spec bson.D) string {
	for _, e := range spec {
		if strings.ContainsAny(e.Key, ".$") {
			return "PROJECTION_DEFAULT"
		}
		switch e.Value.(type) {
		case bool, int32, int64, float64:
		default:
			return "PROJECTION_DEFAULT"
		}
	}
	return "PROJECTION_SIMPLE"
}

// boundString formats an index bound value as MongoDB's explain prints
// it: strings quoted, ObjectIds as ObjectId('hex'), numbers as written.
func boundString(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case bson.ObjectID:
		return "ObjectId('" + x.Hex() + "')"
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEnN") {
			s += ".0"
		}
		return s
	}
	return mql.FormatValue(v)
}

// parsedQuery is filter as MongoDB's queryPlanner shows it after parsing:
// each top-level condition as {field: {$op: value}} (a plain value as
// $eq, $regex with its $options), nested $and flattened, $or and $nor with
// their branches parsed, more than one condition under $and, an empty
// filter as {}. Unlike MongoDB, the conditions keep their order instead of
// being sorted.
func parsedQuery(filter bson.D) bson.D {
	var parts []bson.D
	for _, e := range filter {
		parts = append(parts, parsedClauses(e)...)
	}
	switch len(parts) {
	case 0:
		return bson.D{}
	case 1:
		return parts[0]
	}
	arr := make(bson.A, len(parts))
	for i, p := range parts {
		arr[i] = p
	}
	return bson.D{{Key: "$and", Value: arr}}
}

// parsedClauses are the parsed conditions of one top-level filter element.
func parsedClauses(e bson.E) []bson.D {
	switch e.Key {
	case "$and":
		if arr, ok := e.Value.(bson.A); ok {
			var out []bson.D
			for _, el := range arr {
				if d, ok := el.(bson.D); ok {
					for _, sub := range d {
						out = append(out, parsedClauses(sub)...)
					}
				}
			}
			return out
		}
	case "$or", "$nor":
		if arr, ok := e.Value.(bson.A); ok {
			branches := make(bson.A, 0, len(arr))
			for _, el := range arr {
				if d, ok := el.(bson.D); ok {
					branches = append(branches, parsedQuery(d))
				}
			}
			if e.Key == "$or" && len(branches) == 1 {
				return []bson.D{branches[0].(bson.D)}
			}
			return []bson.D{{{Key: e.Key, Value: branches}}}
		}
	case "$comment":
		return nil
	}
	if strings.HasPrefix(e.Key, "$") {
		return []bson.D{{e}}
	}
	switch v := e.Value.(type) {
	case bson.D:
		if len(v) > 0 && strings.HasPrefix(v[0].Key, "$") {
			var out []bson.D
			opts, hasOpts := fieldOf(v, "$options")
			for _, op := range v {
				switch op.Key {
				case "$options":
					continue
				case "$regex":
					re := bson.D{op}
					if hasOpts {
						re = append(re, bson.E{Key: "$options", Value: opts})
					}
					out = append(out, bson.D{{Key: e.Key, Value: re}})
				default:
					out = append(out, bson.D{{Key: e.Key, Value: bson.D{op}}})
				}
			}
			return out
		}
	case bson.Regex:
		return []bson.D{{{Key: e.Key, Value: bson.D{{Key: "$regex", Value: v}}}}}
	}
	return []bson.D{{{Key: e.Key, Value: bson.D{{Key: "$eq", Value: e.Value}}}}}
}
