package triggers

import (
	"fmt"
	"log/slog"
)

// RedactedMask is what every secret prints as.
const RedactedMask = "<secret>"

// Secret is a configuration value that must never be shown: a webhook
// signing key, a header value. Printing it with any fmt verb, marshalling it
// to JSON or text and logging it with log/slog all produce RedactedMask; the
// value itself is only available through Reveal, so every use of it is
// explicit in the code. The zero value is the empty secret.
type Secret string

// Reveal returns the secret's value. Call it only where the value is used
// (signing, sending a header), never to display it.
func (s Secret) Reveal() string { return string(s) }

// String returns RedactedMask.
func (Secret) String() string { return RedactedMask }

// GoString returns RedactedMask quoted, so %#v shows a string literal
// without the value.
func (Secret) GoString() string { return `"` + RedactedMask + `"` }

// Format prints RedactedMask for every verb (%v, %s, %q, %x, %d, ...).
func (Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", RedactedMask)
	case 'v':
		if f.Flag('#') {
			fmt.Fprint(f, `"`+RedactedMask+`"`)
			return
		}
		fmt.Fprint(f, RedactedMask)
	default:
		fmt.Fprint(f, RedactedMask)
	}
}

// MarshalJSON returns RedactedMask as a JSON string.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + RedactedMask + `"`), nil }

// MarshalText returns RedactedMask (also used for secrets as map keys and by
// encoders that prefer text, such as YAML).
func (Secret) MarshalText() ([]byte, error) { return []byte(RedactedMask), nil }

// LogValue returns RedactedMask as a slog string value.
func (Secret) LogValue() slog.Value { return slog.StringValue(RedactedMask) }
