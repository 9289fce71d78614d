package triggers

import (
	"slices"
	"strings"
	"testing"
)

// TestMatchOperatorsMongoDBEvaluates: operators MongoDB evaluates in a
// change stream's $match but the local evaluator does not ($geoWithin,
// $geoIntersects, $sampleRate) are valid in match, and named by
// UnevaluatedMatchOperators; the other problems of the same filter are
// still reported, and so is a $sampleRate MongoDB refuses.
func TestMatchOperatorsMongoDBEvaluates(t *testing.T) {
	tests := []struct {
		match string
		ops   []string
		want  string // a validation error; "" when valid
	}{
		{`{fullDocument.loc: {$geoWithin: {$centerSphere: [[0, 0], 0.1]}}}`, []string{"$geoWithin"}, ""},
		{`{fullDocument.area: {$geoIntersects: {$geometry: {type: Point, coordinates: [1, 2]}}}}`, []string{"$geoIntersects"}, ""},
		{`{$sampleRate: 0.5}`, []string{"$sampleRate"}, ""},
		{`{fullDocument.loc: {$within: {$box: [[0, 0], [1, 1]]}}}`, []string{"$within"}, ""},
		{`{$or: [{fullDocument.loc: {$geoWithin: {$center: [[0, 0], 1]}}}, {$sampleRate: 0.1}], operationType: insert}`, []string{"$geoWithin", "$sampleRate"}, ""},
		{`{fullDocument.qty: {$gt: 5}}`, nil, ""},
		{`{$sampleRate: 0.5, fullDocument.qty: {$gtt: 5}}`, nil, "m.yaml:6:50: match: unknown operator: $gtt (did you mean $gt?)"},
		{`{fullDocument.loc: {$geoWithin: {$center: [[0, 0], 1]}, $foo: 1}}`, nil, "m.yaml:6:68: match: unknown operator: $foo"},
		{`{$and: [{fullDocument.loc: {$geoWithin: {}}}, {b: {$bad: 1}}]}`, nil, "m.yaml:6:63: match: unknown operator: $bad"},
		{`{$sampleRate: 2}`, nil, "m.yaml:6:13: match: numeric argument to $sampleRate must be in [0, 1]"},
		{`{$sampleRate: half}`, nil, "m.yaml:6:13: match: argument to $sampleRate must be a numeric type"},
	}
	for _, tt := range tests {
		t.Run(tt.match, func(t *testing.T) {
			cfg, err := Parse("m.yaml", []byte("triggers:\n  - name: t\n    database: shop\n    collection: orders\n    webhook: { url: \"http://127.0.0.1:1/h\" }\n    match: "+tt.match+"\n"), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Parse: %v\nwant an error with %q", err, tt.want)
			case tt.want != "":
				return
			}
			if got := cfg.Triggers[0].UnevaluatedMatchOperators(); !slices.Equal(got, tt.ops) {
				t.Errorf("UnevaluatedMatchOperators = %q, want %q", got, tt.ops)
			}
		})
	}
}
