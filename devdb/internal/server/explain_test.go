package server_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/internal/mongoerr"
)

// explainSetup starts devdb with db.c holding ten documents {_id: i, a: i%3,
// b: i, s: "x"} and the indexes {a: 1} and {b: 1, a: -1}.
func explainSetup(t *testing.T) (*mongo.Client, *mongo.Database) {
	t.Helper()
	_, client := crudStart(t, "")
	db := client.Database("db")
	docs := make([]any, 10)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "a", Value: int32(i % 3)}, {Key: "b", Value: int32(i)}, {Key: "s", Value: "x"}}
	}
	crudInsert(t, db.Collection("c"), docs...)
	_, err := db.Collection("c").Indexes().CreateMany(crudCtx(t), []mongo.IndexModel{
		{Keys: bson.D{{Key: "a", Value: int32(1)}}},
		{Keys: bson.D{{Key: "b", Value: int32(1)}, {Key: "a", Value: int32(-1)}}},
	})
	if err != nil {
		t.Fatalf("create indexes: %v", err)
	}
	return client, db
}

// explain runs {explain: cmd, verbosity} on db ("" leaves verbosity out).
func explain(t *testing.T, db *mongo.Database, cmd bson.D, verbosity string) (bson.D, error) {
	t.Helper()
	req := bson.D{{Key: "explain", Value: cmd}}
	if verbosity != "" {
		req = append(req, bson.E{Key: "verbosity", Value: verbosity})
	}
	var out bson.D
	err := db.RunCommand(crudCtx(t), req).Decode(&out)
	return out, err
}

// mustExplain is explain failing the test on an error.
func mustExplain(t *testing.T, db *mongo.Database, cmd bson.D, verbosity string) bson.D {
	t.Helper()
	out, err := explain(t, db, cmd, verbosity)
	if err != nil {
		t.Fatalf("explain %v: %v", cmd, err)
	}
	return out
}

// at returns the value at path in d (nil when absent); a numeric path
// element indexes an array.
func at(d any, path ...string) any {
	v := d
	for _, p := range path {
		switch x := v.(type) {
		case bson.D:
			v = nil
			for _, e := range x {
				if e.Key == p {
					v = e.Value
					break
				}
			}
		case bson.A:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// num returns the number at path in d as an int64 (-1 when it is not a number).
func num(d any, path ...string) int64 {
	switch x := at(d, path...).(type) {
	case int32:
		return int64(x)
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return -1
}

// stages returns the stage names of a plan from its root down its inputStages.
func stages(plan any) []string {
	var out []string
	for plan != nil {
		name, _ := at(plan, "stage").(string)
		out = append(out, name)
		plan = at(plan, "inputStage")
	}
	return out
}

// stageNamed returns the first stage of plan named name (nil when none).
func stageNamed(plan any, name string) any {
	for plan != nil {
		if at(plan, "stage") == name {
			return plan
		}
		plan = at(plan, "inputStage")
	}
	return nil
}

func TestExplainFindPlans(t *testing.T) {
	_, db := explainSetup(t)
	type stageWant struct {
		stage  string
		field  string
		want   any
		inExec bool // look in executionStages rather than winningPlan
	}
	tests := []struct {
		name         string
		cmd          bson.D
		plan         []string
		returned     int64
		keys, docs   int64
		stageChecks  []stageWant
		parsedFilter any
	}{
		{
			name: "collection scan", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "b", Value: bson.D{{Key: "$gte", Value: int32(7)}}}}}},
			plan: []string{"COLLSCAN"}, returned: 3, keys: 0, docs: 10,
			stageChecks:  []stageWant{{"COLLSCAN", "direction", "forward", false}, {"COLLSCAN", "docsExamined", int32(10), true}},
			parsedFilter: bson.D{{Key: "b", Value: bson.D{{Key: "$gte", Value: int32(7)}}}},
		},
		{
			name: "an _id equality is IDHACK", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: int32(4)}}}},
			plan: []string{"IDHACK"}, returned: 1, keys: 1, docs: 1,
			parsedFilter: bson.D{{Key: "_id", Value: bson.D{{Key: "$eq", Value: int32(4)}}}},
		},
		{
			name: "an _id missing examines nothing", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: int32(99)}}}},
			plan: []string{"IDHACK"}, returned: 0, keys: 0, docs: 0,
		},
		{
			name: "an _id equality with more conditions scans the _id index",
			cmd:  bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: int32(4)}, {Key: "a", Value: int32(1)}}}},
			plan: []string{"FETCH", "IXSCAN"}, returned: 1, keys: 1, docs: 1,
			stageChecks: []stageWant{
				{"IXSCAN", "indexName", "_id_", false},
				{"IXSCAN", "keyPattern", bson.D{{Key: "_id", Value: int32(1)}}, false},
				{"IXSCAN", "direction", "forward", false},
				{"IXSCAN", "indexBounds", bson.D{{Key: "_id", Value: bson.A{"[4, 4]"}}}, false},
				{"FETCH", "filter", bson.D{{Key: "a", Value: bson.D{{Key: "$eq", Value: int32(1)}}}}, false},
				{"IXSCAN", "keysExamined", int32(1), true},
			},
			parsedFilter: bson.D{{Key: "$and", Value: bson.A{
				bson.D{{Key: "_id", Value: bson.D{{Key: "$eq", Value: int32(4)}}}},
				bson.D{{Key: "a", Value: bson.D{{Key: "$eq", Value: int32(1)}}}},
			}}},
		},
		{
			name: "a string _id bound is quoted",
			cmd:  bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: "k"}, {Key: "a", Value: int32(1)}}}},
			plan: []string{"FETCH", "IXSCAN"}, returned: 0, keys: 0, docs: 0,
			stageChecks: []stageWant{{"IXSCAN", "indexBounds", bson.D{{Key: "_id", Value: bson.A{`["k", "k"]`}}}, false}},
		},
		{
			// devdb keeps no entries for non-unique secondary indexes: a
			// query on an indexed field reads every document.
			name: "a single-field index is not scanned", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			plan: []string{"COLLSCAN"}, returned: 3, keys: 0, docs: 10,
		},
		{
			name: "a compound index is not scanned",
			cmd:  bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "b", Value: int32(5)}, {Key: "a", Value: bson.D{{Key: "$lt", Value: int32(3)}}}}}},
			plan: []string{"COLLSCAN"}, returned: 1, keys: 0, docs: 10,
		},
		{
			name: "a sort without an index is a blocking SORT",
			cmd:  bson.D{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "s", Value: int32(1)}, {Key: "b", Value: int32(-1)}}}, {Key: "limit", Value: int32(2)}},
			plan: []string{"SORT", "COLLSCAN"}, returned: 2, keys: 0, docs: 10,
			stageChecks: []stageWant{
				{"SORT", "sortPattern", bson.D{{Key: "s", Value: int32(1)}, {Key: "b", Value: int32(-1)}}, false},
				{"SORT", "memLimit", int32(100 << 20), false},
				{"SORT", "limitAmount", int32(2), false},
				{"SORT", "usedDisk", false, true},
			},
		},
		{
			name: "a sort an index provides reads in its order without a blocking sort",
			cmd:  bson.D{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "b", Value: int32(1)}}}},
			plan: []string{"FETCH", "SORT", "COLLSCAN"}, returned: 10, keys: 0, docs: 20,
			stageChecks: []stageWant{
				{"SORT", "memLimit", nil, false},
				{"FETCH", "docsExamined", int32(10), true},
				{"COLLSCAN", "docsExamined", int32(10), true},
			},
		},
		{
			name: "skip and limit", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "skip", Value: int32(2)}, {Key: "limit", Value: int32(3)}},
			plan: []string{"LIMIT", "SKIP", "COLLSCAN"}, returned: 3, keys: 0, docs: 10,
			stageChecks: []stageWant{
				{"LIMIT", "limitAmount", int32(3), false},
				{"SKIP", "skipAmount", int32(2), false},
				{"COLLSCAN", "nReturned", int32(5), true},
			},
		},
		{
			name: "a simple projection", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "projection", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			plan: []string{"PROJECTION_SIMPLE", "COLLSCAN"}, returned: 10, keys: 0, docs: 10,
			stageChecks: []stageWant{{"PROJECTION_SIMPLE", "transformBy", bson.D{{Key: "a", Value: int32(1)}}, false}},
		},
		{
			name: "a computed projection", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "projection", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$add", Value: bson.A{"$a", int32(1)}}}}}}},
			plan: []string{"PROJECTION_DEFAULT", "COLLSCAN"}, returned: 10, keys: 0, docs: 10,
		},
		{
			name: "reverse natural order", cmd: bson.D{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "$natural", Value: int32(-1)}}}},
			plan: []string{"COLLSCAN"}, returned: 10, keys: 0, docs: 10,
			stageChecks: []stageWant{{"COLLSCAN", "direction", "backward", false}},
		},
		{
			name: "a collection that does not exist", cmd: bson.D{{Key: "find", Value: "none"}, {Key: "filter", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			plan: []string{"EOF"}, returned: 0, keys: 0, docs: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustExplain(t, db, tc.cmd, "executionStats")
			if got := at(out, "explainVersion"); got != "1" {
				t.Errorf("explainVersion = %v, want \"1\"", got)
			}
			winning := at(out, "queryPlanner", "winningPlan")
			if got := stages(winning); !reflect.DeepEqual(got, tc.plan) {
				t.Fatalf("winning plan %v, want %v\n%v", got, tc.plan, out)
			}
			exec := at(out, "executionStats", "executionStages")
			if got := stages(exec); !reflect.DeepEqual(got, tc.plan) {
				t.Errorf("execution stages %v, want %v", got, tc.plan)
			}
			es := at(out, "executionStats")
			if at(es, "executionSuccess") != true {
				t.Errorf("executionSuccess = %v", at(es, "executionSuccess"))
			}
			if got := num(es, "nReturned"); got != tc.returned {
				t.Errorf("nReturned = %d, want %d", got, tc.returned)
			}
			if got := num(es, "totalKeysExamined"); got != tc.keys {
				t.Errorf("totalKeysExamined = %d, want %d", got, tc.keys)
			}
			if got := num(es, "totalDocsExamined"); got != tc.docs {
				t.Errorf("totalDocsExamined = %d, want %d", got, tc.docs)
			}
			if got := num(exec, "nReturned"); got != tc.returned {
				t.Errorf("root stage nReturned = %d, want %d", got, tc.returned)
			}
			for _, c := range tc.stageChecks {
				plan := winning
				if c.inExec {
					plan = exec
				}
				st := stageNamed(plan, c.stage)
				if got := at(st, c.field); !reflect.DeepEqual(got, c.want) {
					t.Errorf("%s.%s = %#v, want %#v", c.stage, c.field, got, c.want)
				}
			}
			if tc.parsedFilter != nil {
				if got := at(out, "queryPlanner", "parsedQuery"); !reflect.DeepEqual(got, tc.parsedFilter) {
					t.Errorf("parsedQuery = %v, want %v", got, tc.parsedFilter)
				}
			}
			if got := at(out, "queryPlanner", "namespace"); got != "db."+tc.cmd[0].Value.(string) {
				t.Errorf("namespace = %v", got)
			}
			if got, want := at(out, "command", "$db"), "db"; got != want {
				t.Errorf("command.$db = %v, want %v", got, want)
			}
			if got := at(out, "serverInfo", "version"); got != server.Version {
				t.Errorf("serverInfo.version = %v, want %v", got, server.Version)
			}
		})
	}
}

func TestExplainVerbosity(t *testing.T) {
	_, db := explainSetup(t)
	find := bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "a", Value: int32(1)}}}}
	tests := []struct {
		verbosity        string
		execStats, plans bool
	}{
		{"queryPlanner", false, false},
		{"executionStats", true, false},
		{"allPlansExecution", true, true},
		{"", true, true}, // the command's default is allPlansExecution
	}
	for _, tc := range tests {
		t.Run("verbosity "+tc.verbosity, func(t *testing.T) {
			out := mustExplain(t, db, find, tc.verbosity)
			if got := at(out, "executionStats") != nil; got != tc.execStats {
				t.Errorf("executionStats present = %v, want %v", got, tc.execStats)
			}
			if got := at(out, "executionStats", "allPlansExecution") != nil; got != tc.plans {
				t.Errorf("allPlansExecution present = %v, want %v", got, tc.plans)
			}
			if got := at(out, "queryPlanner", "rejectedPlans"); !reflect.DeepEqual(got, bson.A{}) {
				t.Errorf("rejectedPlans = %v", got)
			}
			var keys []string
			for _, e := range out {
				keys = append(keys, e.Key)
			}
			want := []string{"explainVersion", "queryPlanner", "executionStats", "command", "serverInfo", "serverParameters", "ok"}
			if !tc.execStats {
				want = slicesWithout(want, "executionStats")
			}
			if !reflect.DeepEqual(keys[:len(want)], want) {
				t.Errorf("reply fields %v, want %v first", keys, want)
			}
		})
	}
}

// slicesWithout returns s without the element x.
func slicesWithout(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

func TestExplainCountAndDistinct(t *testing.T) {
	_, db := explainSetup(t)
	tests := []struct {
		name     string
		cmd      bson.D
		plan     []string
		counted  int64 // -1: not a count
		docs     int64
		returned int64
	}{
		{name: "count without a query reads the document count", cmd: bson.D{{Key: "count", Value: "c"}},
			plan: []string{"RECORD_STORE_FAST_COUNT"}, counted: 10, docs: 0},
		{name: "count with a query scans", cmd: bson.D{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			plan: []string{"COUNT", "COLLSCAN"}, counted: 3, docs: 10},
		{name: "count with skip and limit", cmd: bson.D{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: int32(0)}}}}}, {Key: "skip", Value: int32(2)}, {Key: "limit", Value: int32(3)}},
			plan: []string{"COUNT", "COLLSCAN"}, counted: 3, docs: 5},
		{name: "count of an _id", cmd: bson.D{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "_id", Value: int32(3)}}}},
			plan: []string{"COUNT", "IDHACK"}, counted: 1, docs: 1},
		{name: "distinct scans", cmd: bson.D{{Key: "distinct", Value: "c"}, {Key: "key", Value: "a"}, {Key: "query", Value: bson.D{{Key: "b", Value: bson.D{{Key: "$lt", Value: int32(4)}}}}}},
			plan: []string{"COLLSCAN"}, counted: -1, docs: 10, returned: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustExplain(t, db, tc.cmd, "executionStats")
			exec := at(out, "executionStats", "executionStages")
			if got := stages(at(out, "queryPlanner", "winningPlan")); !reflect.DeepEqual(got, tc.plan) {
				t.Fatalf("plan %v, want %v\n%v", got, tc.plan, out)
			}
			if tc.counted >= 0 {
				if got := num(exec, "nCounted"); got != tc.counted {
					t.Errorf("nCounted = %d, want %d", got, tc.counted)
				}
			} else if got := num(out, "executionStats", "nReturned"); got != tc.returned {
				t.Errorf("nReturned = %d, want %d", got, tc.returned)
			}
			if got := num(out, "executionStats", "totalDocsExamined"); got != tc.docs {
				t.Errorf("totalDocsExamined = %d, want %d", got, tc.docs)
			}
		})
	}
}

// oplogCount returns the number of entries in the oplog.
func oplogCount(t *testing.T, client *mongo.Client) int64 {
	t.Helper()
	n, err := client.Database("local").Collection("oplog.rs").CountDocuments(crudCtx(t), bson.D{})
	if err != nil {
		t.Fatalf("count the oplog: %v", err)
	}
	return n
}

func TestExplainWritesDoNotWrite(t *testing.T) {
	client, db := explainSetup(t)
	c := db.Collection("c")
	tests := []struct {
		name   string
		cmd    bson.D
		plan   []string
		counts map[string]int64 // execution fields of the root stage
	}{
		{
			name: "multi update",
			cmd: bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{
				{Key: "q", Value: bson.D{{Key: "a", Value: int32(1)}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "z", Value: int32(1)}}}}}, {Key: "multi", Value: true}}}}},
			plan:   []string{"UPDATE", "COLLSCAN"},
			counts: map[string]int64{"nMatched": 3, "nWouldModify": 3, "nWouldUpsert": 0},
		},
		{
			name: "update by _id that changes nothing",
			cmd: bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{
				{Key: "q", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: int32(1)}}}}}}}}},
			plan:   []string{"UPDATE", "IDHACK"},
			counts: map[string]int64{"nMatched": 1, "nWouldModify": 0},
		},
		{
			name: "upsert into a collection that does not exist",
			cmd: bson.D{{Key: "update", Value: "new"}, {Key: "updates", Value: bson.A{bson.D{
				{Key: "q", Value: bson.D{{Key: "k", Value: int32(1)}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: int32(1)}}}}}, {Key: "upsert", Value: true}}}}},
			plan:   []string{"UPDATE", "EOF"},
			counts: map[string]int64{"nMatched": 0, "nWouldUpsert": 1},
		},
		{
			name: "delete many",
			cmd: bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{
				{Key: "q", Value: bson.D{{Key: "a", Value: int32(2)}}}, {Key: "limit", Value: int32(0)}}}}},
			plan:   []string{"DELETE", "COLLSCAN"},
			counts: map[string]int64{"nWouldDelete": 3},
		},
		{
			name:   "findAndModify remove by _id",
			cmd:    bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: bson.D{{Key: "_id", Value: int32(2)}}}, {Key: "remove", Value: true}},
			plan:   []string{"DELETE", "IDHACK"},
			counts: map[string]int64{"nWouldDelete": 1},
		},
		{
			name: "findAndModify update with a sort",
			cmd: bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: bson.D{{Key: "a", Value: int32(0)}}},
				{Key: "sort", Value: bson.D{{Key: "b", Value: int32(-1)}}}, {Key: "update", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "b", Value: int32(100)}}}}}},
			plan:   []string{"UPDATE", "SORT", "COLLSCAN"},
			counts: map[string]int64{"nMatched": 1, "nWouldModify": 1},
		},
	}
	before := crudAll(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: int32(1)}}))
	entries := oplogCount(t, client)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustExplain(t, db, tc.cmd, "executionStats")
			if got := stages(at(out, "queryPlanner", "winningPlan")); !reflect.DeepEqual(got, tc.plan) {
				t.Fatalf("plan %v, want %v\n%v", got, tc.plan, out)
			}
			exec := at(out, "executionStats", "executionStages")
			for field, want := range tc.counts {
				if got := num(exec, field); got != want {
					t.Errorf("%s = %d, want %d", field, got, want)
				}
			}
			if got := num(out, "executionStats", "nReturned"); got != 0 {
				t.Errorf("nReturned = %d, want 0", got)
			}
			if after := crudAll(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: int32(1)}})); !reflect.DeepEqual(after, before) {
				t.Errorf("explain changed the documents:\n%v\nwant\n%v", after, before)
			}
			if n := oplogCount(t, client); n != entries {
				t.Errorf("explain wrote %d oplog entries", n-entries)
			}
			names, err := db.ListCollectionNames(crudCtx(t), bson.D{{Key: "name", Value: "new"}})
			if err != nil || len(names) != 0 {
				t.Errorf("explain created a collection: %v %v", names, err)
			}
		})
	}
}

func TestExplainAggregate(t *testing.T) {
	_, db := explainSetup(t)
	t.Run("stages after the pushed-down $match", func(t *testing.T) {
		out := mustExplain(t, db, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$a"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: int32(1)}}}}}},
		}}, {Key: "cursor", Value: bson.D{}}}, "executionStats")
		cursor := at(out, "stages", "0", "$cursor")
		if got := stages(at(cursor, "queryPlanner", "winningPlan")); !reflect.DeepEqual(got, []string{"COLLSCAN"}) {
			t.Fatalf("$cursor plan %v\n%v", got, out)
		}
		if got := at(cursor, "queryPlanner", "winningPlan", "filter"); !reflect.DeepEqual(got, bson.D{{Key: "a", Value: bson.D{{Key: "$eq", Value: int32(1)}}}}) {
			t.Errorf("$cursor filter = %v", got)
		}
		if got := num(cursor, "executionStats", "totalDocsExamined"); got != 10 {
			t.Errorf("$cursor totalDocsExamined = %d, want 10", got)
		}
		if got := num(out, "stages", "0", "nReturned"); got != 3 {
			t.Errorf("$cursor nReturned = %d, want 3", got)
		}
		if at(out, "stages", "1", "$group") == nil || num(out, "stages", "1", "nReturned") != 1 {
			t.Errorf("second stage = %v, want $group returning 1", at(out, "stages", "1"))
		}
	})
	t.Run("a pipeline absorbed whole is explained as a find", func(t *testing.T) {
		out := mustExplain(t, db, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "_id", Value: int32(3)}}}},
		}}, {Key: "cursor", Value: bson.D{}}}, "queryPlanner")
		if at(out, "stages") != nil {
			t.Errorf("unexpected stages: %v", out)
		}
		if got := stages(at(out, "queryPlanner", "winningPlan")); !reflect.DeepEqual(got, []string{"IDHACK"}) {
			t.Errorf("plan %v", got)
		}
	})
	t.Run("aggregate with explain: true", func(t *testing.T) {
		var out bson.D
		err := db.RunCommand(crudCtx(t), bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			bson.D{{Key: "$count", Value: "n"}},
		}}, {Key: "explain", Value: true}}).Decode(&out)
		if err != nil {
			t.Fatal(err)
		}
		if got := stages(at(out, "stages", "0", "$cursor", "queryPlanner", "winningPlan")); !reflect.DeepEqual(got, []string{"COLLSCAN"}) {
			t.Errorf("$cursor plan %v\n%v", got, out)
		}
		if at(out, "stages", "0", "$cursor", "executionStats") != nil || at(out, "stages", "1", "nReturned") != nil {
			t.Errorf("explain: true ran the pipeline: %v", out)
		}
	})
	t.Run("$out is shown and not written", func(t *testing.T) {
		out := mustExplain(t, db, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$project", Value: bson.D{{Key: "a", Value: int32(1)}}}},
			bson.D{{Key: "$out", Value: "target"}},
		}}, {Key: "cursor", Value: bson.D{}}}, "executionStats")
		if got := at(out, "stages", "2", "$out"); !reflect.DeepEqual(got, bson.D{{Key: "db", Value: "db"}, {Key: "coll", Value: "target"}}) {
			t.Errorf("$out stage = %v\n%v", got, out)
		}
		names, err := db.ListCollectionNames(crudCtx(t), bson.D{{Key: "name", Value: "target"}})
		if err != nil || len(names) != 0 {
			t.Errorf("explain of $out created its target: %v %v", names, err)
		}
	})
}

func TestExplainErrors(t *testing.T) {
	client, db := explainSetup(t)
	find := bson.D{{Key: "find", Value: "c"}}
	// The error a find with a bad filter fails with, which its explain must
	// report too.
	badFilter := bson.D{{Key: "a", Value: bson.D{{Key: "$bogus", Value: int32(1)}}}}
	findErr := db.RunCommand(crudCtx(t), bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: badFilter}}).Err()
	if findErr == nil {
		t.Fatal("find with an unknown operator succeeded")
	}
	tests := []struct {
		name string
		req  bson.D
		code mongoerr.Code
		msg  string
	}{
		{"unknown verbosity", bson.D{{Key: "explain", Value: find}, {Key: "verbosity", Value: "everything"}}, mongoerr.BadValue,
			"Enumeration value 'everything' for field 'explain.verbosity' is not a valid value."},
		{"verbosity not a string", bson.D{{Key: "explain", Value: find}, {Key: "verbosity", Value: int32(1)}}, mongoerr.TypeMismatch, ""},
		{"explain not a document", bson.D{{Key: "explain", Value: "find"}}, mongoerr.TypeMismatch, ""},
		{"unknown field", bson.D{{Key: "explain", Value: find}, {Key: "bogus", Value: int32(1)}}, mongoerr.IDLUnknownField, ""},
		{"unknown command", bson.D{{Key: "explain", Value: bson.D{{Key: "mapReduce", Value: "c"}}}}, mongoerr.CommandNotFound,
			"Explain failed due to unknown command: mapReduce"},
		{"a command that cannot be explained", bson.D{{Key: "explain", Value: bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{}}}}}},
			mongoerr.IllegalOperation, "Cannot explain cmd: insert"},
		{"explain of explain", bson.D{{Key: "explain", Value: bson.D{{Key: "explain", Value: find}}}}, mongoerr.IllegalOperation, "Explain cannot explain itself."},
		{"mismatched $db", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "c"}, {Key: "$db", Value: "other"}}}}, mongoerr.InvalidNamespace, ""},
		{"a bad filter fails as the find does", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: badFilter}}}},
			crudCode(findErr), ""},
		{"a write batch of two", bson.D{{Key: "explain", Value: bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{
			bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: int32(0)}}, bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: int32(0)}}}}}}},
			mongoerr.InvalidLength, "explained write batches must be of size 1"},
		{"a bad update", bson.D{{Key: "explain", Value: bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{
			bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{{Key: "$bogus", Value: bson.D{{Key: "a", Value: int32(1)}}}}}}}}}}},
			mongoerr.FailedToParse, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := db.RunCommand(crudCtx(t), tc.req).Err()
			if got := crudCode(err); got != tc.code {
				t.Fatalf("error %v: code %d, want %d", err, got, tc.code)
			}
			var ce mongo.CommandError
			if tc.msg != "" && (!errors.As(err, &ce) || ce.Message != tc.msg) {
				t.Errorf("message %q, want %q", ce.Message, tc.msg)
			}
		})
	}

	t.Run("a failure while running is executionSuccess false", func(t *testing.T) {
		out := mustExplain(t, db, bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "$expr", Value: bson.D{
			{Key: "$gt", Value: bson.A{bson.D{{Key: "$add", Value: bson.A{"$s", 1}}}, 0}}}}}}}, "executionStats")
		if at(out, "executionStats", "executionSuccess") != false || num(out, "executionStats", "errorCode") <= 0 {
			t.Errorf("executionStats = %v", at(out, "executionStats"))
		}
		if msg, _ := at(out, "executionStats", "errorMessage").(string); msg == "" {
			t.Errorf("no errorMessage: %v", at(out, "executionStats"))
		}
	})

	t.Run("in a transaction", func(t *testing.T) {
		sess, err := client.StartSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.EndSession(crudCtx(t))
		if err := sess.StartTransaction(); err != nil {
			t.Fatal(err)
		}
		err = mongo.WithSession(crudCtx(t), sess, func(ctx context.Context) error {
			return db.RunCommand(ctx, bson.D{{Key: "explain", Value: find}}).Err()
		})
		if got := crudCode(err); got != mongoerr.OperationNotSupportedInTransaction {
			t.Fatalf("explain in a transaction: %v, want code %d", err, mongoerr.OperationNotSupportedInTransaction)
		}
		if !strings.Contains(err.Error(), "Cannot run 'explain' in a multi-document transaction.") {
			t.Errorf("message: %v", err)
		}
		_ = sess.AbortTransaction(crudCtx(t))
	})
}
