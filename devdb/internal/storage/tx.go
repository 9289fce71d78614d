package storage

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Tx is one storage transaction, valid only inside the View or Update
// callback that received it. Write methods fail in a View transaction. Each
// write method is atomic on its own: when it returns an error (for example a
// *DuplicateKeyError) it has changed nothing, so a caller may continue and
// commit the writes that succeeded (unordered inserts).
type Tx struct {
	e      *Engine
	tx     *bolt.Tx
	maxTS  uint64
	oldest uint64
	// historyStart, when not zero, is the history start this transaction
	// set (Engine.HistoryStart): it trimmed the oplog or wrote its first
	// entry.
	historyStart uint64
	oplogAdded   int64
	docWrites    int

	// skipValidation is set by SkipValidation (bypassDocumentValidation).
	skipValidation bool
	// decodeDocuments is set by DecodeDocuments.
	decodeDocuments bool
	// heads are the headers of the oplog entries written, for Waiters.
	heads []OplogEntry
	// shadow is set in a transaction InShadow runs (always rolled back):
	// oplog entries are captured there instead of being written.
	shadow *shadowState
	// txn, when set, marks the oplog entries written as a committing
	// multi-document transaction's (CommitTxn).
	txn *TxnInfo
	// txnTS and txnWall are the cluster and wall time of the committing
	// transaction's first entry.
	txnTS   bson.Timestamp
	txnWall time.Time
}

// RecordID identifies a stored document within its collection; record ids
// increase in insertion order (MongoDB's natural order).
type RecordID uint64

// IndexSpec is an index definition as listIndexes reports it.
type IndexSpec struct {
	// Name is the index name, e.g. "a_1_b_-1".
	Name string `bson:"name"`
	// Key is the key pattern, e.g. {a: 1, b: -1}.
	Key bson.D `bson:"key"`
	// Unique indexes are enforced on every write.
	Unique bool `bson:"unique,omitempty"`
	// Sparse indexes skip documents that lack every key field.
	Sparse bool `bson:"sparse,omitempty"`
	// PartialFilter restricts the index to matching documents.
	PartialFilter bson.D `bson:"partialFilterExpression,omitempty"`
	// Extra holds the remaining options as given (expireAfterSeconds,
	// collation, …), echoed back by listIndexes.
	Extra bson.D `bson:"extra,omitempty"`
}

// Collection is a catalog entry. Values returned by Tx methods are copies;
// changing them changes nothing stored.
type Collection struct {
	// DB and Name form the namespace.
	DB   string `bson:"db"`
	Name string `bson:"name"`
	// ID keys the collection's data bucket; it never changes, even on rename.
	ID uint64 `bson:"id"`
	// UUID is the collection's UUID (binary subtype 4).
	UUID bson.Binary `bson:"uuid"`
	// Options are the create/collMod options, e.g. changeStreamPreAndPostImages.
	Options bson.D `bson:"options,omitempty"`
	// Indexes lists the indexes, _id_ first.
	Indexes []IndexSpec `bson:"indexes"`
}

// Namespace returns "db.coll".
func (c *Collection) Namespace() string { return c.DB + "." + c.Name }

// IsView reports whether c is a view (its options have viewOn).
func (c *Collection) IsView() bool {
	_, ok := lookupField(c.Options, "viewOn")
	return ok
}

// Images reports whether changeStreamPreAndPostImages is enabled.
func (c *Collection) Images() bool {
	v, ok := lookupField(c.Options, "changeStreamPreAndPostImages")
	if !ok {
		return false
	}
	d, ok := v.(bson.D)
	if !ok {
		return false
	}
	en, _ := lookupField(d, "enabled")
	b, _ := en.(bool)
	return b
}

// IDCollation returns the collation of c's _id index, which is the
// collection's default collation (nil: simple binary comparison).
func (c *Collection) IDCollation() *mql.Collation {
	for _, spec := range c.Indexes {
		if spec.Name == "_id_" {
			return spec.Collation()
		}
	}
	return nil
}

// DefaultCollation returns the collection's default collation (the
// create command's collation option), nil for the simple binary comparison.
func (c *Collection) DefaultCollation() *mql.Collation {
	v, ok := lookupField(c.Options, "collation")
	if !ok {
		return nil
	}
	d, _ := v.(bson.D)
	// The document was validated by create.
	coll, err := mql.ParseCollation(d)
	if err != nil {
		return nil
	}
	return coll
}

// IDIndexSpec is the spec of the _id index every collection has.
func IDIndexSpec() IndexSpec {
	return IndexSpec{Name: "_id_", Key: bson.D{{Key: "_id", Value: int32(1)}}}
}

func catalogKey(db, coll string) []byte { return []byte(db + "\x00" + coll) }

func (t *Tx) writable() error {
	if !t.tx.Writable() {
		return mongoerr.Errorf(mongoerr.IllegalOperation, "write in a read-only transaction")
	}
	return nil
}

// ValidateDBName checks a database name as MongoDB does (InvalidNamespace 73).
func ValidateDBName(db string) error {
	if db == "" {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid empty database name")
	}
	if len(db) >= 64 {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "db name is too long: '%s'", db)
	}
	if strings.ContainsAny(db, "/\\. \"$\x00") {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid database name: '%s'", db)
	}
	return nil
}

// ValidateCollName checks a collection name as MongoDB does for user writes
// (InvalidNamespace 73).
func ValidateCollName(db, coll string) error {
	if err := ValidateDBName(db); err != nil {
		return err
	}
	if coll == "" {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid namespace specified '%s.'", db)
	}
	if strings.ContainsAny(coll, "$\x00") || !utf8.ValidString(coll) || strings.HasPrefix(coll, ".") {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid collection name: %s", coll)
	}
	if len(db)+1+len(coll) > 255 {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Fully qualified namespace is too long. Namespace: %s.%s Max: 255", db, coll)
	}
	return nil
}

// notOplog refuses to create local.oplog.rs, the name under which the
// server serves the oplog: it exists already, so NamespaceExists (48) as
// MongoDB answers a create of it; only devdb's own writes write the oplog.
func notOplog(db, coll string) error {
	if db == "local" && coll == "oplog.rs" {
		return mongoerr.Errorf(mongoerr.NamespaceExists, "Collection local.oplog.rs already exists.")
	}
	return nil
}

// Collection returns the catalog entry of db.coll, or nil when it does not exist.
func (t *Tx) Collection(db, coll string) (*Collection, error) {
	v := t.tx.Bucket(bucketCatalog).Get(catalogKey(db, coll))
	if v == nil {
		return nil, nil
	}
	c := new(Collection)
	if err := bson.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode catalog entry %s.%s: %w", db, coll, err)
	}
	return c, nil
}

// Collections returns the collections of db (every database when db is ""),
// sorted by namespace.
func (t *Tx) Collections(db string) ([]*Collection, error) {
	var out []*Collection
	c := t.tx.Bucket(bucketCatalog).Cursor()
	prefix := []byte(nil)
	if db != "" {
		prefix = []byte(db + "\x00")
	}
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		col := new(Collection)
		if err := bson.Unmarshal(v, col); err != nil {
			return nil, fmt.Errorf("decode catalog entry %q: %w", k, err)
		}
		out = append(out, col)
	}
	return out, nil
}

// DatabaseInfo summarises one database for listDatabases.
type DatabaseInfo struct {
	Name string
	// SizeOnDisk approximates the stored bytes of its documents.
	SizeOnDisk int64
	// Collections is the number of collections.
	Collections int
	// Empty reports that no collection holds a document.
	Empty bool
}

// Databases lists every database that has at least one collection, by name.
func (t *Tx) Databases() ([]DatabaseInfo, error) {
	cols, err := t.Collections("")
	if err != nil {
		return nil, err
	}
	var out []DatabaseInfo
	for _, c := range cols {
		if len(out) == 0 || out[len(out)-1].Name != c.DB {
			out = append(out, DatabaseInfo{Name: c.DB, Empty: true})
		}
		d := &out[len(out)-1]
		n, size := t.Stats(c)
		d.Collections++
		d.SizeOnDisk += size
		if n > 0 {
			d.Empty = false
		}
	}
	return out, nil
}

func (t *Tx) putCatalog(c *Collection) error {
	raw, err := bson.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode catalog entry %s: %w", c.Namespace(), err)
	}
	if err := t.tx.Bucket(bucketCatalog).Put(catalogKey(c.DB, c.Name), raw); err != nil {
		return fmt.Errorf("write catalog entry %s: %w", c.Namespace(), err)
	}
	return nil
}

func (t *Tx) dataBucket(c *Collection) *bolt.Bucket {
	return t.tx.Bucket(bucketData).Bucket(u64(c.ID))
}

func newUUID() (bson.Binary, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return bson.Binary{}, fmt.Errorf("generate uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return bson.Binary{Subtype: bson.TypeBinaryUUID, Data: u[:]}, nil
}

// CreateCollection creates db.coll with the given options (as sent to
// create, without the command name) and appends a "create" oplog entry. An
// existing collection is NamespaceExists (48).
func (t *Tx) CreateCollection(db, coll string, options bson.D) (*Collection, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	if err := ValidateCollName(db, coll); err != nil {
		return nil, err
	}
	if err := notOplog(db, coll); err != nil {
		return nil, err
	}
	if existing, err := t.Collection(db, coll); err != nil {
		return nil, err
	} else if existing != nil {
		return nil, mongoerr.Errorf(mongoerr.NamespaceExists, "Collection %s.%s already exists.", db, coll)
	}
	cat := t.tx.Bucket(bucketCatalog)
	id, err := cat.NextSequence()
	if err != nil {
		return nil, fmt.Errorf("allocate collection id: %w", err)
	}
	uuid, err := newUUID()
	if err != nil {
		return nil, err
	}
	idSpec := IDIndexSpec()
	if cv, ok := lookupField(options, "collation"); ok {
		// The collection's default collation is its _id index's collation.
		idSpec.Extra = bson.D{{Key: "collation", Value: cv}}
	}
	c := &Collection{DB: db, Name: coll, ID: id, UUID: uuid, Options: options, Indexes: []IndexSpec{idSpec}}
	b, err := t.tx.Bucket(bucketData).CreateBucket(u64(id))
	if err != nil {
		return nil, fmt.Errorf("create collection bucket: %w", err)
	}
	if _, err := b.CreateBucket(keyDocs); err != nil {
		return nil, fmt.Errorf("create document bucket: %w", err)
	}
	if _, err := b.CreateBucket(indexBucketName("_id_")); err != nil {
		return nil, fmt.Errorf("create _id index bucket: %w", err)
	}
	if err := t.putCatalog(c); err != nil {
		return nil, err
	}
	extra := append(bson.D{{Key: "idIndex", Value: indexSpecDoc(idSpec)}}, options...)
	view := c.IsView()
	if view {
		// A view has no _id index (create event: {viewOn, pipeline}).
		extra = options
	}
	if err := t.appendOplog(&OplogEntry{Op: "create", DB: db, Coll: coll, UUID: uuid, Extra: extra, View: view}); err != nil {
		return nil, err
	}
	return c, nil
}

// EnsureCollection returns db.coll, creating it (as an implicit create) when missing.
func (t *Tx) EnsureCollection(db, coll string) (*Collection, error) {
	c, err := t.Collection(db, coll)
	if err != nil || c != nil {
		return c, err
	}
	return t.CreateCollection(db, coll, nil)
}

// DropCollection drops db.coll with its documents and indexes and appends a
// "drop" entry; it reports false (and does nothing) when the collection does
// not exist.
func (t *Tx) DropCollection(db, coll string) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	c, err := t.Collection(db, coll)
	if err != nil || c == nil {
		return false, err
	}
	if err := t.dropCollection(c); err != nil {
		return false, err
	}
	return true, nil
}

func (t *Tx) dropCollection(c *Collection) error {
	if err := t.removeCollection(c); err != nil {
		return err
	}
	return t.appendOplog(&OplogEntry{Op: "drop", DB: c.DB, Coll: c.Name, UUID: c.UUID, View: c.IsView()})
}

// removeCollection deletes c's documents, indexes and catalog entry,
// without an oplog entry.
func (t *Tx) removeCollection(c *Collection) error {
	if err := t.tx.Bucket(bucketData).DeleteBucket(u64(c.ID)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return fmt.Errorf("drop %s: %w", c.Namespace(), err)
	}
	if err := t.tx.Bucket(bucketCatalog).Delete(catalogKey(c.DB, c.Name)); err != nil {
		return fmt.Errorf("drop %s: %w", c.Namespace(), err)
	}
	return nil
}

// DropDatabase drops every collection of db (a "drop" entry each) and then
// appends "dropDatabase". It reports false when db had no collection.
func (t *Tx) DropDatabase(db string) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	cols, err := t.Collections(db)
	if err != nil || len(cols) == 0 {
		return false, err
	}
	for _, c := range cols {
		if err := t.dropCollection(c); err != nil {
			return false, err
		}
	}
	return true, t.appendOplog(&OplogEntry{Op: "dropDatabase", DB: db})
}

// RenameCollection renames fromDB.from to toDB.to, keeping its UUID,
// documents and indexes, and appends a "rename" entry (whose Extra names
// the replaced target's UUID as dropTarget when dropTarget replaces an
// existing target, which gets no entry of its own). Errors:
// NamespaceNotFound (26) for a missing source, NamespaceExists (48) for an
// existing target without dropTarget, IllegalOperation (20) for a rename
// onto itself.
func (t *Tx) RenameCollection(fromDB, from, toDB, to string, dropTarget bool) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := ValidateCollName(toDB, to); err != nil {
		return err
	}
	if err := notOplog(toDB, to); err != nil {
		return err
	}
	src, err := t.Collection(fromDB, from)
	if err != nil {
		return err
	}
	if src == nil {
		return mongoerr.Errorf(mongoerr.NamespaceNotFound, "Source collection %s.%s does not exist", fromDB, from)
	}
	if fromDB == toDB && from == to {
		return mongoerr.Errorf(mongoerr.IllegalOperation, "Can't rename a collection to itself")
	}
	dst, err := t.Collection(toDB, to)
	if err != nil {
		return err
	}
	extra := bson.D{{Key: "to", Value: bson.D{{Key: "db", Value: toDB}, {Key: "coll", Value: to}}}}
	if dst != nil {
		if !dropTarget {
			return mongoerr.Errorf(mongoerr.NamespaceExists, "Target namespace exists")
		}
		// As MongoDB, which logs one renameCollection entry naming the
		// dropped target's UUID: no separate drop entry or event.
		if err := t.removeCollection(dst); err != nil {
			return err
		}
		extra = append(extra, bson.E{Key: "dropTarget", Value: dst.UUID})
	}
	if err := t.tx.Bucket(bucketCatalog).Delete(catalogKey(fromDB, from)); err != nil {
		return fmt.Errorf("rename %s: %w", src.Namespace(), err)
	}
	oldDB, oldName := src.DB, src.Name
	src.DB, src.Name = toDB, to
	if err := t.putCatalog(src); err != nil {
		return err
	}
	return t.appendOplog(&OplogEntry{Op: "rename", DB: oldDB, Coll: oldName, UUID: src.UUID, ToDB: toDB, ToColl: to, Extra: extra})
}

// ModifyCollection merges options (collMod fields such as
// changeStreamPreAndPostImages) into db.coll's options and appends a "modify"
// entry carrying them and the options before the change (StateBefore). A
// new validator also stores validationLevel and validationAction, with
// their defaults (strict, error) when the collection has none. A missing collection is NamespaceNotFound (26).
func (t *Tx) ModifyCollection(db, coll string, options bson.D) (*Collection, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	c, err := t.Collection(db, coll)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, mongoerr.Errorf(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", db, coll)
	}
	before := bson.D{{Key: "collectionOptions", Value: append(bson.D{{Key: "uuid", Value: c.UUID}}, c.Options...)}}
	c.Options = slices.Clone(c.Options)
	for _, o := range options {
		replaced := false
		for i := range c.Options {
			if c.Options[i].Key == o.Key {
				c.Options[i].Value, replaced = o.Value, true
			}
		}
		if !replaced {
			c.Options = append(c.Options, o)
		}
	}
	if _, ok := lookupField(options, "validator"); ok {
		// As MongoDB's setValidator, which stores the validation level and
		// action (their defaults when unset) along with a new validator.
		for _, def := range []bson.E{{Key: "validationLevel", Value: "strict"}, {Key: "validationAction", Value: "error"}} {
			if _, ok := lookupField(c.Options, def.Key); !ok {
				c.Options = append(c.Options, def)
			}
		}
	}
	if err := t.putCatalog(c); err != nil {
		return nil, err
	}
	return c, t.appendOplog(&OplogEntry{Op: "modify", DB: db, Coll: coll, UUID: c.UUID, Extra: options, StateBefore: before})
}

func indexBucketName(name string) []byte { return []byte("i:" + name) }

// indexSpecDoc renders spec as listIndexes shows it: {v: 2, key, name, …}.
func indexSpecDoc(spec IndexSpec) bson.D {
	d := bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: spec.Key}, {Key: "name", Value: spec.Name}}
	if spec.Unique {
		d = append(d, bson.E{Key: "unique", Value: true})
	}
	if spec.Sparse {
		d = append(d, bson.E{Key: "sparse", Value: true})
	}
	if spec.PartialFilter != nil {
		d = append(d, bson.E{Key: "partialFilterExpression", Value: spec.PartialFilter})
	}
	return append(d, spec.Extra...)
}

// IndexSpecDocument renders spec as listIndexes and change events show it.
func IndexSpecDocument(spec IndexSpec) bson.D { return indexSpecDoc(spec) }

// CreateIndex adds spec to c (which must be current in this transaction) and
// appends a "createIndexes" entry. It reports false when an identical index
// already exists. Unique indexes are built from the existing documents and
// fail with *DuplicateKeyError when they already violate uniqueness. Same
// name with another key is IndexKeySpecsConflict (86); same key with another
// name or options is IndexOptionsConflict (85).
func (t *Tx) CreateIndex(c *Collection, spec IndexSpec) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	for _, ex := range c.Indexes {
		sameKey := bytes.Equal(KeyString(ex.Key), KeyString(spec.Key)) && keyNamesEqual(ex.Key, spec.Key)
		if ex.Name == spec.Name {
			if !sameKey {
				return false, mongoerr.Errorf(mongoerr.IndexKeySpecsConflict, "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: %s, existing index: %s",
					mql.FormatValue(indexSpecDoc(spec)), mql.FormatValue(indexSpecDoc(ex)))
			}
			if ex.Unique != spec.Unique || ex.Sparse != spec.Sparse || !bytes.Equal(KeyString(ex.PartialFilter), KeyString(spec.PartialFilter)) || !mql.SameCollation(ex.Collation(), spec.Collation()) {
				return false, mongoerr.Errorf(mongoerr.IndexOptionsConflict, "An equivalent index already exists with the same name but different options. Requested index: %s, existing index: %s",
					mql.FormatValue(indexSpecDoc(spec)), mql.FormatValue(indexSpecDoc(ex)))
			}
			return false, nil
		}
		if sameKey && ex.Unique == spec.Unique && ex.Sparse == spec.Sparse && bytes.Equal(KeyString(ex.PartialFilter), KeyString(spec.PartialFilter)) && mql.SameCollation(ex.Collation(), spec.Collation()) {
			return false, mongoerr.Errorf(mongoerr.IndexOptionsConflict, "Index already exists with a different name: %s", ex.Name)
		}
	}
	if spec.PartialFilter != nil {
		if _, err := t.e.partialMatcher(spec.PartialFilter); err != nil {
			return false, err
		}
	}
	if spec.Unique {
		b := t.dataBucket(c)
		ib, err := b.CreateBucket(indexBucketName(spec.Name))
		if err != nil {
			return false, fmt.Errorf("create index bucket %s: %w", spec.Name, err)
		}
		docs := b.Bucket(keyDocs)
		cur := docs.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if v == nil {
				if v, err = cursorValue(docs, k, v); err != nil {
					return false, t.damagedDoc(c, k, err)
				}
			}
			var doc bson.D
			if err := bson.Unmarshal(v, &doc); err != nil {
				return false, fmt.Errorf("build index %s: decode document: %w", spec.Name, err)
			}
			keys, ok, err := t.indexKeys(spec, doc)
			if err != nil {
				return false, err
			}
			if !ok {
				continue
			}
			for _, key := range keys {
				if ib.Get(key.enc) != nil {
					return false, &DuplicateKeyError{DB: c.DB, Coll: c.Name, Index: spec.Name, KeyPattern: spec.Key, KeyValue: key.vals}
				}
				if err := ib.Put(key.enc, k); err != nil {
					return false, fmt.Errorf("build index %s: %w", spec.Name, err)
				}
			}
		}
	}
	c.Indexes = append(c.Indexes, spec)
	if err := t.putCatalog(c); err != nil {
		return false, err
	}
	return true, t.appendOplog(&OplogEntry{Op: "createIndexes", DB: c.DB, Coll: c.Name, UUID: c.UUID,
		Extra: bson.D{{Key: "indexes", Value: bson.A{indexSpecDoc(spec)}}}})
}

func keyNamesEqual(a, b bson.D) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key {
			return false
		}
	}
	return true
}

// DropIndex removes the index called name from c and appends a
// "dropIndexes" entry. The _id index cannot be dropped (InvalidOptions 72);
// an unknown name is IndexNotFound (27).
func (t *Tx) DropIndex(c *Collection, name string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if name == "_id_" {
		return mongoerr.Errorf(mongoerr.InvalidOptions, "cannot drop _id index")
	}
	for i, ex := range c.Indexes {
		if ex.Name != name {
			continue
		}
		if ex.Unique {
			if err := t.dataBucket(c).DeleteBucket(indexBucketName(name)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return fmt.Errorf("drop index %s: %w", name, err)
			}
		}
		c.Indexes = append(c.Indexes[:i:i], c.Indexes[i+1:]...)
		if err := t.putCatalog(c); err != nil {
			return err
		}
		return t.appendOplog(&OplogEntry{Op: "dropIndexes", DB: c.DB, Coll: c.Name, UUID: c.UUID,
			Extra: bson.D{{Key: "indexes", Value: bson.A{indexSpecDoc(ex)}}}})
	}
	return mongoerr.Errorf(mongoerr.IndexNotFound, "index not found with name [%s]", name)
}

// indexKeys returns the keys doc contributes to a unique index; ok is false
// when the index (sparse or partial) skips the document.
func (t *Tx) indexKeys(spec IndexSpec, doc bson.D) ([]indexKey, bool, error) {
	if spec.PartialFilter != nil {
		m, err := t.e.partialMatcher(spec.PartialFilter)
		if err != nil {
			return nil, false, err
		}
		if !m(doc) {
			return nil, false, nil
		}
	}
	if spec.Name == "_id_" {
		id, _ := lookupField(doc, "_id")
		return []indexKey{{enc: KeyStringCollation(id, spec.Collation()), vals: bson.D{{Key: "_id", Value: id}}}}, true, nil
	}
	return documentKeys(doc, spec.Key, spec.Sparse, spec.Collation())
}

// Collation returns the index's collation (from the "collation" option
// createIndexes recorded in Extra), nil for the simple binary comparison.
// Index keys of string values are their collation keys, so a unique index
// compares strings under its collation, as in MongoDB.
func (spec IndexSpec) Collation() *mql.Collation {
	v, ok := lookupField(spec.Extra, "collation")
	if !ok {
		return nil
	}
	d, _ := v.(bson.D)
	// The document was validated when the index was created.
	c, err := mql.ParseCollation(d)
	if err != nil {
		return nil
	}
	return c
}

// partialMatcher compiles (and caches) a partialFilterExpression.
func (e *Engine) partialMatcher(filter bson.D) (func(bson.D) bool, error) {
	key := string(KeyString(filter))
	e.filterMu.Lock()
	defer e.filterMu.Unlock()
	if m, ok := e.filters[key]; ok {
		return m, nil
	}
	m, err := e.opts.CompileFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("compile partialFilterExpression: %w", err)
	}
	if len(e.filters) >= 1024 {
		clear(e.filters)
	}
	e.filters[key] = m
	return m, nil
}

// Stats returns c's document count and the total BSON size of its documents.
func (t *Tx) Stats(c *Collection) (count, size int64) {
	b := t.dataBucket(c)
	if b == nil {
		return 0, 0
	}
	v := b.Get(keyStats)
	if len(v) != 16 {
		return 0, 0
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
}

func (t *Tx) addStats(c *Collection, dn, dsize int64) error {
	n, size := t.Stats(c)
	v := binary.BigEndian.AppendUint64(u64(uint64(n+dn)), uint64(size+dsize))
	if err := t.dataBucket(c).Put(keyStats, v); err != nil {
		return fmt.Errorf("update collection stats: %w", err)
	}
	return nil
}
