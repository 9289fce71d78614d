package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"
)

// TestReadBodyMatchesReadAll: the receiver's pooled body reader returns
// what io.ReadAll of the body (limited to maxBody) returns, whatever the
// buffer it starts from.
func TestReadBodyMatchesReadAll(t *testing.T) {
	for _, n := range []int{0, 1, 511, 16 << 10, 16<<10 + 1, 100 << 10, maxBody, maxBody + 7} {
		src := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		want, _ := io.ReadAll(io.LimitReader(bytes.NewReader(src), maxBody))
		for _, start := range [][]byte{nil, make([]byte, 3, 8), make([]byte, 0, 16<<10)} {
			got, err := readBody(start, iotestHalfReader{bytes.NewReader(src)})
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes from a buffer of cap %d: %d bytes, %v; want %d", n, cap(start), len(got), err, len(want))
			}
		}
	}
}

// iotestHalfReader returns at most half of what is asked for each Read.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

// TestFindSeqs: every element's seq of a batch body, appended in order.
func TestFindSeqs(t *testing.T) {
	body := []byte(`[{"fullDocument":{"_id":3,"seq":3}},{"fullDocument":{"seq" : 17,"x":1}},{"seq":"no"},{"fullDocument":{"seq":0}}]`)
	if got := findSeqs([]int64{9}, body); !slices.Equal(got, []int64{9, 3, 17, 0}) {
		t.Fatalf("findSeqs = %v, want [9 3 17 0]", got)
	}
}

// batchBody is a 100-event batch body as changehook sends the benchmark's
// insert events (relaxed Extended JSON), seqs from first.
func batchBody(first int) []byte {
	b := []byte{'['}
	for i := range 100 {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"_id":{"_data":"8264A1B2C3000030392B042C0100296E5A1004"},"operationType":"insert",`+
			`"clusterTime":{"$timestamp":{"t":1700000000,"i":%d}},"wallTime":{"$date":"2023-11-14T22:13:32.345Z"},`+
			`"fullDocument":{"_id":{"$oid":"65542139e7c0e424dfa69385"},"seq":%d,"customer":"customer-%d","qty":45,`+
			`"price":34.5,"tags":["bench","changehook"],"updatedAt":{"$date":"2023-11-14T22:13:32.345Z"}},`+
			`"ns":{"db":"bench","coll":"orders"},"documentKey":{"_id":{"$oid":"65542139e7c0e424dfa69385"}}}`,
			first+i, first+i, (first+i)%1000)
	}
	return append(b, ']')
}

// TestFindSeqsBatch: the 100 seqs of a realistic batch body, in order.
func TestFindSeqsBatch(t *testing.T) {
	got := findSeqs(nil, batchBody(5000))
	if len(got) != 100 {
		t.Fatalf("findSeqs found %d seqs, want 100", len(got))
	}
	for i, s := range got {
		if s != int64(5000+i) {
			t.Fatalf("seq %d = %d, want %d", i, s, 5000+i)
		}
	}
}

// BenchmarkFindSeqs is the receiver's scan of one 100-event batch body.
func BenchmarkFindSeqs(b *testing.B) {
	body := batchBody(123456)
	out := make([]int64, 0, 128)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		out = findSeqs(out[:0], body)
	}
	if len(out) != 100 {
		b.Fatalf("found %d seqs", len(out))
	}
}
