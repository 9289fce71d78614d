package storage

import (
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ValidationError is a write the collection's validator refused
// (DocumentValidationFailure, 121). Details explains which top-level
// clauses of the validator the document did not satisfy.
type ValidationError struct {
	// ID is the _id of the failing document.
	ID any
	// Details is errInfo.details: {operatorName, specifiedAs, reason} for a
	// validator of one clause, {operatorName: "$and", clausesNotSatisfied:
	// [{index, details}]} for several.
	Details bson.D
}

// Error returns MongoDB's message.
func (e *ValidationError) Error() string { return "Document failed validation" }

// SkipValidation makes this transaction's writes ignore collection
// validators (the bypassDocumentValidation command option).
func (t *Tx) SkipValidation() { t.skipValidation = true }

// validation reads a collection's validator settings from its options:
// the validator (nil when none), and whether it is enforced at all
// (validationLevel "off" or validationAction "warn" are not: devdb accepts
// the write as MongoDB does, without MongoDB's log line).
func validation(opts bson.D) (validator bson.D, moderate, enforced bool) {
	level, action := "strict", "error"
	for _, e := range opts {
		switch e.Key {
		case "validator":
			validator, _ = e.Value.(bson.D)
		case "validationLevel":
			level, _ = e.Value.(string)
		case "validationAction":
			action, _ = e.Value.(string)
		}
	}
	return validator, level == "moderate", len(validator) > 0 && level != "off" && action != "warn"
}

// validate checks doc, replacing old (nil for an insert), against c's
// validator. With validationLevel moderate, an update of a document that
// already fails the validator is not checked.
func (t *Tx) validate(c *Collection, old, doc bson.D) error {
	if t.skipValidation || len(c.Options) == 0 {
		return nil
	}
	validator, moderate, enforced := validation(c.Options)
	if !enforced {
		return nil
	}
	m, err := t.e.partialMatcher(validator)
	if err != nil {
		return err
	}
	if m(doc) {
		return nil
	}
	if moderate && old != nil && !m(old) {
		return nil
	}
	id, _ := lookupField(doc, "_id")
	var failed bson.A
	for i, clause := range validator {
		cm, err := t.e.partialMatcher(bson.D{clause})
		if err != nil {
			return err
		}
		if !cm(doc) {
			failed = append(failed, bson.D{{Key: "index", Value: int32(i)}, {Key: "details", Value: clauseDetails(clause)}})
		}
	}
	details := bson.D{{Key: "operatorName", Value: "$and"}, {Key: "clausesNotSatisfied", Value: failed}}
	if len(validator) == 1 {
		details = clauseDetails(validator[0])
	}
	return &ValidationError{ID: id, Details: details}
}

// clauseDetails describes one top-level validator clause the document did
// not satisfy: its operator, the clause as written and a reason.
func clauseDetails(clause bson.E) bson.D {
	op := clause.Key
	if len(op) == 0 || op[0] != '$' {
		op = "$eq"
		if d, ok := clause.Value.(bson.D); ok && len(d) > 0 && len(d[0].Key) > 0 && d[0].Key[0] == '$' {
			op = d[0].Key
		}
	}
	return bson.D{
		{Key: "operatorName", Value: op},
		{Key: "specifiedAs", Value: bson.D{clause}},
		{Key: "reason", Value: "the document did not match this clause"},
	}
}
