package server

import (
	"errors"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
)

// The rules deciding which namespaces a client may write to or create live
// here, and every command that writes documents or creates a collection
// consults them: insert, update, delete and findAndModify (and the drivers'
// bulk writes, which are made of those), create, createIndexes,
// renameCollection, and the targets of $out and $merge. They are MongoDB 6.0's: its checks of a write's
// namespace, of a created collection's namespace, of a renamed collection's
// source and target, its list of the system
// collections clients may use, the system collections a multi-document
// transaction may not write to, and the output stages' target checks, with
// MongoDB's codes and messages.
//
// devdb's own writes (the temporary collection of $out, the TTL monitor's
// deletes, the retryable-write and transaction records, which live in
// storage buckets of their own) call the storage layer directly and never
// pass through these rules, as MongoDB's internal writes bypass its checks.

// isSystemCollection reports whether coll is in its database's system.*
// namespace (MongoDB's NamespaceString::isSystem). Change streams never
// report such collections.
func isSystemCollection(coll string) bool {
	return strings.HasPrefix(coll, "system.")
}

// internalDatabase reports whether db is admin, config or local: database
// and deployment change streams never report them, transactions may not
// use them, and $out and $merge may not write to them.
func internalDatabase(db string) bool {
	return db == "admin" || db == "config" || db == "local"
}

// legalClientSystemCollection reports whether db.coll, a system.*
// collection, is one of those MongoDB 6.0 lets clients create and write to:
// system.users, system.js and system.views in any database, the temporary
// collections of resharding and the buckets of time-series collections, and
// a few per internal database (the authorization, configuration, key and
// session collections and the change-stream pre-image collection).
func legalClientSystemCollection(db, coll string) bool {
	switch db {
	case "admin":
		switch coll {
		case "system.roles", "system.version", "system.keys", "system.backup_users":
			return true
		}
	case "config":
		switch coll {
		case "system.sessions", "system.indexBuilds", "system.sharding_ddl_coordinators":
			return true
		}
		if strings.Contains(coll, ".system.resharding.") {
			return true
		}
	case "local":
		switch coll {
		case "system.replset", "system.healthlog", "system.collections_to_restore":
			return true
		}
	}
	switch coll {
	case "system.users", "system.js", "system.views":
		return true
	}
	if strings.HasPrefix(coll, "system.resharding.") {
		return true
	}
	if rest, ok := strings.CutPrefix(coll, "system.buckets."); ok && rest != "" && rest[0] != '.' {
		// The buckets of a time-series collection whose name is valid (the
		// whole name has no '$' or NUL already).
		return true
	}
	return db == "config" && (coll == "system.preimages" || coll == "system.change_collection")
}

// checkCreateNS refuses a client's creation of collection coll in db, an
// already valid namespace, as MongoDB's userAllowedCreateNS does: a system
// collection clients may not use is InvalidNamespace (73), and a name with
// ".system." after its first component BadValue (2). system.profile may be
// created.
func checkCreateNS(db, coll string) error {
	ns := db + "." + coll
	switch {
	case coll == "system.profile":
		return nil
	case isSystemCollection(coll) && !legalClientSystemCollection(db, coll):
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid system namespace: %s", ns)
	case strings.Contains(coll, ".system."):
		// The sharding catalog's chunk caches and the legal config
		// collections may hold ".system." in their names.
		if db == "config" && (strings.HasPrefix(coll, "cache.chunks.") || legalClientSystemCollection(db, coll)) {
			return nil
		}
		return mongoerr.Errorf(mongoerr.BadValue, "Invalid namespace: %s", ns)
	}
	return nil
}

// checkWriteNS refuses a client's write to db.coll (documents or indexes),
// an already valid namespace, as MongoDB's userAllowedWriteNS does:
// system.profile, system.views and a replica set's oplog are written only
// by the server (InvalidNamespace 73), and a write may create the
// collection, so checkCreateNS applies too.
func checkWriteNS(db, coll string) error {
	if coll == "system.profile" || coll == "system.views" || db == "local" && strings.HasPrefix(coll, "oplog.") {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "cannot write to %s.%s", db, coll)
	}
	return checkCreateNS(db, coll)
}

// checkTxnWriteNS refuses, inside a multi-document transaction (req.txn
// set), a document write to a system collection other than the
// authorization collections and time-series buckets, as MongoDB does before
// any other check of insert, update and delete, and after checkWriteNS for
// findAndModify (Location50791). Outside transactions it accepts anything.
func checkTxnWriteNS(req *Request, db, coll string) error {
	if req.txn == nil || !isSystemCollection(coll) {
		return nil
	}
	if db == "admin" && (coll == "system.users" || coll == "system.roles") || strings.HasPrefix(coll, "system.buckets.") {
		return nil
	}
	return mongoerr.Errorf(mongoerr.SystemCollectionWriteTxn, "Cannot write to system collection %s.%s within a transaction.", db, coll)
}

// checkBatchWriteNS applies the rules above to an insert, update or delete
// of req on req.DB.coll: the transaction's rule first, as MongoDB checks it
// before the write's namespace.
func checkBatchWriteNS(req *Request, coll string) error {
	if err := checkTxnWriteNS(req, req.DB, coll); err != nil {
		return err
	}
	return checkWriteNS(req.DB, coll)
}

// checkTxnCreateNS refuses, inside a multi-document transaction (req.txn
// set), the creation of a system collection, explicit or by createIndexes
// (OperationNotSupportedInTransaction 263), as MongoDB does after
// checkCreateNS.
func checkTxnCreateNS(req *Request, db, coll string) error {
	if req.txn != nil && isSystemCollection(coll) {
		return mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "Cannot create system collection %s.%s within a transaction.", db, coll)
	}
	return nil
}

// checkOutputTarget refuses the target db.coll of a $out or $merge stage
// (stage names which) as MongoDB 6.0 does, a system collection first: $out
// with Location17385 and Location31321, $merge with Location31319 and
// Location31320.
func checkOutputTarget(stage, db, coll string) error {
	merge := stage == "$merge"
	switch {
	case isSystemCollection(coll) && merge:
		return mongoerr.Errorf(mongoerr.MergeToSystemCollection, "Cannot %s to special collection: %s", stage, coll)
	case isSystemCollection(coll):
		return mongoerr.Errorf(mongoerr.OutToSystemCollection, "Can't %s to special collection: %s", stage, coll)
	case internalDatabase(db) && merge:
		return mongoerr.Errorf(mongoerr.MergeToInternalDatabase, "Cannot %s to internal database: %s", stage, db)
	case internalDatabase(db):
		return mongoerr.Errorf(mongoerr.OutToInternalDatabase, "Can't %s to internal database: %s", stage, db)
	}
	return nil
}

// checkRenameNS refuses a renameCollection of fromDB.from to toDB.to as
// MongoDB 6.0 does, every refusal IllegalOperation (20): the oplog on either
// side, a source or target a client may not write (checkWriteNS, its reason
// quoted), admin.system.version as the source, system.views and system.js on
// either side, and time-series buckets as the source.
func checkRenameNS(fromDB, from, toDB, to string) error {
	oplog := func(db, coll string) bool { return db == "local" && strings.HasPrefix(coll, "oplog.") }
	switch {
	case oplog(fromDB, from):
		return mongoerr.Errorf(mongoerr.IllegalOperation, "can't rename live oplog while replicating")
	case oplog(toDB, to):
		return mongoerr.Errorf(mongoerr.IllegalOperation, "can't rename to live oplog while replicating")
	}
	for _, side := range []struct{ name, db, coll string }{{"source", fromDB, from}, {"target", toDB, to}} {
		var me *mongoerr.Error
		if err := checkWriteNS(side.db, side.coll); errors.As(err, &me) {
			return mongoerr.Errorf(mongoerr.IllegalOperation, "error with %s namespace: %s", side.name, me.Message)
		}
	}
	switch {
	case fromDB == "admin" && from == "system.version":
		return mongoerr.Errorf(mongoerr.IllegalOperation, "renaming the server configuration collection (admin.system.version) is not allowed")
	case from == "system.views" || to == "system.views":
		return mongoerr.Errorf(mongoerr.IllegalOperation, "renaming system.views collection or renaming to system.views is not allowed")
	case from == "system.js" || to == "system.js":
		return mongoerr.Errorf(mongoerr.IllegalOperation, "renaming system.js collection or renaming to system.js is not allowed")
	case strings.HasPrefix(from, "system.buckets."):
		return mongoerr.Errorf(mongoerr.IllegalOperation, "Renaming system.buckets collections is not allowed")
	}
	return nil
}
