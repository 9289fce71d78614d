package dispatcher

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// This file is a direct bson.Raw → Extended JSON encoder. It produces exactly
// the bytes of the driver's bson.MarshalExtJSON(raw, canonical, false) (the
// v2 extJSONValueWriter fed by its BSON copier), without reflection and into
// a caller-supplied buffer. It only encodes documents that are well formed
// all the way down (every length consistent, every string NUL-terminated,
// booleans 0 or 1, known types); for anything else appendExtJSON reports
// false and the caller falls back to the driver, which then produces its own
// output or error. The differential tests (extjson_test.go) and
// FuzzExtJSONMatchesDriver hold the two to byte equality.
//
// It earns its keep (BENCHMARKS.md): building a payload costs 344 ns and 1
// allocation against about 3 µs and 53 allocations for the driver; in the
// end-to-end profile BuildPayload fell from 9.3% of all samples (8.3 µs per
// event) to 2.1% (1.5 µs), and the runner's CPU per event from 38–46 µs to
// 30–32 µs (per_document, none).

// rfc3339Milli is the driver's relaxed $date layout.
const rfc3339Milli = "2006-01-02T15:04:05.999Z07:00"

// BSON type bytes.
const (
	tDouble     = 0x01
	tString     = 0x02
	tDocument   = 0x03
	tArray      = 0x04
	tBinary     = 0x05
	tUndefined  = 0x06
	tObjectID   = 0x07
	tBoolean    = 0x08
	tDateTime   = 0x09
	tNull       = 0x0A
	tRegex      = 0x0B
	tDBPointer  = 0x0C
	tJavaScript = 0x0D
	tSymbol     = 0x0E
	tCodeScope  = 0x0F
	tInt32      = 0x10
	tTimestamp  = 0x11
	tInt64      = 0x12
	tDecimal    = 0x13
	tMinKey     = 0xFF
	tMaxKey     = 0x7F
)

// extJSONBufPool holds scratch buffers for encoding payloads.
var extJSONBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBuf bounds the buffers returned to extJSONBufPool.
const maxPooledBuf = 1 << 20

// marshalExtJSON returns the Extended JSON of doc, byte for byte what
// bson.MarshalExtJSON(doc, canonical, false) returns (including its failure
// on malformed input). The result is a fresh slice owned by the caller.
func marshalExtJSON(doc []byte, canonical bool) ([]byte, error) {
	out, ok := marshalExtJSONFast(doc, canonical, false)
	if ok {
		return out, nil
	}
	return bson.MarshalExtJSON(bson.Raw(doc), canonical, false)
}

// marshalExtJSONFast encodes doc with the direct encoder into a pooled
// scratch buffer and returns a copy; ok is false if doc is not well formed.
func marshalExtJSONFast(doc []byte, canonical, fromDoc bool) ([]byte, bool) {
	bp := extJSONBufPool.Get().(*[]byte)
	buf, ok := appendExtJSON((*bp)[:0], doc, canonical, fromDoc)
	var out []byte
	if ok {
		out = make([]byte, len(buf))
		copy(out, buf)
	}
	if cap(buf) <= maxPooledBuf {
		*bp = buf[:0]
		extJSONBufPool.Put(bp)
	}
	return out, ok
}

// appendExtJSON appends the Extended JSON of the BSON document doc to dst.
// Bytes after doc's declared length are ignored (as the driver does). ok is
// false when doc is not strictly well formed; dst's contents are then
// unspecified.
func appendExtJSON(dst, doc []byte, canonical, fromDoc bool) ([]byte, bool) {
	if len(doc) < 5 {
		return dst, false
	}
	n := int(int32(binary.LittleEndian.Uint32(doc)))
	if n < 5 || n > len(doc) {
		return dst, false
	}
	e := extJSONEncoder{canonical: canonical, fromDoc: fromDoc}
	return e.document(dst, doc[:n], false)
}

// extJSONEncoder holds an encoding's settings. Its methods append to the
// buffer they are given and return it: passed in registers, not stored
// through a pointer (a store of the buffer into a heap-reachable encoder
// costs a write barrier while the garbage collector runs, and the encoder
// appends several times per field).
type extJSONEncoder struct {
	canonical bool
	// fromDoc: the BSON was written by bson.Marshal from a bson.D. An empty
	// old binary (subtype 2, 4 bytes: the inner length 0) then has two
	// driver answers: "" when the driver's JSON path wrote it from a Go
	// value, "AAAAAA==" (its bytes) when it copied it from BSON bytes (a
	// code-with-scope scope, an embedded bson.Raw). The encoder declines it,
	// and marshalDocExtJSON falls back to the driver.
	fromDoc bool
}

// document appends the document or array d (exactly its declared length,
// checked by the caller) to b as a JSON object or array; ok is false when
// d is not well formed.
func (e *extJSONEncoder) document(b, d []byte, array bool) (_ []byte, ok bool) {
	if d[len(d)-1] != 0 {
		return b, false
	}
	open, close := byte('{'), byte('}')
	if array {
		open, close = '[', ']'
	}
	b = append(b, open)
	p := 4
	end := len(d) - 1 // the terminating NUL
	elems := d[:end]
	for p < end {
		t := d[p]
		p++
		if t == 0 {
			return b, false // NUL before the end
		}
		// The key: scan the bytes that need no escaping (keys are short,
		// and almost never need any); d[end] is NUL, so the scan stops
		// there at the latest. Any other stop means escaping, and the NUL
		// is searched for on.
		k := p
		for jsonSafe[d[p]] {
			p++
		}
		plain := d[p] == 0
		if !plain {
			i := bytes.IndexByte(d[p:end], 0)
			if i < 0 {
				return b, false
			}
			p += i
		}
		if p == end {
			return b, false
		}
		if k != 5 { // not the first element
			b = append(b, ',')
		}
		if !array {
			if plain {
				b = append(b, '"')
				b = append(b, d[k:p]...)
				b = append(b, '"', ':')
			} else {
				b = e.strFrom(b, d[k:p], 0)
				b = append(b, ':')
			}
		}
		b, p, ok = e.value(b, t, elems, p+1)
		if !ok {
			return b, false
		}
	}
	if p != end {
		return b, false
	}
	return append(b, close), true
}

// lenAt reads the int32 at d[p:]; ok is false if it does not fit.
func lenAt(d []byte, p int) (int, bool) {
	if p < 0 || len(d)-p < 4 {
		return 0, false
	}
	return int(int32(binary.LittleEndian.Uint32(d[p:]))), true
}

// stringAt reads a BSON string (int32 length including the NUL, bytes, NUL)
// at d[p:] and returns its content and the position after it.
func stringAt(d []byte, p int) ([]byte, int, bool) {
	// Small enough to be inlined: strings are most of a change event's
	// values.
	if p < 0 || len(d)-p < 5 {
		return nil, 0, false
	}
	n := int(int32(binary.LittleEndian.Uint32(d[p:])))
	if n <= 0 || n > len(d)-p-4 || d[p+3+n] != 0 {
		return nil, 0, false
	}
	return d[p+4 : p+3+n], p + 4 + n, true
}

// cstringAt reads a NUL-terminated string at d[p:].
func cstringAt(d []byte, p int) ([]byte, int, bool) {
	for i := p; i < len(d); i++ {
		if d[i] == 0 {
			return d[p:i], i + 1, true
		}
	}
	return nil, 0, false
}

// value appends the value of type t at d[p:] (d ends where the enclosing
// document's elements end) to b and returns the position after it.
func (e *extJSONEncoder) value(b []byte, t byte, d []byte, p int) (_ []byte, next int, ok bool) {
	switch t {
	case tDouble:
		if len(d)-p < 8 {
			return b, 0, false
		}
		b = e.double(b, math.Float64frombits(binary.LittleEndian.Uint64(d[p:])))
		return b, p + 8, true
	case tString:
		s, np, ok := stringAt(d, p)
		if !ok {
			return b, 0, false
		}
		b = e.str(b, s)
		return b, np, true
	case tDocument, tArray:
		n, ok := lenAt(d, p)
		if !ok || n < 5 || n > len(d)-p {
			return b, 0, false
		}
		if b, ok = e.document(b, d[p:p+n], t == tArray); !ok {
			return b, 0, false
		}
		return b, p + n, true
	case tBinary:
		n, ok := lenAt(d, p)
		if !ok || n < 0 || n > len(d)-p-5 {
			return b, 0, false
		}
		sub := d[p+4]
		data := d[p+5 : p+5+n]
		if sub == 0x02 && n == 4 && e.fromDoc {
			return b, 0, false
		}
		if sub == 0x02 && n > 4 {
			// Old binary: an inner length, which must agree.
			m, ok := lenAt(data, 0)
			if !ok || m != n-4 {
				return b, 0, false
			}
			data = data[4:]
		}
		b = append(b, `{"$binary":{"base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, `","subType":"`...)
		b = append(b, hexDigits[sub>>4], hexDigits[sub&0xF])
		b = append(b, `"}}`...)
		return b, p + 5 + n, true
	case tUndefined:
		b = append(b, `{"$undefined":true}`...)
		return b, p, true
	case tObjectID:
		if len(d)-p < 12 {
			return b, 0, false
		}
		b = append(b, `{"$oid":"`...)
		b = appendHex12(b, (*[12]byte)(d[p:p+12]))
		b = append(b, `"}`...)
		return b, p + 12, true
	case tBoolean:
		if len(d)-p < 1 || d[p] > 1 {
			return b, 0, false
		}
		if d[p] == 1 {
			b = append(b, "true"...)
		} else {
			b = append(b, "false"...)
		}
		return b, p + 1, true
	case tDateTime:
		if len(d)-p < 8 {
			return b, 0, false
		}
		b = e.date(b, int64(binary.LittleEndian.Uint64(d[p:])))
		return b, p + 8, true
	case tNull:
		b = append(b, "null"...)
		return b, p, true
	case tRegex:
		pat, np, ok := cstringAt(d, p)
		if !ok {
			return b, 0, false
		}
		opts, np, ok := cstringAt(d, np)
		if !ok {
			return b, 0, false
		}
		b = append(b, `{"$regularExpression":{"pattern":`...)
		b = e.str(b, pat)
		b = append(b, `,"options":`...)
		b = e.regexOptions(b, opts)
		b = append(b, `}}`...)
		return b, np, true
	case tDBPointer:
		ns, np, ok := stringAt(d, p)
		if !ok || len(d)-np < 12 {
			return b, 0, false
		}
		// The driver writes the namespace unescaped.
		b = append(b, `{"$dbPointer":{"$ref":"`...)
		b = append(b, ns...)
		b = append(b, `","$id":{"$oid":"`...)
		b = hex.AppendEncode(b, d[np:np+12])
		b = append(b, `"}}}`...)
		return b, np + 12, true
	case tJavaScript, tSymbol:
		s, np, ok := stringAt(d, p)
		if !ok {
			return b, 0, false
		}
		if t == tJavaScript {
			b = append(b, `{"$code":`...)
		} else {
			b = append(b, `{"$symbol":`...)
		}
		b = e.str(b, s)
		b = append(b, '}')
		return b, np, true
	case tCodeScope:
		total, ok := lenAt(d, p)
		if !ok || total < 4 || total > len(d)-p {
			return b, 0, false
		}
		cws := d[p : p+total]
		code, sp, ok := stringAt(cws, 4)
		if !ok {
			return b, 0, false
		}
		n, ok := lenAt(cws, sp)
		if !ok || n < 5 || sp+n != total {
			return b, 0, false
		}
		b = append(b, `{"$code":`...)
		b = e.str(b, code)
		b = append(b, `,"$scope":`...)
		if b, ok = e.document(b, cws[sp:], false); !ok {
			return b, 0, false
		}
		b = append(b, '}')
		return b, p + total, true
	case tInt32:
		if len(d)-p < 4 {
			return b, 0, false
		}
		v := int64(int32(binary.LittleEndian.Uint32(d[p:])))
		if e.canonical {
			b = append(b, `{"$numberInt":"`...)
			b = strconv.AppendInt(b, v, 10)
			b = append(b, `"}`...)
		} else {
			b = strconv.AppendInt(b, v, 10)
		}
		return b, p + 4, true
	case tTimestamp:
		if len(d)-p < 8 {
			return b, 0, false
		}
		i := binary.LittleEndian.Uint32(d[p:])
		ts := binary.LittleEndian.Uint32(d[p+4:])
		b = append(b, `{"$timestamp":{"t":`...)
		b = strconv.AppendUint(b, uint64(ts), 10)
		b = append(b, `,"i":`...)
		b = strconv.AppendUint(b, uint64(i), 10)
		b = append(b, `}}`...)
		return b, p + 8, true
	case tInt64:
		if len(d)-p < 8 {
			return b, 0, false
		}
		v := int64(binary.LittleEndian.Uint64(d[p:]))
		if e.canonical {
			b = append(b, `{"$numberLong":"`...)
			b = strconv.AppendInt(b, v, 10)
			b = append(b, `"}`...)
		} else {
			b = strconv.AppendInt(b, v, 10)
		}
		return b, p + 8, true
	case tDecimal:
		if len(d)-p < 16 {
			return b, 0, false
		}
		l := binary.LittleEndian.Uint64(d[p:])
		h := binary.LittleEndian.Uint64(d[p+8:])
		b = append(b, `{"$numberDecimal":"`...)
		b = append(b, bson.NewDecimal128(h, l).String()...)
		b = append(b, `"}`...)
		return b, p + 16, true
	case tMinKey:
		b = append(b, `{"$minKey":1}`...)
		return b, p, true
	case tMaxKey:
		b = append(b, `{"$maxKey":1}`...)
		return b, p, true
	}
	return b, 0, false
}

// double appends f as the driver writes it: relaxed as a JSON number with at least
// ".0" for integral values ({"$numberDouble": ...} for non-finite values),
// canonical always as {"$numberDouble":"..."}.
func (e *extJSONEncoder) double(b []byte, f float64) []byte {
	var special string
	switch {
	case math.IsInf(f, 1):
		special = "Infinity"
	case math.IsInf(f, -1):
		special = "-Infinity"
	case math.IsNaN(f):
		special = "NaN"
	}
	if special != "" {
		b = append(b, `{"$numberDouble":"`...)
		b = append(b, special...)
		return append(b, `"}`...)
	}
	if e.canonical {
		b = append(b, `{"$numberDouble":"`...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'G', -1, 64)
	plain := true
	for _, c := range b[start:] {
		if c == 'E' || c == '.' {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, ".0"...)
	}
	if e.canonical {
		b = append(b, `"}`...)
	}
	return b
}

// maxRelaxedDate is the first millisecond of the year 10000: relaxed
// Extended JSON writes dates from 1970 (0) up to before it as strings.
const maxRelaxedDate = 253402300800000

// date appends a BSON datetime (milliseconds since the epoch).
func (e *extJSONEncoder) date(b []byte, ms int64) []byte {
	if e.canonical || ms < 0 || ms >= maxRelaxedDate {
		b = append(b, `{"$date":{"$numberLong":"`...)
		b = strconv.AppendInt(b, ms, 10)
		return append(b, `"}}`...)
	}
	b = append(b, `{"$date":"`...)
	b = appendRFC3339Milli(b, ms)
	return append(b, `"}`...)
}

// appendRFC3339Milli appends the UTC time ms (milliseconds since the epoch,
// 0 <= ms < maxRelaxedDate) as time.Time.AppendFormat(rfc3339Milli) does
// (the fraction without trailing zeros, none for a whole second), without
// time's general layout interpreter: a change stream carries a wallTime
// and often dates in its documents, one formatting per date per event.
// TestAppendRFC3339MilliMatchesTime holds the two equal.
func appendRFC3339Milli(b []byte, ms int64) []byte {
	// Unsigned arithmetic (ms >= 0): a division by a constant is then a
	// multiplication and a shift, without the fix-ups for a negative
	// dividend.
	u := uint64(ms)
	days := u / 86400000
	rem := u % 86400000
	// Civil date from days since 1970-01-01 (Howard Hinnant's
	// days_from_civil inverse; days >= 0 here).
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	sec := rem / 1000
	frac := rem % 1000
	hh, mm, ss := sec/3600, sec/60%60, sec%60
	b = append(b,
		digits2[2*(y/100)], digits2[2*(y/100)+1], digits2[2*(y%100)], digits2[2*(y%100)+1], '-',
		digits2[2*m], digits2[2*m+1], '-',
		digits2[2*d], digits2[2*d+1], 'T',
		digits2[2*hh], digits2[2*hh+1], ':',
		digits2[2*mm], digits2[2*mm+1], ':',
		digits2[2*ss], digits2[2*ss+1])
	if frac != 0 {
		b = append(b, '.', byte('0'+frac/100))
		if frac%100 != 0 {
			b = append(b, byte('0'+frac/10%10))
			if frac%10 != 0 {
				b = append(b, byte('0'+frac%10))
			}
		}
	}
	return append(b, 'Z')
}

// regexOptions appends the options sorted by code point, as the driver
// writes them (it sorts the string's runes, so invalid UTF-8 becomes
// U+FFFD).
func (e *extJSONEncoder) regexOptions(b, opts []byte) []byte {
	ascii := true
	for _, c := range opts {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		rs := []rune(string(opts))
		for i := 1; i < len(rs); i++ {
			for j := i; j > 0 && rs[j] < rs[j-1]; j-- {
				rs[j], rs[j-1] = rs[j-1], rs[j]
			}
		}
		return e.str(b, []byte(string(rs)))
	}
	var small [16]byte
	var s []byte
	if len(opts) <= len(small) {
		s = small[:len(opts)]
	} else {
		s = make([]byte, len(opts))
	}
	copy(s, opts)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return e.str(b, s)
}

const hexDigits = "0123456789abcdef"

// appendHex12 appends the lowercase hex of an ObjectID's 12 bytes
// (hex.AppendEncode's output, in one append: every insert event carries
// its document's _id twice, in fullDocument and documentKey).
func appendHex12(b []byte, oid *[12]byte) []byte {
	var h [24]byte
	for i, c := range oid {
		pair := &hexPairs[c]
		h[2*i], h[2*i+1] = pair[0], pair[1]
	}
	return append(b, h[:]...)
}

// hexPairs[c] is the two lowercase hex digits of the byte c.
var hexPairs = func() (t [256][2]byte) {
	for c := range t {
		t[c] = [2]byte{hexDigits[c>>4], hexDigits[c&0xF]}
	}
	return t
}()

// digits2 holds the two decimal digits of 0 to 99 at 2n and 2n+1.
const digits2 = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// jsonSafe[b] is true for the ASCII bytes the driver writes unescaped (HTML
// escaping off): everything from 0x20 up except '"' and '\\' (0x7F
// included); false for NUL and every byte from 0x80 (a byte indexes it
// without a bounds check).
var jsonSafe = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// str appends s as a JSON string with the driver's escaping: \" \\ \n \r
// \t \b \f, other control bytes as \u00XX, each invalid UTF-8 byte as
// \ufffd, U+2028 and U+2029 as \u2028 and \u2029; '<', '>' and '&'
// unescaped.
func (e *extJSONEncoder) str(b, s []byte) []byte {
	// Most strings (every key, most values) need no escaping: find the
	// first byte that may, eight bytes at a time, and copy the rest whole.
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if m := escapeMask(binary.LittleEndian.Uint64(s[i:])); m != 0 {
			return e.strFrom(b, s, i+bits.TrailingZeros64(m)>>3)
		}
	}
	if i < len(s) {
		if len(s) >= 8 {
			// The last eight bytes, overlapping the clean ones before i.
			j := len(s) - 8
			if m := escapeMask(binary.LittleEndian.Uint64(s[j:])); m != 0 {
				return e.strFrom(b, s, j+bits.TrailingZeros64(m)>>3)
			}
		} else {
			for ; i < len(s) && jsonSafe[s[i]]; i++ {
			}
			if i < len(s) {
				return e.strFrom(b, s, i)
			}
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// escapeMask returns, for the eight bytes of x (the first in the low
// byte), a mask whose lowest set bit is the high bit of the first byte that
// is a control byte (< 0x20, NUL included), a double quote, a backslash or
// not ASCII (>= 0x80); 0 when there is none. The bit tricks (Hacker's
// Delight's "has a zero byte" and "has a byte less than n") may also set
// bits of later bytes, never of earlier ones: only the lowest set bit and
// whether the mask is 0 are exact.
func escapeMask(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	lt20 := (x - ones*0x20) & ^x
	q := x ^ (ones * '"')
	quote := (q - ones) & ^q
	bs := x ^ (ones * '\\')
	backslash := (bs - ones) & ^bs
	return (lt20 | quote | backslash | x) & highs
}

// strFrom is str for s whose bytes before i need no escaping.
func (e *extJSONEncoder) strFrom(b, s []byte, i int) []byte {
	b = append(b, '"')
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
