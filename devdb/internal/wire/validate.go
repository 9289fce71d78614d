package wire

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// validateDocument checks that doc is structurally valid BSON.
func validateDocument(doc []byte) error {
	if err := bson.Raw(doc).Validate(); err != nil {
		return fmt.Errorf("invalid BSON: %v: %w", err, ErrMalformed)
	}
	return nil
}
