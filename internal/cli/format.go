package cli

import (
	"go.mongodb.org/mongo-driver/v2/bson"
)

// extJSON renders a BSON value as relaxed Extended JSON for people; a value
// that cannot be rendered is shown with its Go formatting.
func extJSON(v any) string {
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		return "<unprintable>"
	}
	return string(b)
}

// extJSONIndent renders a document as indented relaxed Extended JSON.
func extJSONIndent(v any) string {
	b, err := bson.MarshalExtJSONIndent(v, false, false, "", "  ")
	if err != nil {
		return "<unprintable>"
	}
	return string(b)
}
