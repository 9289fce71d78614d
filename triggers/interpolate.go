package triggers

import (
	"fmt"
	"strconv"
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
// The shell's other forms (${VAR:=default}, ${VAR:?message}, ${VAR-default}
// ...) and a malformed name are errors that quote only the name and the
// operator, never what follows them: a default may be a literal secret. A
// name holding "." (${fullDocument.total}, ${fullDocument.total:-0}) is a
// template's placeholder: its error says to write a field path in
// webhook.payload instead.
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
			// The name ends where an operator starts; what follows the
			// operator (a default, a message) may be a literal secret and
			// is never quoted in a problem.
			name, op := body, ""
			if k := strings.IndexAny(body, refOperatorStart); k >= 0 {
				name, op = body[:k], refOperator(body[k:])
			}
			shown := textcut.Quote("${" + name + op + elided(body, name, op) + "}")
			switch {
			case strings.Contains(name, "."):
				// ${fullDocument._id}, ${fullDocument.total:-0}: a
				// template's placeholder, with a default or not (shown
				// elided, as everywhere).
				errs = append(errs, interpolationError{offset: i, msg: fmt.Sprintf("invalid environment variable name %s in %s: ${...} reads the environment "+
					"when the file is loaded; a field of the change event is written as a field path in webhook.payload, e.g. "+
					`{$concat: ["Order ", {$toString: "$%s"}]} (write "$${" for a literal "${")`, textcut.Quote(name), shown, textcut.Marked(name, textcut.QuoteLimit))})
			case !validVarName(name):
				errs = append(errs, interpolationError{offset: i, msg: fmt.Sprintf("invalid environment variable name %s in %s (use ${NAME} or ${NAME:-default})", textcut.Quote(name), shown)})
			case op != "" && op != ":-":
				errs = append(errs, interpolationError{offset: i, msg: fmt.Sprintf("unsupported form %s in %s: %s", strconv.Quote(op), shown, unsupportedAdvice(op, textcut.Marked(name, textcut.QuoteLimit)))})
			default:
				def := strings.TrimPrefix(body[len(name):], op)
				v, ok := env(name)
				switch {
				case op == ":-" && (!ok || v == ""):
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

// refOperatorStart holds the bytes that start an operator after a
// reference's name: the supported ":-" and the shell's other forms
// (":=", ":?", ":+", "-", "=", "?", "+", "#", "%", "/", ":offset").
const refOperatorStart = ":-=?+#%/"

// refOperator returns the operator at the start of rest, which starts
// with a byte of refOperatorStart: ":" and the byte after it, or that
// byte alone.
func refOperator(rest string) string {
	if rest[0] == ':' && len(rest) > 1 && strings.IndexByte(refOperatorStart, rest[1]) >= 0 {
		return rest[:2]
	}
	return rest[:1]
}

// elided is what a problem shows after a reference's name and operator:
// "..." when anything follows them (a default, a message, a pattern,
// possibly a literal secret), else nothing.
func elided(body, name, op string) string {
	if len(body) > len(name)+len(op) {
		return "..."
	}
	return ""
}

// unsupportedAdvice says what to write instead of the shell form op in a
// reference to name.
func unsupportedAdvice(op, name string) string {
	switch op {
	case ":=", "=":
		return "the shell's assign-default form is not supported; write ${" + name + ":-default} for a default when " + name + " is unset or empty"
	case ":?", "?":
		return "the shell's error-if-unset form is not supported; write ${" + name + "}, which is already an error naming " + name + " when it is not set"
	case "-":
		return "the shell's default-if-unset form is not supported; write ${" + name + ":-default} (the default is also used when " + name + " is empty)"
	default:
		return "only ${" + name + "} and ${" + name + ":-default} are supported"
	}
}
