package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// queryCollation is the collation option of a command or write statement:
// coll is the parsed collation (nil for {locale: "simple"}) and given
// reports whether the option was sent at all. An explicit collation, even
// the simple one, overrides the collection's default; without one the
// operation inherits the default (see resolve).
type queryCollation struct {
	coll  *mql.Collation
	given bool
}

// collationArg parses the optional collation field of a command (a
// document validated as MongoDB validates it; another type is
// TypeMismatch 14).
func collationArg(req *Request) (queryCollation, error) {
	d, ok, err := docArg(req, "collation")
	if err != nil || !ok {
		return queryCollation{}, err
	}
	c, err := mql.ParseCollation(d)
	if err != nil {
		return queryCollation{}, err
	}
	return queryCollation{coll: c, given: true}, nil
}

// stmtCollation parses the optional collation field of one update or
// delete statement st; field names the statements array in errors
// ("update.updates", "delete.deletes").
func stmtCollation(st bson.D, field string) (queryCollation, error) {
	v, ok := fieldOf(st, "collation")
	if !ok || v == nil {
		return queryCollation{}, nil
	}
	d, ok := v.(bson.D)
	if !ok {
		return queryCollation{}, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.collation' is the wrong type '%s', expected type 'object'", field, mql.TypeName(v))
	}
	c, err := mql.ParseCollation(d)
	if err != nil {
		return queryCollation{}, err
	}
	return queryCollation{coll: c, given: true}, nil
}

// resolve returns the collation an operation on c uses: the one given, or
// c's default collation (nil when c is nil or has none).
func (q queryCollation) resolve(c *storage.Collection) *mql.Collation {
	if q.given || c == nil {
		return q.coll
	}
	return c.DefaultCollation()
}

// commandCollation returns the collation a command on req.DB.coll uses: its
// collation argument, else the collection's default (resolveCollation).
func (s *Server) commandCollation(req *Request, coll string) (*mql.Collation, error) {
	qc, err := collationArg(req)
	if err != nil {
		return nil, err
	}
	return s.resolveCollation(req.DB, coll, qc)
}

// resolveCollation is resolve for db.coll read from the catalog, for
// commands that compile their query before opening a transaction. While no
// collection has a default collation it reads nothing.
func (s *Server) resolveCollation(db, coll string, q queryCollation) (*mql.Collation, error) {
	if q.given || !s.hasCollations.Load() {
		return q.coll, nil
	}
	var out *mql.Collation
	err := s.store.View(func(tx *storage.Tx) error {
		c, err := tx.Collection(db, coll)
		if err != nil {
			return err
		}
		out = q.resolve(c)
		return nil
	})
	if err != nil {
		return nil, dataErr(err)
	}
	return out, nil
}

// collationSensitive reports whether comparing v under a collation can
// differ from comparing it bytewise: v is or contains a string or symbol.
// An index keyed under one collation serves an equality on such a value
// only for a query with the same collation.
func collationSensitive(v any) bool {
	switch x := v.(type) {
	case string, bson.Symbol:
		return true
	case bson.D:
		for _, e := range x {
			if collationSensitive(e.Value) {
				return true
			}
		}
	case bson.A:
		for _, e := range x {
			if collationSensitive(e) {
				return true
			}
		}
	}
	return false
}

// collationOption validates the collation option of create or
// createIndexes and returns the document to store: the full collation
// document (every field, as listCollections and listIndexes show it), or
// nil for {locale: "simple"}, which is the same as no collation.
func collationOption(field string, v any) (bson.D, error) {
	d, ok := v.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'object'", field, mql.TypeName(v))
	}
	c, err := mql.ParseCollation(d)
	if err != nil || c == nil {
		return nil, err
	}
	return c.Document(), nil
}
