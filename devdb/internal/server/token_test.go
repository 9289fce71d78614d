package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestResumeTokenRoundTrip(t *testing.T) {
	t.Parallel()
	uuid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	tests := []struct {
		name string
		tok  resumeToken
	}{
		{"high-water mark", highWaterMark(bson.Timestamp{T: 1700000000, I: 7})},
		{"event", resumeToken{ClusterTime: bson.Timestamp{T: 1, I: 2}, UUID: uuid, HasUUID: true, EventHash: 0xdeadbeef}},
		{"event without uuid", resumeToken{ClusterTime: bson.Timestamp{T: 1, I: 2}, EventHash: 42}},
		{"invalidate", resumeToken{ClusterTime: bson.Timestamp{T: 1, I: 2}, FromInvalidate: true, UUID: uuid, HasUUID: true, EventHash: 1}},
		{"fragment", resumeToken{ClusterTime: bson.Timestamp{T: 1, I: 2}, UUID: uuid, HasUUID: true, EventHash: 1, Split: true, Fragment: 2}},
		{"first fragment", resumeToken{ClusterTime: bson.Timestamp{T: 1, I: 2}, EventHash: 1, Split: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := tc.tok.Doc()
			s := doc[0].Value.(string)
			if s != strings.ToUpper(s) || len(s) != 2*tc.tok.size() {
				t.Fatalf("_data %q: want %d upper-case hex digits", s, 2*tc.tok.size())
			}
			got, err := parseResumeToken(doc)
			if err != nil {
				t.Fatalf("parseResumeToken: %v", err)
			}
			if got != tc.tok {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.tok)
			}
			raw, err := bson.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := parseResumeToken(bson.Raw(raw)); err != nil || got != tc.tok {
				t.Fatalf("raw round trip: got %+v, %v", got, err)
			}
			lower := bson.D{{Key: "_data", Value: strings.ToLower(s)}}
			if got, err := parseResumeToken(lower); err != nil || got != tc.tok {
				t.Fatalf("lower-case round trip: got %+v, %v", got, err)
			}
		})
	}
}

func TestResumeTokenOrder(t *testing.T) {
	t.Parallel()
	ts := func(sec, inc uint32) bson.Timestamp { return bson.Timestamp{T: sec, I: inc} }
	ordered := []resumeToken{
		highWaterMark(ts(1, 1)),
		{ClusterTime: ts(1, 1), EventHash: 9},
		{ClusterTime: ts(1, 1), EventHash: 9, Split: true},
		{ClusterTime: ts(1, 1), EventHash: 9, Split: true, Fragment: 1},
		{ClusterTime: ts(1, 1), EventHash: 9, Split: true, Fragment: 256},
		{ClusterTime: ts(1, 1), EventHash: 9, FromInvalidate: true},
		highWaterMark(ts(1, 2)),
		{ClusterTime: ts(1, 2)},
		{ClusterTime: ts(2, 0)},
		highWaterMark(ts(1<<31, 0)),
	}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		if a.compare(b) >= 0 || b.compare(a) <= 0 {
			t.Errorf("token %d (%+v) does not sort before token %d (%+v)", i-1, a, i, b)
		}
		if a.String() >= b.String() {
			t.Errorf("hex of token %d does not sort before hex of token %d", i-1, i)
		}
	}
}

func TestParseResumeTokenErrors(t *testing.T) {
	t.Parallel()
	good := resumeToken{ClusterTime: bson.Timestamp{T: 5, I: 1}, EventHash: 3}.String()
	tests := []struct {
		name string
		v    any
	}{
		{"not a document", "abc"},
		{"missing _data", bson.D{}},
		{"_data not a string", bson.D{{Key: "_data", Value: int32(1)}}},
		{"not hex", bson.D{{Key: "_data", Value: "zz"}}},
		{"too short", bson.D{{Key: "_data", Value: good[:20]}}},
		{"foreign token", bson.D{{Key: "_data", Value: "8263A5F2B1000000012B022C0100296E5A1004"}}},
		{"extra field", bson.D{{Key: "_data", Value: good}, {Key: "x", Value: 1}}},
		{"bad type byte", bson.D{{Key: "_data", Value: good[:20] + "05" + good[22:]}}},
		{"fragment of a high-water mark", bson.D{{Key: "_data", Value: highWaterMark(bson.Timestamp{T: 5, I: 1}).String() + "00000001"}}},
		{"fragment of an invalidate", bson.D{{Key: "_data", Value: resumeToken{ClusterTime: bson.Timestamp{T: 5, I: 1}, EventHash: 3, FromInvalidate: true}.String() + "00000001"}}},
		{"two bytes too long", bson.D{{Key: "_data", Value: good + "0000"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseResumeToken(tc.v)
			var ce *mongoerr.Error
			if !errors.As(err, &ce) || ce.Code != 260 || ce.Code.String() != "InvalidResumeToken" {
				t.Fatalf("parseResumeToken(%v) error = %v, want InvalidResumeToken (260)", tc.v, err)
			}
		})
	}
}

func TestTimestampHelpers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, next bson.Timestamp
	}{
		{bson.Timestamp{T: 1, I: 1}, bson.Timestamp{T: 1, I: 2}},
		{bson.Timestamp{T: 1, I: ^uint32(0)}, bson.Timestamp{T: 2, I: 0}},
	}
	for _, tc := range tests {
		if got := csTSNext(tc.in); got != tc.next {
			t.Errorf("csTSNext(%v) = %v, want %v", tc.in, got, tc.next)
		}
		if !csTSLess(tc.in, tc.next) || csTSLess(tc.next, tc.in) || csTSLess(tc.in, tc.in) {
			t.Errorf("csTSLess ordering wrong for %v, %v", tc.in, tc.next)
		}
	}
}
