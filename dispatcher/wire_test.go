package dispatcher

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestNewRequestMatchesNetHTTP checks Sender.newRequest against
// http.NewRequestWithContext with the payload in a bytes.Reader.
func TestNewRequestMatchesNetHTTP(t *testing.T) {
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, 1)
	for _, u := range []string{
		"http://127.0.0.1:8080/hook", "http://example.com/a/b?x=1&y=%20z", "http://example.com:/p", "https://example.com/",
		"http://[::1]:9000/x", "http://example.com/p%2Fq?", "http://Example.COM/UPPER#frag",
	} {
		for _, method := range []string{"POST", "PUT", "PATCH"} {
			for _, body := range [][]byte{nil, []byte(`{"a":1}`)} {
				s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: u, Method: method}})
				got := s.newRequest(ctx, body)
				want, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				name := method + " " + u
				if got.Method != want.Method || !reflect.DeepEqual(got.URL, want.URL) || got.Proto != want.Proto ||
					got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.Host != want.Host ||
					got.ContentLength != want.ContentLength || got.Context() != want.Context() || got.Close != want.Close {
					t.Errorf("%s: request %+v, want %+v", name, got, want)
				}
				if got.URL == s.reqURL {
					t.Errorf("%s: the request shares the Sender's URL", name)
				}
				if (got.Body == http.NoBody) != (want.Body == http.NoBody) {
					t.Errorf("%s: body NoBody %v, want %v", name, got.Body == http.NoBody, want.Body == http.NoBody)
				}
				for i, pair := range [][2]io.ReadCloser{{got.Body, want.Body}, {mustGetBody(t, got), mustGetBody(t, want)}} {
					g, _ := io.ReadAll(pair[0])
					w, _ := io.ReadAll(pair[1])
					if !bytes.Equal(g, w) {
						t.Errorf("%s: body %d = %q, want %q", name, i, g, w)
					}
				}
			}
		}
	}
}

func mustGetBody(t *testing.T, r *http.Request) io.ReadCloser {
	t.Helper()
	b, err := r.GetBody()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteRequestFastMatchesWrite checks that writeRequestFast writes
// exactly what http.Request.Write writes for the Sender's requests, and
// writes nothing for the requests it declines.
func TestWriteRequestFastMatchesWrite(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 5000)
	for _, tc := range []struct {
		name    string
		url     string
		headers map[string]triggers.Secret
		secrets bool
		body    []byte
		edit    func(*http.Request)
		fast    bool // writeRequestFast takes it
	}{
		{name: "plain", url: "http://127.0.0.1:1/hook", body: []byte(`{"a":1}`), fast: true},
		{name: "signed, query, custom headers", url: "http://h.example:8080/p/q?x=1&y=2", secrets: true,
			headers: map[string]triggers.Secret{"x-tenant": "acme", "Authorization": "Bearer t", "A-First": "1", "Zed": "inner  spaces ok"},
			body:    []byte(`{"b":2}`), fast: true},
		{name: "user agent configured", url: "http://127.0.0.1:1/", headers: map[string]triggers.Secret{"User-Agent": "mine/1"}, body: []byte("{}"), fast: true},
		{name: "no user agent", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { delete(r.Header, "User-Agent") }, fast: true},
		{name: "empty user agent", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["User-Agent"] = []string{""} }, fast: true},
		{name: "user agent without values", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["User-Agent"] = nil }, fast: true},
		{name: "two values, empty value, key without values", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) {
			r.Header["X-Multi"] = []string{"b", "a"}
			r.Header["X-Empty"] = []string{""}
			r.Header["X-None"] = []string{}
			r.Header["Host"] = []string{"ignored"}
			r.Header["Content-Length"] = []string{"99"}
		}, fast: true},
		{name: "connection close as a header", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["Connection"] = []string{"close"} }, fast: true},
		{name: "non-canonical key", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["x-lower"] = []string{"v"} }, fast: true},
		{name: "value with a trailing space", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["X-Sp"] = []string{"v "} }},
		{name: "value with a line break", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["X-Nl"] = []string{"a\r\nb"} }},
		{name: "user agent with a leading tab", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["User-Agent"] = []string{"\tua"} }},
		{name: "invalid key", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Header["Bad Key"] = []string{"v"} }},
		{name: "Close", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Close = true }},
		{name: "empty body", url: "http://127.0.0.1:1/"},
		{name: "body over the buffer", url: "http://127.0.0.1:1/", body: big, fast: true},
		{name: "body many buffers long", url: "http://127.0.0.1:1/", body: bytes.Repeat([]byte("y"), 70_000), fast: true},
		{name: "body just within the buffer", url: "http://127.0.0.1:1/", body: bytes.Repeat([]byte("z"), 3_900), fast: true},
		{name: "head over the buffer", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) {
			r.Header["X-Long"] = []string{string(bytes.Repeat([]byte("v"), 4_100))}
		}},
		{name: "another Host", url: "http://127.0.0.1:1/", body: []byte("{}"), edit: func(r *http.Request) { r.Host = "other" }},
		{name: "IPv6 host", url: "http://[::1]:1/v6", body: []byte("{}"), fast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &triggers.Trigger{Webhook: triggers.Webhook{URL: tc.url, Headers: tc.headers}}
			if tc.secrets {
				tr.Webhook.Secrets = []triggers.Secret{testSecret}
			}
			s := newTestSender(t, tr)
			now := time.Unix(1_700_000_000, 0)
			build := func() *http.Request {
				r := s.newRequest(context.Background(), tc.body)
				r.Header = s.header("msg_x", now, tc.body, nil)
				if tc.edit != nil {
					tc.edit(r)
				}
				return r
			}
			var fastBuf, slowBuf bytes.Buffer
			bw := bufio.NewWriterSize(&fastBuf, 4<<10)
			rest, fast := writeRequestFast(bw, build(), s.reqURL.Host)
			if fast != tc.fast {
				t.Fatalf("writeRequestFast took it: %v, want %v", fast, tc.fast)
			}
			if !fast {
				if bw.Buffered() != 0 {
					t.Fatalf("declined after writing %d bytes", bw.Buffered())
				}
				return
			}
			if fastBuf.Len() != 0 {
				t.Fatalf("flushed %d bytes before the caller's check", fastBuf.Len())
			}
			if rest != nil && !bytes.Equal(rest, tc.body) {
				t.Fatalf("rest is %d bytes, want the whole body (%d)", len(rest), len(tc.body))
			}
			if rest == nil && bw.Buffered() < len(tc.body) {
				t.Fatalf("no rest, but only %d bytes buffered for a %d-byte body", bw.Buffered(), len(tc.body))
			}
			_, _ = bw.Write(rest)
			_ = bw.Flush()
			if err := build().Write(&slowBuf); err != nil {
				t.Fatal(err)
			}
			if fastBuf.String() != slowBuf.String() {
				t.Fatalf("fast:\n%q\nRequest.Write:\n%q", fastBuf.String(), slowBuf.String())
			}
		})
	}
}

// responseCorpus are responses readResponseFast takes or declines, each
// followed by the start of another.
var responseCorpus = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: Thu, 03 Dec 2026 04:00:00 GMT\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\nDate: Thu, 03 Dec 2026 04:00:00 GMT\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found",
	"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 503 Service Unavailable\r\nretry-after:   7  \r\ncontent-length: 4\r\n\r\nbusy",
	"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:\r\nX-Tab:\tv\t\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567",
	"HTTP/1.1 599 Custom Status Text (with) symbols!\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nx-www-form: 1\r\nWWW-Authenticate: Basic\r\ncontent-md5: q\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\nconnection:  Keep-Alive \r\n\r\n",
	"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nA: 4\r\nD: 5\r\nA: 6\r\nContent-Length: 0\r\n\r\n",
	// Declined (ReadResponse decides):
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
	"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
	"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Key: v\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n: novalue\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"garbage\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
	"",
}

// TestReadResponseFastMatchesReadResponse compares readResponse (the fast
// path where it applies) with http.ReadResponse on every response of the
// corpus, delivered whole and one byte per read, for POST and HEAD.
func TestReadResponseFastMatchesReadResponse(t *testing.T) {
	took := 0
	for _, raw := range responseCorpus {
		for _, method := range []string{"POST", "HEAD"} {
			for _, oneByte := range []bool{false, true} {
				if compareReadResponse(t, raw+"HTTP/1.1 next", method, oneByte) {
					took++
				}
			}
		}
	}
	t.Logf("fast path took %d of %d reads", took, 4*len(responseCorpus))
	if took < 20 {
		t.Errorf("the fast path took %d responses, want the corpus's 20 (POST, read whole)", took)
	}
}

// TestReadResponseFastHeaderValuesApart checks that the header values of
// a response the fast path read share no room: adding a value to one key
// changes no other key's values.
func TestReadResponseFastHeaderValuesApart(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.1 204 No Content\r\nA: 1\r\nB: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nA: 4\r\nD: 5\r\nA: 6\r\nContent-Length: 0\r\n\r\n",
	} {
		req, err := http.NewRequest("POST", "http://127.0.0.1:1/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(strings.NewReader(raw))
		if _, err := br.Peek(1); err != nil {
			t.Fatal(err)
		}
		resp, ok := readResponseFast(br, req)
		if !ok {
			t.Fatalf("%q: declined", raw)
		}
		want := resp.Header.Clone()
		for k := range want {
			h := resp.Header.Clone()
			for k2, v := range resp.Header {
				h[k2] = v // the values as read, not copies
			}
			h[k] = append(h[k], "added")
			for k2, v := range want {
				if k2 != k && !slices.Equal(h[k2], v) {
					t.Fatalf("%q: adding to %s changed %s to %q, want %q", raw, k, k2, h[k2], v)
				}
			}
		}
	}
}

// FuzzReadResponseFast compares readResponse with http.ReadResponse on
// arbitrary bytes.
func FuzzReadResponseFast(f *testing.F) {
	for _, raw := range responseCorpus {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 3000 {
			return // within one read of the 4 KiB buffer
		}
		compareReadResponse(t, string(raw), "POST", false)
	})
}

// compareReadResponse reads raw with readResponse and with
// http.ReadResponse and fails t where they differ: the response's fields,
// its body and the body's error, and the bytes left after the body. It
// reports whether the fast path took the response.
func compareReadResponse(t *testing.T, raw, method string, oneByte bool) bool {
	t.Helper()
	req, err := http.NewRequest(method, "http://127.0.0.1:1/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	src := func() io.Reader {
		if oneByte {
			return iotest.OneByteReader(strings.NewReader(raw))
		}
		return strings.NewReader(raw)
	}
	br1, br2 := bufio.NewReaderSize(src(), 4<<10), bufio.NewReaderSize(src(), 4<<10)
	took := false
	if br1.Buffered() == 0 {
		if _, err := br1.Peek(1); err == nil {
			_, took = readResponseFastProbe(br1, req)
		}
	}
	got, gerr := readResponse(br1, req)
	want, werr := http.ReadResponse(br2, req)
	name := strings.ReplaceAll(raw, "\r\n", "⏎")
	if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("%q %s: error %v, want %v", name, method, gerr, werr)
	}
	if gerr != nil {
		return took
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || !reflect.DeepEqual(got.Header, want.Header) ||
		got.ContentLength != want.ContentLength || got.Close != want.Close || !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) ||
		!reflect.DeepEqual(got.Trailer, want.Trailer) || got.Uncompressed != want.Uncompressed || got.Request != want.Request || got.TLS != want.TLS {
		t.Fatalf("%q %s:\nresponse %+v\nwant     %+v", name, method, got, want)
	}
	if (got.Body == http.NoBody) != (want.Body == http.NoBody) {
		t.Fatalf("%q %s: body NoBody %v, want %v", name, method, got.Body == http.NoBody, want.Body == http.NoBody)
	}
	gb, gberr := io.ReadAll(got.Body)
	wb, wberr := io.ReadAll(want.Body)
	if !bytes.Equal(gb, wb) || (gberr == nil) != (wberr == nil) || (gberr != nil && gberr.Error() != wberr.Error()) {
		t.Fatalf("%q %s: body %q (%v), want %q (%v)", name, method, gb, gberr, wb, wberr)
	}
	if !took {
		return false // ReadResponse read both: the rest is the same
	}
	gr, _ := io.ReadAll(br1)
	wr, _ := io.ReadAll(br2)
	if !bytes.Equal(gr, wr) {
		t.Fatalf("%q %s: left %q after the response, want %q", name, method, gr, wr)
	}
	return true
}

// readResponseFastProbe reports whether readResponseFast would take the
// response buffered in br, without consuming it.
func readResponseFastProbe(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	buf, _ := br.Peek(br.Buffered())
	probe := bufio.NewReaderSize(bytes.NewReader(append([]byte(nil), buf...)), 4<<10)
	if _, err := probe.Peek(1); err != nil {
		return nil, false
	}
	return readResponseFast(probe, req)
}
