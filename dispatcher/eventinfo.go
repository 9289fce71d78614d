package dispatcher

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/bsonwalk"
)

// scanInfoFields returns the values of ev's first "documentKey" and first
// "operationType" elements (Type 0: not found) in one walk over the
// event's elements, as two raw.LookupErr calls would find them; ok is
// false when the walk met an element it cannot read as LookupErr does
// before it found both, and the caller looks the fields up with LookupErr
// instead (TestScanInfoFieldsMatchesLookup). The observers' fields are
// read for every attempt of an observed delivery.
func scanInfoFields(raw []byte) (dk, op bson.RawValue, ok bool) {
	w := bsonwalk.New(raw)
	for dk.Type == 0 || op.Type == 0 {
		key, v, more := w.Next()
		if !more {
			break
		}
		switch {
		case dk.Type == 0 && string(key) == "documentKey":
			dk = v
		case op.Type == 0 && string(key) == "operationType":
			op = v
		}
	}
	return dk, op, !w.Malformed()
}
