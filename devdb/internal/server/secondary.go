package server

import (
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// secondaryWrites are the commands a secondary refuses with
// NotWritablePrimary: they write, or they run a multi-document transaction
// (which only a primary can).
var secondaryWrites = map[string]bool{
	"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
	"create": true, "drop": true, "dropDatabase": true, "createIndexes": true,
	"dropIndexes": true, "deleteIndexes": true, "collMod": true, "renameCollection": true,
	"commitTransaction": true, "abortTransaction": true,
}

// secondaryReads are the commands a secondary serves only when the read
// preference allows a secondary (MongoDB's secondaryOk); the others
// (handshakes, getMore, killCursors, sessions, diagnostics, test commands)
// it serves as any member does.
var secondaryReads = map[string]bool{
	"find": true, "aggregate": true, "count": true, "distinct": true,
	"listCollections": true, "listIndexes": true, "listDatabases": true,
	"dbStats": true, "collStats": true, "explain": true,
}

// secondaryRefuses returns the error a MongoDB secondary answers req with,
// or nil when a secondary serves it.
func secondaryRefuses(req *Request) error {
	if _, inTxn := cmdField(req.Body, "autocommit"); inTxn || secondaryWrites[req.Name] || writesOut(req) {
		return mongoerr.Errorf(mongoerr.NotWritablePrimary, "not primary")
	}
	if secondaryReads[req.Name] && !secondaryOK(req.Body) {
		return mongoerr.Errorf(mongoerr.NotPrimaryNoSecondaryOk, "not primary and secondaryOk=false")
	}
	return nil
}

// writesOut reports whether req is an aggregate ending in $out or $merge.
func writesOut(req *Request) bool {
	if req.Name != "aggregate" {
		return false
	}
	v, _ := cmdField(req.Body, "pipeline")
	stages, _ := v.(bson.A)
	if len(stages) == 0 {
		return false
	}
	last, _ := stages[len(stages)-1].(bson.D)
	return len(last) > 0 && (last[0].Key == "$out" || last[0].Key == "$merge")
}

// secondaryOK reports whether body's $readPreference lets a secondary
// answer: any mode but primary (an absent read preference means primary).
func secondaryOK(body bson.D) bool {
	v, ok := cmdField(body, "$readPreference")
	if !ok {
		return false
	}
	rp, _ := v.(bson.D)
	mode, _ := cmdField(rp, "mode")
	m, _ := mode.(string)
	return m != "" && m != "primary"
}
