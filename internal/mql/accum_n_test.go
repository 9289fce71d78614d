package mql

import (
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestGroupNAccumulators checks $top $bottom $topN $bottomN $firstN $lastN
// $maxN $minN in $group with the manual's gamescores collection.
func TestGroupNAccumulators(t *testing.T) {
	t.Parallel()
	const games = `[
		{"playerId": "PlayerA", "gameId": "G1", "score": 31},
		{"playerId": "PlayerB", "gameId": "G1", "score": 33},
		{"playerId": "PlayerC", "gameId": "G1", "score": 99},
		{"playerId": "PlayerD", "gameId": "G1", "score": 1},
		{"playerId": "PlayerA", "gameId": "G2", "score": 10},
		{"playerId": "PlayerB", "gameId": "G2", "score": 14},
		{"playerId": "PlayerC", "gameId": "G2", "score": 66},
		{"playerId": "PlayerD", "gameId": "G2", "score": 80}
	]`
	group := func(acc string) string {
		return `[{"$group": {"_id": "$gameId", "r": ` + acc + `}}]`
	}
	const ps = `["$playerId", "$score"]`
	const sp = `["$score", "$playerId"]`
	tests := []struct {
		name     string
		pipeline string
		want     string
		code     mongoerr.Code
	}{
		{name: "top manual", pipeline: group(`{"$top": {"output": ` + ps + `, "sortBy": {"score": -1}}}`),
			want: `[{"_id": "G1", "r": ["PlayerC", 99]}, {"_id": "G2", "r": ["PlayerD", 80]}]`},
		{name: "bottom manual", pipeline: group(`{"$bottom": {"output": ` + ps + `, "sortBy": {"score": -1}}}`),
			want: `[{"_id": "G1", "r": ["PlayerD", 1]}, {"_id": "G2", "r": ["PlayerA", 10]}]`},
		{name: "topN manual", pipeline: group(`{"$topN": {"output": ` + ps + `, "sortBy": {"score": -1}, "n": 3}}`),
			want: `[{"_id": "G1", "r": [["PlayerC", 99], ["PlayerB", 33], ["PlayerA", 31]]}, {"_id": "G2", "r": [["PlayerD", 80], ["PlayerC", 66], ["PlayerB", 14]]}]`},
		{name: "bottomN manual", pipeline: group(`{"$bottomN": {"output": ` + ps + `, "sortBy": {"score": -1}, "n": 3}}`),
			want: `[{"_id": "G1", "r": [["PlayerB", 33], ["PlayerA", 31], ["PlayerD", 1]]}, {"_id": "G2", "r": [["PlayerC", 66], ["PlayerB", 14], ["PlayerA", 10]]}]`},
		{name: "firstN manual", pipeline: group(`{"$firstN": {"input": ` + ps + `, "n": 3}}`),
			want: `[{"_id": "G1", "r": [["PlayerA", 31], ["PlayerB", 33], ["PlayerC", 99]]}, {"_id": "G2", "r": [["PlayerA", 10], ["PlayerB", 14], ["PlayerC", 66]]}]`},
		{name: "lastN manual", pipeline: group(`{"$lastN": {"input": ` + ps + `, "n": 3}}`),
			want: `[{"_id": "G1", "r": [["PlayerB", 33], ["PlayerC", 99], ["PlayerD", 1]]}, {"_id": "G2", "r": [["PlayerB", 14], ["PlayerC", 66], ["PlayerD", 80]]}]`},
		{name: "maxN manual", pipeline: group(`{"$maxN": {"input": ` + sp + `, "n": 3}}`),
			want: `[{"_id": "G1", "r": [[99, "PlayerC"], [33, "PlayerB"], [31, "PlayerA"]]}, {"_id": "G2", "r": [[80, "PlayerD"], [66, "PlayerC"], [14, "PlayerB"]]}]`},
		{name: "minN manual", pipeline: group(`{"$minN": {"input": ` + sp + `, "n": 3}}`),
			want: `[{"_id": "G1", "r": [[1, "PlayerD"], [31, "PlayerA"], [33, "PlayerB"]]}, {"_id": "G2", "r": [[10, "PlayerA"], [14, "PlayerB"], [66, "PlayerC"]]}]`},
		{name: "maxN skips missing", pipeline: group(`{"$maxN": {"input": "$nope", "n": 2}}`),
			want: `[{"_id": "G1", "r": []}, {"_id": "G2", "r": []}]`},
		{name: "firstN keeps missing as null", pipeline: group(`{"$firstN": {"input": "$nope", "n": 1}}`),
			want: `[{"_id": "G1", "r": [null]}, {"_id": "G2", "r": [null]}]`},
		{name: "top missing output is null", pipeline: group(`{"$top": {"output": "$nope", "sortBy": {"score": 1}}}`),
			want: `[{"_id": "G1", "r": null}, {"_id": "G2", "r": null}]`},
		{name: "n more than documents", pipeline: `[{"$group": {"_id": null, "r": {"$topN": {"output": "$score", "sortBy": {"score": 1}, "n": 100}}}}]`,
			want: `[{"_id": null, "r": [1, 10, 14, 31, 33, 66, 80, 99]}]`},
		{name: "n from group key", pipeline: `[{"$group": {"_id": "$gameId", "r": {"$firstN": {"input": "$score", "n": {"$cond": [{"$eq": ["$gameId", "G1"]}, 1, 2]}}}}}]`,
			want: `[{"_id": "G1", "r": [31]}, {"_id": "G2", "r": [10, 14]}]`},
		{name: "n zero", pipeline: group(`{"$firstN": {"input": "$score", "n": 0}}`), code: 5787908},
		{name: "n not integral", pipeline: group(`{"$topN": {"output": "$score", "sortBy": {"score": 1}, "n": 1.5}}`), code: 5787903},
		{name: "n not a number", pipeline: group(`{"$lastN": {"input": "$score", "n": "2"}}`), code: 5787902},
		{name: "minN not object", pipeline: group(`{"$minN": [1]}`), code: 5787900},
		{name: "firstN not object", pipeline: group(`{"$firstN": 1}`), code: 5787801},
		{name: "firstN unknown field", pipeline: group(`{"$firstN": {"input": 1, "n": 1, "x": 1}}`), code: 5787901},
		{name: "firstN missing n", pipeline: group(`{"$firstN": {"input": 1}}`), code: 5787906},
		{name: "maxN missing input", pipeline: group(`{"$maxN": {"n": 1}}`), code: 5787907},
		{name: "top not object", pipeline: group(`{"$top": 1}`), code: 5788001},
		{name: "top with n", pipeline: group(`{"$top": {"output": 1, "sortBy": {"a": 1}, "n": 1}}`), code: 5788002},
		{name: "topN missing n", pipeline: group(`{"$topN": {"output": 1, "sortBy": {"a": 1}}}`), code: 5788003},
		{name: "topN missing output", pipeline: group(`{"$topN": {"n": 1, "sortBy": {"a": 1}}}`), code: 5788004},
		{name: "bottom missing sortBy", pipeline: group(`{"$bottom": {"output": 1}}`), code: 5788005},
		{name: "bottom bad sortBy", pipeline: group(`{"$bottom": {"output": 1, "sortBy": {"a": 2}}}`), code: 15975},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := CompilePipeline(aggTestDocs(t, tc.pipeline))
			var got string
			if err == nil {
				got, err = aggTestRun(t, p, aggTestDocs(t, games))
			}
			if aggTestWantErr(t, err, tc.code) {
				return
			}
			want := aggTestJSON(t, aggTestDoc(t, `{"v": `+tc.want+`}`)[0].Value)
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}
