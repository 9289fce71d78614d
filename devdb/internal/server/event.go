package server

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
)

// Change event operation types.
const (
	opInsert        = "insert"
	opUpdate        = "update"
	opReplace       = "replace"
	opDelete        = "delete"
	opDrop          = "drop"
	opRename        = "rename"
	opDropDatabase  = "dropDatabase"
	opInvalidate    = "invalidate"
	opCreate        = "create"
	opCreateIndexes = "createIndexes"
	opDropIndexes   = "dropIndexes"
	opModify        = "modify"
	opShardColl     = "shardCollection"
)

// expandedOnly reports whether events of operation type op are reported
// only with showExpandedEvents.
func expandedOnly(op string) bool {
	switch op {
	case opCreate, opCreateIndexes, opDropIndexes, opModify, opShardColl:
		return true
	}
	return false
}

// csTarget is what a change stream watches: its scope and namespace.
type csTarget struct {
	scope csScope
	db    string
	coll  string
}

// inScope reports whether ent concerns the watched namespace, before the
// showExpandedEvents filter and the user's pipeline: the collection's own
// entries and renames onto it for a collection stream (not its database's
// dropDatabase: MongoDB leaves it out of collection streams, which see the
// collection's own drop first when it exists); the database's non-system collections (and renames into it) for a
// database stream; every non-system collection outside admin, config and
// local for a deployment stream.
func (t csTarget) inScope(ent *storage.OplogEntry) bool {
	if ent.Op == storage.OpNoop {
		return false
	}
	renamedInto := ent.Op == opRename && ent.ToDB == t.db
	switch t.scope {
	case csCollection:
		if ent.DB == t.db && ent.Coll == t.coll {
			return true
		}
		// A collection renamed onto the watched one (MongoDB's o.to match).
		return renamedInto && ent.ToColl == t.coll
	case csDatabase:
		if ent.DB == t.db && !isSystemCollection(ent.Coll) {
			return true
		}
		return renamedInto && !isSystemCollection(ent.ToColl)
	default:
		return !internalDatabase(ent.DB) && !isSystemCollection(ent.Coll)
	}
}

// invalidates reports whether ent (already in scope) ends the stream with an
// invalidate event: dropping or renaming (from or onto) a watched
// collection, or dropping a watched database.
// Deployment streams are never invalidated.
func (t csTarget) invalidates(ent *storage.OplogEntry) bool {
	switch t.scope {
	case csCollection:
		return ent.Op == opDrop || ent.Op == opRename
	case csDatabase:
		return ent.Op == opDropDatabase
	default:
		return false
	}
}

// entryUUID returns the entry's collection UUID, if it has one.
func entryUUID(ent *storage.OplogEntry) ([16]byte, bool) {
	var u [16]byte
	if len(ent.UUID.Data) != 16 {
		return u, false
	}
	copy(u[:], ent.UUID.Data)
	return u, true
}

// eventTokenFor returns the resume token of the event ent produces.
func eventTokenFor(ent *storage.OplogEntry) resumeToken {
	u, ok := entryUUID(ent)
	return resumeToken{
		ClusterTime: ent.TS,
		UUID:        u,
		HasUUID:     ok,
		EventHash:   eventHash(ent.Op, ent.DB, ent.Coll, ent.DocumentKey),
	}
}

// invalidateTokenFor returns the token of the invalidate event that ent
// causes: the event's token with fromInvalidate set.
func invalidateTokenFor(ent *storage.OplogEntry) resumeToken {
	t := eventTokenFor(ent)
	t.FromInvalidate = true
	return t
}

// csImages says how an event's images are filled in.
type csImages struct {
	fullDocument             string
	fullDocumentBeforeChange string
	expanded                 bool
	// lookup returns the current document with documentKey in ent's
	// collection (updateLookup), or nil when there is none.
	lookup func(ent *storage.OplogEntry) (bson.D, error)
	// lookupRaw is lookup returning the stored encoded document (nil when
	// there is none); buildEventRaw uses it when set, else lookup.
	lookupRaw func(ent *storage.OplogEntry) (bson.Raw, error)
}

// buildEvent renders ent as a change event, with MongoDB's field order:
// _id, operationType, clusterTime, collectionUUID (expanded, not for a
// view), wallTime,
// fullDocument, ns, to (rename), documentKey, operationDescription
// (expanded), stateBeforeChange (expanded modify), updateDescription, fullDocumentBeforeChange, and for a write
// of a multi-document transaction txnNumber and lsid.
func buildEvent(ent *storage.OplogEntry, tok resumeToken, im csImages) (bson.D, error) {
	ev := make(bson.D, 0, 12)
	clusterTime := ent.TS
	if ent.CommitTS != nil {
		clusterTime = *ent.CommitTS // a transaction's events share its commit time
	}
	ev = append(ev,
		bson.E{Key: "_id", Value: tok.Doc()},
		bson.E{Key: "operationType", Value: ent.Op},
		bson.E{Key: "clusterTime", Value: clusterTime},
	)
	if im.expanded && len(ent.UUID.Data) > 0 && !ent.View {
		ev = append(ev, bson.E{Key: "collectionUUID", Value: ent.UUID})
	}
	ev = append(ev, bson.E{Key: "wallTime", Value: bson.NewDateTimeFromTime(ent.Wall)})

	switch ent.Op {
	case opInsert, opReplace:
		ev = append(ev, bson.E{Key: "fullDocument", Value: csDocOrEmpty(ent.Doc)})
	case opUpdate:
		switch im.fullDocument {
		case fdUpdateLookup:
			doc, err := im.lookup(ent)
			if err != nil {
				return nil, fmt.Errorf("look up post-image: %w", err)
			}
			ev = append(ev, bson.E{Key: "fullDocument", Value: csDocOrNull(doc)})
		case fdWhenAvailable, fdRequired:
			doc, err := csStoredImage(ent, ent.Doc, im.fullDocument, "a post-image for all update events, but the post-image")
			if err != nil {
				return nil, err
			}
			ev = append(ev, bson.E{Key: "fullDocument", Value: csDocOrNull(doc)})
		}
	}

	ns := bson.D{{Key: "db", Value: ent.DB}}
	if ent.Coll != "" {
		ns = append(ns, bson.E{Key: "coll", Value: ent.Coll})
	}
	ev = append(ev, bson.E{Key: "ns", Value: ns})
	if ent.Op == opRename {
		ev = append(ev, bson.E{Key: "to", Value: bson.D{{Key: "db", Value: ent.ToDB}, {Key: "coll", Value: ent.ToColl}}})
	}
	switch ent.Op {
	case opInsert, opUpdate, opReplace, opDelete:
		ev = append(ev, bson.E{Key: "documentKey", Value: csDocOrEmpty(ent.DocumentKey)})
	}
	if im.expanded {
		if desc := operationDescription(ent); desc != nil {
			ev = append(ev, bson.E{Key: "operationDescription", Value: desc})
		}
		if ent.Op == opModify && ent.StateBefore != nil {
			ev = append(ev, bson.E{Key: "stateBeforeChange", Value: ent.StateBefore})
		}
	}
	if ent.Op == opUpdate {
		var desc updateDescription
		if ent.Diff != nil {
			desc = describeDiff(ent.Diff) // what the update's operators logged
		} else {
			desc = diffDocuments(ent.Pre, ent.Doc)
		}
		ev = append(ev, bson.E{Key: "updateDescription", Value: desc.doc()})
	}
	switch ent.Op {
	case opUpdate, opReplace, opDelete:
		if im.fullDocumentBeforeChange == fdOff || im.fullDocumentBeforeChange == "" {
			break
		}
		pre, err := csStoredImage(ent, ent.Pre, im.fullDocumentBeforeChange, "a pre-image for all update, delete and replace events, but the pre-image")
		if err != nil {
			return nil, err
		}
		ev = append(ev, bson.E{Key: "fullDocumentBeforeChange", Value: csDocOrNull(pre)})
	}
	if ent.LSID != nil {
		// A write of a multi-document transaction.
		ev = append(ev, bson.E{Key: "txnNumber", Value: ent.TxnNumber}, bson.E{Key: "lsid", Value: ent.LSID})
	}
	return ev, nil
}

// csStoredImage returns the pre- or post-image img recorded with ent when
// clients may see it (the collection had changeStreamPreAndPostImages
// enabled at write time), else nil; with mode "required" a missing image is
// NoMatchingDocument, its message naming what was required.
func csStoredImage(ent *storage.OplogEntry, img bson.D, mode, what string) (bson.D, error) {
	if ent.Images && img != nil {
		return img, nil
	}
	if mode == fdRequired {
		return nil, &mongoerr.Error{Code: mongoerr.NoMatchingDocument,
			Message: "Change stream was configured to require " + what + " was not found for event: " + csEventSummary(ent)}
	}
	return nil, nil
}

// operationDescription returns the expanded-event operationDescription of
// a DDL entry, or nil.
func operationDescription(ent *storage.OplogEntry) bson.D {
	switch ent.Op {
	case opRename:
		if ent.Extra != nil {
			return ent.Extra
		}
		return bson.D{{Key: "to", Value: bson.D{{Key: "db", Value: ent.ToDB}, {Key: "coll", Value: ent.ToColl}}}}
	case opCreate, opCreateIndexes, opDropIndexes, opModify, opShardColl:
		return csDocOrEmpty(ent.Extra)
	}
	return nil
}

// invalidateEvent renders the invalidate event that ent causes.
func invalidateEvent(ent *storage.OplogEntry, tok resumeToken) bson.D {
	return bson.D{
		{Key: "_id", Value: tok.Doc()},
		{Key: "operationType", Value: opInvalidate},
		{Key: "clusterTime", Value: ent.TS},
		{Key: "wallTime", Value: bson.NewDateTimeFromTime(ent.Wall)},
	}
}

// csEventSummary describes an event in an error message.
func csEventSummary(ent *storage.OplogEntry) string {
	return fmt.Sprintf("{operationType: %q, ns: %q, documentKey: %v, clusterTime: %v}",
		ent.Op, ent.DB+"."+ent.Coll, ent.DocumentKey, ent.TS)
}

// csDocOrNull returns d, or nil (BSON null) when d is nil.
func csDocOrNull(d bson.D) any {
	if d == nil {
		return nil
	}
	return d
}

// csDocOrEmpty returns d, or an empty document when d is nil.
func csDocOrEmpty(d bson.D) bson.D {
	if d == nil {
		return bson.D{}
	}
	return d
}
