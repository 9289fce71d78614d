package triggers

import (
	"fmt"
	"strings"

	"github.com/changehook/changehook/internal/textcut"
)

// LookupEnv looks up an environment variable; os.LookupEnv in production,
// a map lookup in tests.
type LookupEnv func(name string) (value string, ok bool)

// interpolationError is a problem at a byte offset of the interpolated value.
type interpolationError struct {
	offset int
	msg    string
	unset  bool // the variable is not set (the reference is well formed)
}

// interpolate expands ${VAR} and ${VAR:-default} in s.
//
// ${VAR} is replaced by the variable's value and is an error when VAR is
// unset; ${VAR:-default} gives default when VAR is unset or empty (the shell's
// rule). $${ writes a literal "${". Any other "$" is kept as is, so MongoDB
// operators and aggregation variables ("$lt", "$$ROOT") need no escaping.
// The default is literal text up to the first "}"; it is not expanded again.
func interpolate(s string, env LookupEnv) (string, []interpolationError) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var (
		b    strings.Builder
		errs []interpolationError
	)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '$' && strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case c == '$' && strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				errs = append(errs, interpolationError{offset: i, msg: `unterminated "${": close it with "}" or write "$${" for a literal "${"`})
				b.WriteString(s[i:])
				i = len(s)
				continue
			}
			body := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(body, ":-")
			switch {
			case !validVarName(name) && strings.Contains(name, "."):
				// ${fullDocument._id}: a template's placeholder.
				errs = append(errs, interpolationError{offset: i, msg: fmt.Sprintf("invalid environment variable name %s in %s: ${...} reads the environment "+
					"when the file is loaded; a field of the change event is written as a field path in webhook.payload, e.g. "+
					`{$concat: ["Order ", {$toString: "$%s"}]} (write "$${" for a literal "${")`, textcut.Quote(name), textcut.Quote("${"+body+"}"), textcut.Marked(name, textcut.QuoteLimit))})
			case !validVarName(name):
				errs = append(errs, interpolationError{offset: i, msg: fmt.Sprintf("invalid environment variable name %s in %s (use ${NAME} or ${NAME:-default})", textcut.Quote(name), textcut.Quote("${"+body+"}"))})
			default:
				v, ok := env(name)
				switch {
				case hasDef && (!ok || v == ""):
					b.WriteString(def)
				case ok:
					b.WriteString(v)
				default:
					errs = append(errs, interpolationError{offset: i, unset: true, msg: fmt.Sprintf("environment variable %s is not set (set it, or give a default: ${%s:-default})",
						textcut.Marked(name, textcut.QuoteLimit), textcut.Marked(name, textcut.QuoteLimit))})
				}
			}
			i += 2 + end + 1
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), errs
}

// validVarName reports whether name is a POSIX-style variable name.
func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
