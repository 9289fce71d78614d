package triggers

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestProjectionKeeps(t *testing.T) {
	one, zero := int32(1), int32(0)
	tests := []struct {
		name  string
		spec  bson.D
		field string
		want  bool
	}{
		{"inclusion lists it", bson.D{{Key: "operationType", Value: one}}, "operationType", true},
		{"inclusion omits it", bson.D{{Key: "fullDocument", Value: one}}, "operationType", false},
		{"inclusion of a subfield", bson.D{{Key: "documentKey._id", Value: true}}, "documentKey", true},
		{"computed", bson.D{{Key: "operationType", Value: "$operationType"}}, "operationType", true},
		{"exclusion of another field", bson.D{{Key: "fullDocument", Value: zero}}, "operationType", true},
		{"exclusion of it", bson.D{{Key: "documentKey", Value: false}}, "documentKey", false},
		{"exclusion of a subfield", bson.D{{Key: "documentKey.x", Value: zero}}, "documentKey", true},
		{"only _id excluded", bson.D{{Key: "_id", Value: zero}}, "operationType", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := projectionKeeps(tt.spec, tt.field); got != tt.want {
				t.Errorf("projectionKeeps(%v, %q) = %v, want %v", tt.spec, tt.field, got, tt.want)
			}
		})
	}
}
