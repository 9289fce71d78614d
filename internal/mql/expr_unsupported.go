package mql

import "github.com/changehook/changehook/internal/mongoerr"

// unsupportedExprOperators are MongoDB 6.0 expression operators that mql
// knows but does not implement: $function runs server-side JavaScript and
// $meta reads text and search scores, neither of which exists here. They
// fail with NotImplemented, naming the operator as a real one, rather than
// as unrecognized (168), so that neither a devdb client nor a changehook
// user is told that a valid operator does not exist.
var unsupportedExprOperators = map[string]bool{
	"$function": true,
	"$meta":     true,
}

// unsupportedAccumulators are MongoDB 6.0 $group accumulators mql knows
// but does not implement ($accumulator runs server-side JavaScript).
var unsupportedAccumulators = map[string]bool{
	"$accumulator": true,
}

// unsupportedOperatorErr is the NotImplemented error for a real MongoDB
// operator that mql does not implement.
func unsupportedOperatorErr(name string) error {
	return mongoerr.Errorf(mongoerr.NotImplemented, "%s is a MongoDB operator that devdb and changehook do not support", name)
}
