package mql

import (
	"math/rand/v2"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// codeRandArguments is MongoDB's Location3040501: $rand takes no arguments.
const codeRandArguments mongoerr.Code = 3040501

// randNode is $rand: a double uniformly distributed in [0, 1), drawn anew
// at every evaluation.
type randNode struct{}

func (randNode) eval(*evalCtx) (any, error) { return rand.Float64(), nil }

// compileRand compiles {$rand: {}}; any other argument is refused as
// MongoDB refuses it.
func compileRand(_ string, arg any) (exprNode, error) {
	if d, ok := arg.(bson.D); !ok || len(d) != 0 {
		return nil, mongoerr.Errorf(codeRandArguments, "$rand does not currently accept arguments")
	}
	return randNode{}, nil
}

// CompileLet evaluates a command's let document (find, aggregate, update,
// delete, findAndModify): every field is a user variable name, checked as
// MongoDB checks $let names, whose value is an expression evaluated once,
// without a document (a field path yields nothing), with $$NOW fixed for
// the whole command. Earlier variables are visible to later ones. The
// result maps each name, and "NOW", to its value; pass it to
// Filter.WithVars and Pipeline.WithVars. A nil or empty let yields a map
// holding only "NOW". Errors are *mongoerr.Error with MongoDB's codes.
func CompileLet(let bson.D, now time.Time) (map[string]any, error) {
	vars := make(map[string]any, len(let)+1)
	vars["NOW"] = bson.NewDateTimeFromTime(now)
	for _, e := range let {
		if err := aggCheckVarDef(e.Key); err != nil {
			return nil, err
		}
		x, err := CompileExprVars(e.Value, vars)
		if err != nil {
			return nil, err
		}
		v, err := x.EvalVars(nil, vars)
		if err != nil {
			return nil, err
		}
		vars[e.Key] = v
	}
	return vars, nil
}
