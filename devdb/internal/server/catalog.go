package server

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// genericCommandFields are command fields every command accepts.
var genericCommandFields = map[string]bool{
	"$db": true, "lsid": true, "txnNumber": true, "$clusterTime": true, "$readPreference": true,
	"readConcern": true, "writeConcern": true, "apiVersion": true, "apiStrict": true,
	"apiDeprecationErrors": true, "comment": true, "maxTimeMS": true, "autocommit": true,
	"startTransaction": true, "$audit": true, "$client": true, "mayBypassWriteBlocking": true,
}

// checkPreAndPostImages validates a changeStreamPreAndPostImages option.
func checkPreAndPostImages(cmd string, v any) error {
	d, ok := v.(bson.D)
	if !ok {
		return mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.changeStreamPreAndPostImages' is the wrong type '%s', expected type 'object'", cmd, mql.TypeName(v))
	}
	en, ok := fieldOf(d, "enabled")
	if !ok {
		return mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field '%s.changeStreamPreAndPostImages.enabled' is missing but a required field", cmd)
	}
	if _, ok := en.(bool); !ok {
		return mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.changeStreamPreAndPostImages.enabled' is the wrong type '%s', expected type 'bool'", cmd, mql.TypeName(en))
	}
	for _, e := range d {
		if e.Key != "enabled" {
			return mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '%s.changeStreamPreAndPostImages.%s' is an unknown field.", cmd, e.Key)
		}
	}
	return nil
}

// cmdCreate answers create. Supported options: changeStreamPreAndPostImages,
// validators, collation (the collection's or view's default collation,
// stored as the full collation document; {locale: "simple"} stores
// nothing), views (and the ignorable storageEngine/indexOptionDefaults);
// capped, time-series and clustered collections are refused with
// CommandNotSupported rather than silently not enforced.
func (s *Server) cmdCreate(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	var opts bson.D
	isView := false
	var collation bson.D
	for _, e := range req.Body[1:] {
		switch e.Key {
		case "changeStreamPreAndPostImages":
			if err := checkPreAndPostImages("create", e.Value); err != nil {
				return nil, err
			}
			opts = append(opts, e)
		case "storageEngine", "indexOptionDefaults":
			opts = append(opts, e)
		case "validator", "validationLevel", "validationAction":
			if err := checkValidationOption("create", e); err != nil {
				return nil, err
			}
			opts = append(opts, e)
		case "capped":
			if b, _ := boolValue("create.capped", e.Value); b {
				return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support capped collections")
			}
		case "size", "max", "autoIndexId", "flags":
		case "timeseries", "expireAfterSeconds":
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support time-series collections")
		case "clusteredIndex":
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support clustered collections")
		case "viewOn", "pipeline":
			isView = true
		case "collation":
			if collation, err = collationOption("create.collation", e.Value); err != nil {
				return nil, err
			}
		case "encryptedFields":
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support queryable encryption")
		default:
			if !genericCommandFields[e.Key] {
				return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field 'create.%s' is an unknown field.", e.Key)
			}
		}
	}
	if err := checkCreateNS(req.DB, coll); err != nil {
		return nil, err
	}
	if isView && coll == "system.views" {
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "Cannot create a view called '%s': this is a reserved system namespace", coll)
	}
	if !isView {
		if err := checkTxnCreateNS(req, req.DB, coll); err != nil {
			return nil, err
		}
	}
	if collation != nil && !isView {
		opts = append(opts, bson.E{Key: "collation", Value: collation})
		s.hasCollations.Store(true)
	}
	if isView {
		if len(opts) > 0 {
			return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "options other than viewOn and pipeline cannot be used with a view")
		}
		if _, ok := fieldOf(req.Body, "viewOn"); !ok {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "'pipeline' requires 'viewOn' to also be specified")
		}
		if opts, err = viewOptions(req.DB, req.Body); err != nil {
			return nil, err
		}
		if collation != nil {
			opts = append(opts, bson.E{Key: "collation", Value: collation})
		}
		s.hasViews.Store(true)
	}
	return s.execWrite(req, "create", coll, nil, func(tx *storage.Tx) (bson.D, error) {
		if isView {
			if err := checkViewSourceCollation(tx, req.DB, coll, opts); err != nil {
				return nil, err
			}
		}
		_, err := tx.CreateCollection(req.DB, coll, opts)
		return bson.D{}, err
	})
}

// checkViewSourceCollation refuses a view defined on another view with a
// different collation (OptionNotSupportedOnView 167), as MongoDB does; a
// view on a collection need not share the collection's default.
func checkViewSourceCollation(tx *storage.Tx, db, view string, opts bson.D) error {
	viewOn, _, _ := viewDefinition(opts)
	src, err := tx.Collection(db, viewOn)
	if err != nil || src == nil {
		return err
	}
	if _, _, ok := viewDefinition(src.Options); !ok {
		return nil
	}
	self := storage.Collection{Options: opts}
	if !mql.SameCollation(self.DefaultCollation(), src.DefaultCollation()) {
		return mongoerr.Errorf(mongoerr.OptionNotSupportedOnView, "View %s.%s has a collation that does not match the collation of view %s.%s", db, view, db, viewOn)
	}
	return nil
}

// cmdDrop answers drop: {nIndexesWas, ns}. A missing collection is
// NamespaceNotFound (26) "ns not found", as MongoDB 6.0 reports (drivers
// ignore it).
func (s *Server) cmdDrop(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	if isOplog(req.DB, coll) {
		return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "can't drop live oplog while replicating")
	}
	return s.execWrite(req, "drop", coll, nil, func(tx *storage.Tx) (bson.D, error) {
		c, err := tx.Collection(req.DB, coll)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, mongoerr.Errorf(mongoerr.NamespaceNotFound, "ns not found")
		}
		nIndexes := len(c.Indexes)
		if _, err := tx.DropCollection(req.DB, coll); err != nil {
			return nil, err
		}
		return bson.D{{Key: "nIndexesWas", Value: int32(nIndexes)}, {Key: "ns", Value: req.DB + "." + coll}}, nil
	})
}

// cmdDropDatabase answers dropDatabase: {dropped: db} when the database
// existed, {} otherwise. As on a MongoDB replica-set member, admin and local
// cannot be dropped (IllegalOperation 20).
func (s *Server) cmdDropDatabase(_ context.Context, req *Request) (bson.D, error) {
	if err := storage.ValidateDBName(req.DB); err != nil {
		return nil, dataErr(err)
	}
	switch req.DB {
	case "admin":
		return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "Dropping the 'admin' database is prohibited.")
	case "local":
		return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "Cannot drop 'local' database while replication is active")
	}
	var dropped bool
	err := s.store.Update(func(tx *storage.Tx) error {
		var err error
		dropped, err = tx.DropDatabase(req.DB)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("drop database %s: %w", req.DB, dataErr(err))
	}
	if err := s.finishWrite(req); err != nil {
		return nil, err
	}
	if !dropped {
		return bson.D{}, nil
	}
	return bson.D{{Key: "dropped", Value: req.DB}}, nil
}

// systemDatabases are the databases a MongoDB replica-set member always
// has, with the collections each holds there: admin (system.version),
// config (system.sessions, transactions) and local (oplog.rs, startup_log,
// replset.election, replset.minvalid, system.replset).
func systemDatabases() [3]systemDatabase {
	return [3]systemDatabase{{"admin", 1}, {"config", 2}, {"local", 5}}
}

// systemDatabase is a database that always exists and how many collections
// it holds on MongoDB.
type systemDatabase struct {
	name        string
	collections int
}

// pageSize is the allocation unit listDatabases' sizeOnDisk models: every
// collection occupies at least one page.
const pageSize = 4096

// cmdListDatabases answers listDatabases {filter?, nameOnly?,
// authorizedDatabases?}: {databases: [{name, sizeOnDisk, empty}], totalSize,
// totalSizeMb}, by name. As on a MongoDB replica set, admin, config and local
// always exist and are never empty: config's size includes the retryable-write
// session table (config.transactions) and local's the oplog (local.oplog.rs).
// sizeOnDisk approximates allocated storage: the documents' BSON size rounded
// up to 4 KiB pages, plus one page per collection. With nameOnly the filter
// sees only {name}, as in MongoDB.
func (s *Server) cmdListDatabases(_ context.Context, req *Request) (bson.D, error) {
	filter, _, err := docArg(req, "filter")
	if err != nil {
		return nil, err
	}
	nameOnly, err := boolArg(req, "nameOnly", false)
	if err != nil {
		return nil, err
	}
	if _, err := boolArg(req, "authorizedDatabases", false); err != nil {
		return nil, err
	}
	f, err := mql.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	var infos []storage.DatabaseInfo
	var oplogBytes, sessionBytes int64
	if err := s.store.View(func(tx *storage.Tx) error {
		var err error
		infos, err = tx.Databases()
		oplogBytes = tx.OplogSize()
		_, sessionBytes = tx.SessionStats()
		return err
	}); err != nil {
		return nil, fmt.Errorf("list databases: %w", dataErr(err))
	}
	infos = withSystemDatabases(infos, map[string]int64{"config": sessionBytes, "local": oplogBytes})
	dbs := bson.A{}
	var total int64
	for _, in := range infos {
		size := (in.SizeOnDisk+pageSize-1)/pageSize*pageSize + int64(in.Collections)*pageSize
		doc := bson.D{{Key: "name", Value: in.Name}}
		if !nameOnly {
			doc = append(doc, bson.E{Key: "sizeOnDisk", Value: size}, bson.E{Key: "empty", Value: in.Empty})
		}
		m, err := f.MatchErr(doc)
		if err != nil {
			return nil, err
		}
		if !m {
			continue
		}
		total += size
		dbs = append(dbs, doc)
	}
	reply := bson.D{{Key: "databases", Value: dbs}}
	if !nameOnly {
		reply = append(reply, bson.E{Key: "totalSize", Value: total}, bson.E{Key: "totalSizeMb", Value: total >> 20})
	}
	return reply, nil
}

// withSystemDatabases merges the system databases into infos (sorted by
// name), adding their implicit collections and the sizes in extra.
func withSystemDatabases(infos []storage.DatabaseInfo, extra map[string]int64) []storage.DatabaseInfo {
	out := slices.Clone(infos)
	for _, sys := range systemDatabases() {
		i, found := slices.BinarySearchFunc(out, sys.name, func(d storage.DatabaseInfo, name string) int {
			return strings.Compare(d.Name, name)
		})
		if !found {
			out = slices.Insert(out, i, storage.DatabaseInfo{Name: sys.name})
		}
		out[i].Collections += sys.collections
		out[i].SizeOnDisk += extra[sys.name]
		out[i].Empty = false
	}
	return out
}

// collectionInfo renders c as listCollections does.
func collectionInfo(c *storage.Collection, nameOnly bool) bson.D {
	if _, _, ok := viewDefinition(c.Options); ok {
		d := bson.D{{Key: "name", Value: c.Name}, {Key: "type", Value: "view"}}
		if nameOnly {
			return d
		}
		return append(d, bson.E{Key: "options", Value: c.Options}, bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: true}}})
	}
	d := bson.D{{Key: "name", Value: c.Name}, {Key: "type", Value: "collection"}}
	if nameOnly {
		return d
	}
	opts := c.Options
	if opts == nil {
		opts = bson.D{}
	}
	return append(d,
		bson.E{Key: "options", Value: opts},
		bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}, {Key: "uuid", Value: c.UUID}}},
		bson.E{Key: "idIndex", Value: storage.IndexSpecDocument(idIndexOf(c))})
}

// idIndexOf returns c's _id index (with the collection's default collation).
func idIndexOf(c *storage.Collection) storage.IndexSpec {
	for _, ix := range c.Indexes {
		if ix.Name == "_id_" {
			return ix
		}
	}
	return storage.IDIndexSpec()
}

// cmdListCollections answers listCollections {filter?, nameOnly?,
// authorizedCollections?} with a cursor over collection descriptions.
func (s *Server) cmdListCollections(ctx context.Context, req *Request) (bson.D, error) {
	if err := storage.ValidateDBName(req.DB); err != nil {
		return nil, dataErr(err)
	}
	filter, _, err := docArg(req, "filter")
	if err != nil {
		return nil, err
	}
	nameOnly, err := boolArg(req, "nameOnly", false)
	if err != nil {
		return nil, err
	}
	f, err := mql.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	var cols []*storage.Collection
	if err := s.store.View(func(tx *storage.Tx) error {
		var err error
		cols, err = tx.Collections(req.DB)
		return err
	}); err != nil {
		return nil, fmt.Errorf("list collections of %s: %w", req.DB, dataErr(err))
	}
	var docs []bson.D
	for _, c := range cols {
		// The filter sees the full description even with nameOnly.
		m, err := f.MatchErr(collectionInfo(c, false))
		if err != nil {
			return nil, err
		}
		if m {
			docs = append(docs, collectionInfo(c, nameOnly))
		}
	}
	if req.DB == oplogDB {
		// The oplog, which is no catalog entry (see oplogStream).
		m, err := f.MatchErr(s.oplogInfo(false))
		if err != nil {
			return nil, err
		}
		if m {
			i, _ := slices.BinarySearchFunc(docs, oplogColl, func(d bson.D, name string) int {
				n, _ := fieldOf(d, "name")
				other, _ := n.(string)
				return strings.Compare(other, name)
			})
			docs = slices.Insert(docs, i, s.oplogInfo(nameOnly))
		}
	}
	return s.sliceCursor(ctx, req, req.DB+".$cmd.listCollections", docs)
}

// sliceCursor returns a cursor reply over docs, honouring the command's
// cursor.batchSize.
func (s *Server) sliceCursor(ctx context.Context, req *Request, ns string, docs []bson.D) (bson.D, error) {
	opts, err := cursorBatchOptions(req)
	if err != nil {
		return nil, err
	}
	return s.cursorFirstBatch(ctx, ns, newSeqSource(func(yield func(bson.D, error) bool) {
		for _, d := range docs {
			if !yield(d, nil) {
				return
			}
		}
	}), opts)
}

// cursorBatchOptions reads cursor: {batchSize} of a command.
func cursorBatchOptions(req *Request) (CursorOptions, error) {
	cur, ok, err := docArg(req, "cursor")
	if err != nil || !ok {
		return CursorOptions{}, err
	}
	v, ok := fieldOf(cur, "batchSize")
	if !ok || v == nil {
		return CursorOptions{}, nil
	}
	n, err := sizeValue(req.Name+".cursor.batchSize", "batchSize", v)
	if err != nil {
		return CursorOptions{}, err
	}
	if n == 0 {
		return CursorOptions{ZeroBatch: true}, nil
	}
	return CursorOptions{BatchSize: int(min(n, 1<<31-1))}, nil
}

// splitNamespace splits "db.coll".
func splitNamespace(ns string) (string, string, bool) {
	db, coll, ok := strings.Cut(ns, ".")
	return db, coll, ok && db != "" && coll != ""
}

// cmdRenameCollection answers renameCollection {to, dropTarget?} on admin.
func (s *Server) cmdRenameCollection(_ context.Context, req *Request) (bson.D, error) {
	from, ok := req.Body[0].Value.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'renameCollection.renameCollection' is the wrong type '%s', expected type 'string'", mql.TypeName(req.Body[0].Value))
	}
	tv, ok := fieldOf(req.Body, "to")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'renameCollection.to' is missing but a required field")
	}
	to, ok := tv.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'renameCollection.to' is the wrong type '%s', expected type 'string'", mql.TypeName(tv))
	}
	dropTarget, err := boolArg(req, "dropTarget", false)
	if err != nil {
		return nil, err
	}
	fromDB, fromColl, ok := splitNamespace(from)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid source namespace: %s", from)
	}
	toDB, toColl, ok := splitNamespace(to)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid target namespace: %s", to)
	}
	if err := checkRenameNS(fromDB, fromColl, toDB, toColl); err != nil {
		return nil, err
	}
	err = s.store.Update(func(tx *storage.Tx) error {
		return tx.RenameCollection(fromDB, fromColl, toDB, toColl, dropTarget)
	})
	if err != nil {
		return nil, fmt.Errorf("rename %s to %s: %w", from, to, dataErr(err))
	}
	return bson.D{}, s.finishWrite(req)
}

// cmdCollMod answers collMod {changeStreamPreAndPostImages}; other
// modifications are refused with CommandNotSupported.
func (s *Server) cmdCollMod(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	var opts bson.D
	for _, e := range req.Body[1:] {
		switch {
		case e.Key == "changeStreamPreAndPostImages":
			if err := checkPreAndPostImages("collMod", e.Value); err != nil {
				return nil, err
			}
			opts = append(opts, e)
		case genericCommandFields[e.Key]:
		case e.Key == "validator" || e.Key == "validationLevel" || e.Key == "validationAction":
			if err := checkValidationOption("collMod", e); err != nil {
				return nil, err
			}
			opts = append(opts, e)
		case e.Key == "index" || e.Key == "viewOn" || e.Key == "pipeline" || e.Key == "expireAfterSeconds" ||
			e.Key == "timeseries" || e.Key == "cappedSize" || e.Key == "cappedMax":
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb's collMod supports only changeStreamPreAndPostImages and validation options, not %s", e.Key)
		default:
			return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field 'collMod.%s' is an unknown field.", e.Key)
		}
	}
	return s.execWrite(req, "collMod", coll, nil, func(tx *storage.Tx) (bson.D, error) {
		_, err := tx.ModifyCollection(req.DB, coll, opts)
		return bson.D{}, err
	})
}

// checkValidationOption checks a validator, validationLevel or
// validationAction option of create or collMod. A validator is a query
// filter (compiled here so that an unknown operator fails the command).
func checkValidationOption(cmd string, e bson.E) error {
	switch e.Key {
	case "validator":
		d, ok := e.Value.(bson.D)
		if !ok {
			return mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.validator' is the wrong type '%s', expected type 'object'", cmd, mql.TypeName(e.Value))
		}
		if _, err := mql.CompileFilter(d); err != nil {
			return err
		}
	case "validationLevel", "validationAction":
		v, _ := e.Value.(string)
		allowed := []string{"off", "strict", "moderate"}
		if e.Key == "validationAction" {
			allowed = []string{"error", "warn"}
		}
		if !slices.Contains(allowed, v) {
			return mongoerr.Errorf(mongoerr.BadValue, "Enumeration value '%v' for field '%s.%s' is not a valid value.", e.Value, cmd, e.Key)
		}
	}
	return nil
}
