package main

import (
	"bytes"
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
