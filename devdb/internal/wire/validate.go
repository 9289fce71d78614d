package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MaxDepth is the deepest nesting the parsers accept in a document of a
// message: the document itself is level 1, every embedded document, array
// or code-with-scope scope adds one. It is MongoDB's limit for incoming
// BSON (maxBSONDepth 200 plus 20 levels of command overhead); stored
// documents have their own, lower limit.
const MaxDepth = 220

// ErrTooDeep is returned (wrapped) by the parsers for a document nested
// deeper than MaxDepth. It corresponds to MongoDB's Overflow (15); the
// message is answered with an error and the connection stays usable.
var ErrTooDeep = errors.New("BSONObj exceeded maximum nested object depth")

// validateDocument checks that doc is structurally valid BSON nested at most
// MaxDepth levels. The nesting is walked with an explicit stack, never by
// recursion, so no input can exhaust the goroutine stack; only documents
// within the limit reach the driver's (recursive) validation.
func validateDocument(doc []byte) error {
	if err := checkDepth(doc, MaxDepth); err != nil {
		return err
	}
	if err := bson.Raw(doc).Validate(); err != nil {
		return fmt.Errorf("invalid BSON: %v: %w", err, ErrMalformed)
	}
	return nil
}

// frame is one open document of checkDepth's walk.
type frame struct {
	end   int // offset just past the document's terminating 0x00
	after int // for a code-with-scope scope: where the element must end; else 0
}

// checkDepth walks the element structure of doc iteratively and fails with
// ErrTooDeep when a document is nested deeper than max levels, or with
// ErrMalformed when a length or terminator is inconsistent.
func checkDepth(doc []byte, max int) error {
	malformed := func(what string, off int) error {
		return fmt.Errorf("invalid BSON: %s at offset %d: %w", what, off, ErrMalformed)
	}
	if len(doc) < 5 || int(int32(binary.LittleEndian.Uint32(doc))) != len(doc) {
		return malformed("document length", 0)
	}
	stack := []frame{{end: len(doc)}}
	pos := 4
	i32 := func(at, end int) (int, bool) {
		if at+4 > end {
			return 0, false
		}
		return int(int32(binary.LittleEndian.Uint32(doc[at:]))), true
	}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		if pos >= top.end {
			return malformed("missing document terminator", pos)
		}
		t := doc[pos]
		if t == 0 {
			if pos+1 != top.end {
				return malformed("document terminator before its declared end", pos)
			}
			pos++
			stack = stack[:len(stack)-1]
			if top.after != 0 && pos != top.after {
				return malformed("code-with-scope length", pos)
			}
			continue
		}
		pos++
		nul := bytes.IndexByte(doc[pos:top.end], 0)
		if nul < 0 {
			return malformed("unterminated field name", pos)
		}
		pos += nul + 1
		fixed := -1
		switch t {
		case 0x01, 0x09, 0x11, 0x12: // double, datetime, timestamp, int64
			fixed = 8
		case 0x06, 0x0A, 0xFF, 0x7F: // undefined, null, minKey, maxKey
			fixed = 0
		case 0x07: // ObjectId
			fixed = 12
		case 0x08: // bool
			fixed = 1
		case 0x10: // int32
			fixed = 4
		case 0x13: // decimal128
			fixed = 16
		case 0x02, 0x0D, 0x0E: // string, JavaScript code, symbol
			n, ok := i32(pos, top.end)
			if !ok || n < 1 || pos+4+n > top.end {
				return malformed("string length", pos)
			}
			fixed = 4 + n
		case 0x0C: // DBPointer: string + ObjectId
			n, ok := i32(pos, top.end)
			if !ok || n < 1 || pos+4+n+12 > top.end {
				return malformed("DBPointer length", pos)
			}
			fixed = 4 + n + 12
		case 0x05: // binary
			n, ok := i32(pos, top.end)
			if !ok || n < 0 || pos+5+n > top.end {
				return malformed("binary length", pos)
			}
			fixed = 5 + n
		case 0x0B: // regex: two C strings
			end := pos
			for range 2 {
				nul := bytes.IndexByte(doc[end:top.end], 0)
				if nul < 0 {
					return malformed("unterminated regex", pos)
				}
				end += nul + 1
			}
			fixed = end - pos
		case 0x03, 0x04: // embedded document, array
			n, ok := i32(pos, top.end)
			if !ok || n < 5 || pos+n > top.end {
				return malformed("embedded document length", pos)
			}
			if len(stack) >= max {
				return fmt.Errorf("%w: %d", ErrTooDeep, max)
			}
			stack = append(stack, frame{end: pos + n})
			pos += 4
			continue
		case 0x0F: // code with scope: int32 total, string, document
			total, ok := i32(pos, top.end)
			if !ok || total < 14 || pos+total > top.end {
				return malformed("code-with-scope length", pos)
			}
			n, ok := i32(pos+4, pos+total)
			if !ok || n < 1 || pos+8+n+5 > pos+total {
				return malformed("code-with-scope string length", pos)
			}
			scope := pos + 8 + n
			sn, ok := i32(scope, pos+total)
			if !ok || sn < 5 || scope+sn != pos+total {
				return malformed("code-with-scope scope length", pos)
			}
			if len(stack) >= max {
				return fmt.Errorf("%w: %d", ErrTooDeep, max)
			}
			stack = append(stack, frame{end: scope + sn, after: pos + total})
			pos = scope + 4
			continue
		default:
			return malformed(fmt.Sprintf("unknown element type 0x%02x", t), pos-1)
		}
		if pos+fixed > top.end {
			return malformed("truncated element", pos)
		}
		pos += fixed
	}
	if pos != len(doc) {
		return malformed("trailing bytes", pos)
	}
	return nil
}
