package dispatcher

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
)

// The common request and response of the direct transport, written and
// read without net/http's general machinery.
//
// http.Request.Write formats with fmt, sorts the header through a pooled
// sorter, builds a transfer writer and copies the body through a pooled
// buffer; http.ReadResponse reads through textproto line by line. Per
// delivery that is a few microseconds and a dozen allocations the runner
// pays for every event. writeRequestFast and readResponseFast produce the
// same bytes and the same *http.Response for the requests the Sender builds
// and the responses webhook endpoints usually send, and decline everything
// else (before writing or consuming anything), which then goes through
// net/http as before. TestWriteRequestFastMatchesWrite and
// TestReadResponseFastMatchesReadResponse compare the two.

// payloadBody is the body of a request the Sender builds: the payload's
// bytes, which the direct transport writes as they are.
type payloadBody struct {
	b   []byte
	off int
}

func (p *payloadBody) Read(b []byte) (int, error) {
	if p.off >= len(p.b) {
		return 0, io.EOF
	}
	n := copy(b, p.b[p.off:])
	p.off += n
	return n, nil
}

// WriteTo writes the unread bytes to w (what io.Copy of a bytes.Reader
// does).
func (p *payloadBody) WriteTo(w io.Writer) (int64, error) {
	if p.off >= len(p.b) {
		return 0, nil
	}
	n, err := w.Write(p.b[p.off:])
	p.off += n
	return int64(n), err
}

func (*payloadBody) Close() error { return nil }

// newRequest returns the request of one attempt: what
// http.NewRequestWithContext(ctx, s.method, s.url, bytes.NewReader(body))
// returns (TestNewRequestMatchesNetHTTP), without parsing the URL again;
// the body is a payloadBody when the request goes to the direct transport
// and, as http.NewRequest makes it, an io.NopCloser of a *bytes.Reader
// otherwise (see inMemoryBody). The header is nil: the caller sets it.
func (s *Sender) newRequest(ctx context.Context, body []byte) *http.Request {
	r, _ := s.newRequestParts(ctx, body)
	return r
}

// requestParts is what newRequestParts allocates for a request besides
// the request itself, in one allocation: its URL, its body and room for
// its header's values.
type requestParts struct {
	url  url.URL
	body payloadBody
	vals [8]string
}

// newRequestParts is newRequest, also returning room (length 0) for the
// values of the request's header, allocated with it (see Sender.header).
func (s *Sender) newRequestParts(ctx context.Context, body []byte) (*http.Request, []string) {
	p := new(requestParts)
	p.url = *s.reqURL
	r := http.Request{
		Method: s.method, URL: &p.url, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: s.reqHost,
		ContentLength: int64(len(body)),
	}
	if len(body) == 0 {
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	} else if s.directBody {
		p.body = payloadBody{b: body}
		r.Body = &p.body
		r.GetBody = func() (io.ReadCloser, error) { return &payloadBody{b: body}, nil }
	} else {
		setInMemoryBody(&r, body)
	}
	return r.WithContext(ctx), p.vals[:0]
}

// reusesBodies reports whether s is done with a request's body when the
// send that made it returns, so that the caller may write over the body:
// requests go to the direct transport, which writes a body before its
// RoundTrip returns and gives net/http a copy when it falls back to it
// (inMemoryBody), alone or behind WithTransportWrapper's wrapper, which is
// done with a request when its RoundTrip returns. net/http's Transport may
// still read a body after RoundTrip returned.
func (s *Sender) reusesBodies() bool { return s.directBody }

// setInMemoryBody gives r the body http.NewRequest gives a *bytes.Reader
// of body. net/http's Transport writes a body it knows to be in memory
// with the request's header in one write; any other body (a payloadBody)
// after the header is flushed. The second write can then fail with a
// reset while the reason is still to be read: a TLS 1.3 server that
// refuses the client's certificate sends its alert and closes as the
// request arrives, and the failure would read as a connection error, not
// the refused certificate.
func setInMemoryBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

// inMemoryBody returns req, or for a payloadBody request a copy of it
// whose body is a copy of the unread payload as http.NewRequest makes it
// (see setInMemoryBody): what the direct transport hands to net/http.
func inMemoryBody(req *http.Request) *http.Request {
	pb, ok := req.Body.(*payloadBody)
	if !ok {
		return req
	}
	r := *req
	// A copy: net/http may still read the body after RoundTrip returned,
	// and the caller may reuse the payload's array by then (reusesBodies).
	setInMemoryBody(&r, bytes.Clone(pb.b[pb.off:]))
	return &r
}

// reqWriteExcluded reports the header keys http.Request.Write writes
// itself or never (its reqWriteExcludeHeader).
func reqWriteExcluded(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// maxFastHeaderKeys bounds the header keys writeRequestFast sorts on the
// stack; a request with more goes through http.Request.Write.
const maxFastHeaderKeys = 24

// writeRequestFast writes req to bw as http.Request.Write would, for a
// request it recognises: a payloadBody of ContentLength bytes, host the
// already checked Host, no trace, no Close, Transfer-Encoding or Trailer,
// and header keys and values that Write would write unchanged. Nothing is
// flushed (the send check still comes before the first byte leaves): a
// body that does not fit in bw's free space with the head is not written
// but returned as rest, for the caller to write after the head (then a
// batch's body goes out in one or two writes, not one per buffer's worth
// as Write's copy through bw would send it). It reports false, having
// written nothing, for any other request. On true req's body is consumed,
// as Write consumes it.
func writeRequestFast(bw *bufio.Writer, req *http.Request, host string) (rest []byte, ok bool) {
	pb, ok := req.Body.(*payloadBody)
	if !ok || pb.off != 0 || int64(len(pb.b)) != req.ContentLength || len(pb.b) == 0 ||
		req.Close || req.TransferEncoding != nil || req.Trailer != nil || req.Method == "" ||
		(req.Host != "" && req.Host != host) || req.URL.Host != host {
		return nil, false
	}
	if httptrace.ContextClientTrace(req.Context()) != nil {
		return nil, false
	}
	ruri := req.URL.RequestURI()
	for i := 0; i < len(ruri); i++ {
		if b := ruri[i]; b < ' ' || b == 0x7f {
			return nil, false
		}
	}
	ua := "Go-http-client/1.1"
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
		if !plainHeaderValue(ua) {
			return nil, false
		}
	}
	var keysBuf [maxFastHeaderKeys]string
	keys := keysBuf[:0]
	size := len(req.Method) + len(ruri) + len(host) + len(ua) + 64
	for k, vs := range req.Header {
		if reqWriteExcluded(k) {
			continue
		}
		if len(keys) == len(keysBuf) || !plainHeaderKey(k) {
			return nil, false
		}
		for _, v := range vs {
			if !plainHeaderValue(v) {
				return nil, false
			}
			size += len(k) + len(v) + 4
		}
		// Insertion sort: a request has a handful of keys.
		i := len(keys)
		keys = append(keys, k)
		for ; i > 0 && keys[i-1] > k; i-- {
			keys[i] = keys[i-1]
		}
		keys[i] = k
	}
	if size >= bw.Available() {
		return nil, false
	}
	rest = pb.b
	if size+len(pb.b) < bw.Available() {
		rest = nil
	}
	_, _ = bw.WriteString(req.Method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(ruri)
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(host)
	_, _ = bw.WriteString("\r\n")
	if ua != "" {
		_, _ = bw.WriteString("User-Agent: ")
		_, _ = bw.WriteString(ua)
		_, _ = bw.WriteString("\r\n")
	}
	_, _ = bw.WriteString("Content-Length: ")
	_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
	_, _ = bw.WriteString("\r\n")
	for _, k := range keys {
		for _, v := range req.Header[k] {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(v)
			_, _ = bw.WriteString("\r\n")
		}
	}
	_, _ = bw.WriteString("\r\n")
	if rest == nil {
		_, _ = bw.Write(pb.b)
	}
	pb.off = len(pb.b)
	return rest, true
}

// plainHeaderKey reports whether k is a header field name net/http writes
// (a token).
func plainHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

// isTokenByte reports whether c may appear in an HTTP token (RFC 9110).
func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// plainHeaderValue reports whether net/http writes v unchanged: no line
// break (replaced by a space) and no leading or trailing white space
// (trimmed).
func plainHeaderValue(v string) bool {
	if v == "" {
		return true
	}
	if isWhite(v[0]) || isWhite(v[len(v)-1]) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' {
			return false
		}
	}
	return true
}

func isWhite(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// readResponseFast reads the response to req from br as http.ReadResponse
// would, when its header is already buffered whole (one read usually
// brings it) and is one it recognises: "HTTP/1.1 DDD reason", a final
// status (not 1xx), plain "Name: value" lines (no folding, no Connection
// but "keep-alive", no Transfer-Encoding, Trailer or Pragma), and for a status that has a body
// exactly one Content-Length; req is not HEAD. Otherwise it reports false
// having consumed nothing (the buffered bytes stay for ReadResponse).
func readResponseFast(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	if req.Method == http.MethodHead {
		return nil, false
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false
	}
	// One string holds the header (lines, each ending in CRLF): the
	// status text, keys and values are parts of it, not a string each.
	head := string(buf[:end+2])
	line, rest, _ := strings.Cut(head, "\r\n")
	// "HTTP/1.1 " + 3 digits, then nothing or " " and a reason.
	if len(line) < 12 || line[:9] != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return nil, false
	}
	code := 0
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 {
		return nil, false
	}
	for _, c := range []byte(line[12:]) {
		if c < ' ' || c == 0x7f {
			return nil, false
		}
	}
	hasBody := code != http.StatusNoContent && code != http.StatusNotModified
	lines := strings.Count(rest, "\r\n")
	// The response, its body and the header's values share one
	// allocation.
	fr := new(fastResponse)
	h := make(http.Header, lines)
	vals := fr.vals[:0]
	if lines > len(fr.vals) {
		vals = make([]string, 0, lines)
	}
	cl := int64(-1)
	for len(rest) > 0 {
		var l string
		l, rest, _ = strings.Cut(rest, "\r\n")
		k, v, ok := strings.Cut(l, ":")
		if !ok || len(k) == 0 {
			return nil, false
		}
		for _, c := range []byte(k) {
			if !isTokenByte(c) {
				return nil, false
			}
		}
		v = strings.Trim(v, " \t")
		for _, c := range []byte(v) {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return nil, false
			}
		}
		key := http.CanonicalHeaderKey(k)
		switch key {
		case "Connection":
			// "keep-alive" (nginx sends it) changes nothing in HTTP/1.1;
			// "close" (ReadResponse then deletes the header) and other
			// tokens are left to ReadResponse.
			if !strings.EqualFold(v, "keep-alive") {
				return nil, false
			}
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false
		case "Content-Length":
			if cl >= 0 || len(v) == 0 || len(v) > 18 {
				return nil, false
			}
			n := int64(0)
			for _, c := range []byte(v) {
				if c < '0' || c > '9' {
					return nil, false
				}
				n = n*10 + int64(c-'0')
			}
			cl = n
		}
		vals = append(vals, v)
		if prev, ok := h[key]; ok {
			h[key] = append(prev, v) // prev's capacity ends with it: a copy
		} else {
			h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	if hasBody && cl < 0 {
		return nil, false // a body up to the connection's close
	}
	resp := &fr.resp
	*resp = http.Response{
		Status: line[9:], StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Request: req, ContentLength: cl,
	}
	_, _ = br.Discard(end + 4)
	switch {
	case !hasBody:
		resp.ContentLength, resp.Body = 0, http.NoBody
	case cl == 0:
		resp.Body = http.NoBody
	default:
		fr.body = lengthBody{r: br, n: cl}
		resp.Body = &fr.body
	}
	return resp, true
}

// fastResponse is what readResponseFast allocates for a response: the
// response, its body's reader and room for the values of a header of up
// to four lines.
type fastResponse struct {
	resp http.Response
	body lengthBody
	vals [4]string
}

// lengthBody is a response body of n bytes from r, read as net/http's
// body reads a Content-Length body: io.EOF with the last bytes,
// io.ErrUnexpectedEOF when r ends first.
type lengthBody struct {
	r *bufio.Reader
	n int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if err == nil && b.n == 0 {
		err = io.EOF
	}
	return n, err
}

func (*lengthBody) Close() error { return nil }
