package server

import (
	"fmt"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/changehook/changehook/internal/mongoerr"
)

// maxSplitEventSize is the largest event a stream with a
// $changeStreamSplitLargeEvent stage returns whole (MongoDB's
// kBSONObjMaxChangeEventSize: its internal BSON limit less 8 KiB); larger
// events are split, into fragments of at most this size less the size of
// the event's resume token.
const maxSplitEventSize = maxEventSize - 8*1024

// splitEvent splits the encoded event raw, whose resume token is tok, into
// fragments as MongoDB's $changeStreamSplitLargeEvent does: the top-level
// fields other than _id, ordered by encoded size and then name, fill the
// fragments greedily (each takes at least one field); each fragment starts
// with its own resume token as _id (tok with the fragment's index) and
// splitEvent {fragment: n (from 1), of: total}. A field too large for a
// fragment on its own fails with Location7182500.
func splitEvent(raw bson.Raw, tok resumeToken) ([]csQueued, error) {
	elems, err := raw.Elements()
	if err != nil {
		return nil, fmt.Errorf("split change event: %w", err)
	}
	type field struct {
		key  string
		elem bson.RawElement
	}
	fields := make([]field, 0, len(elems))
	for _, e := range elems {
		if k := e.Key(); k != "_id" {
			fields = append(fields, field{key: k, elem: e})
		}
	}
	if len(fields) == 0 {
		return nil, mongoerr.Errorf(mongoerr.SplitEventEmpty, "Cannot split an empty event or an event containing solely '_id' field")
	}
	sort.SliceStable(fields, func(i, j int) bool {
		if len(fields[i].elem) != len(fields[j].elem) {
			return len(fields[i].elem) < len(fields[j].elem)
		}
		return fields[i].key < fields[j].key
	})

	tokenDoc, err := bson.Marshal(tok.Doc())
	if err != nil {
		return nil, fmt.Errorf("split change event: %w", err)
	}
	maxFragment := maxSplitEventSize - len(tokenDoc)
	var groups [][]field
	var tokens []resumeToken
	for i := 0; i < len(fields); {
		ft := tok
		ft.Split, ft.Fragment = true, uint32(len(groups))
		// The fragment's _id and splitEvent, and its resume token again as
		// the sort key MongoDB counts with it.
		size := len(fragmentHead(ft, 0, 0)) + 1 + len(tokenDoc) + len("$sortKey") + 2
		var g []field
		for {
			g = append(g, fields[i])
			size += len(fields[i].elem)
			i++
			if i == len(fields) || size+len(fields[i].elem) > maxFragment {
				break
			}
		}
		if size > maxFragment {
			return nil, mongoerr.Errorf(mongoerr.SplitEventTooLarge, "Splitting change event failed: fragment size %d is greater than maximum allowed fragment size %d", size, maxFragment)
		}
		groups = append(groups, g)
		tokens = append(tokens, ft)
	}
	out := make([]csQueued, len(groups))
	for n, g := range groups {
		b := fragmentHead(tokens[n], int32(n+1), int32(len(groups)))
		for _, f := range g {
			b = append(b, f.elem...)
		}
		b = append(b, 0)
		bsoncore.UpdateLength(b, 0, int32(len(b)))
		out[n] = csQueued{raw: b, token: tokens[n]}
	}
	return out, nil
}

// fragmentHead returns the start of a fragment: a document with _id (the
// fragment's resume token) and splitEvent {fragment, of}, without its
// terminating byte (its length is set when the fragment is complete).
func fragmentHead(tok resumeToken, fragment, of int32) []byte {
	b, err := bson.Marshal(bson.D{
		{Key: "_id", Value: tok.Doc()},
		{Key: "splitEvent", Value: bson.D{{Key: "fragment", Value: fragment}, {Key: "of", Value: of}}},
	})
	if err != nil {
		panic(fmt.Sprintf("encode change event fragment head: %v", err)) // strings and int32s always encode
	}
	return b[:len(b)-1]
}
