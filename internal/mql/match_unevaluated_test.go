package mql

import (
	"errors"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestUnevaluatedOperators: the operators MongoDB evaluates in a $match
// that mql does not fail with an *UnevaluatedError naming them (a
// NotImplemented error, as devdb answers); $sampleRate's argument is
// checked first, as MongoDB checks it.
func TestUnevaluatedOperators(t *testing.T) {
	tests := []struct {
		filter, op string
		code       mongoerr.Code
	}{
		{`{"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 0.1]}}}`, "$geoWithin", mongoerr.NotImplemented},
		{`{"loc": {"$within": {"$box": [[0, 0], [1, 1]]}}}`, "$within", mongoerr.NotImplemented},
		{`{"area": {"$geoIntersects": {"$geometry": {"type": "Point", "coordinates": [1, 2]}}}}`, "$geoIntersects", mongoerr.NotImplemented},
		{`{"$and": [{"a": 1}, {"loc": {"$geoWithin": {}}}]}`, "$geoWithin", mongoerr.NotImplemented},
		{`{"$sampleRate": 0.5}`, "$sampleRate", mongoerr.NotImplemented},
		{`{"$sampleRate": 1}`, "$sampleRate", mongoerr.NotImplemented},
		{`{"$sampleRate": "half"}`, "", mongoerr.BadValue},
		{`{"$sampleRate": 1.5}`, "", mongoerr.BadValue},
		{`{"loc": {"$near": [0, 0]}}`, "", mongoerr.NoQueryExecutionPlans},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			_, err := CompileFilter(coreDoc(t, tt.filter))
			var me *mongoerr.Error
			if !errors.As(err, &me) || me.Code != tt.code {
				t.Fatalf("CompileFilter: %v, want code %s", err, tt.code)
			}
			var ue *UnevaluatedError
			switch {
			case tt.op == "" && errors.As(err, &ue):
				t.Errorf("CompileFilter: %v is an *UnevaluatedError", err)
			case tt.op != "" && (!errors.As(err, &ue) || ue.Operator != tt.op):
				t.Errorf("CompileFilter: %v (%T), want an *UnevaluatedError for %s", err, err, tt.op)
			}
		})
	}
}
