package cli

import (
	"flag"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// extJSON renders a BSON value as relaxed Extended JSON for people; a value
// that cannot be rendered is shown with its Go formatting.
func extJSON(v any) string {
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		return "<unprintable>"
	}
	return string(b)
}

// extJSONIndent renders a document as indented relaxed Extended JSON.
func extJSONIndent(v any) string {
	b, err := bson.MarshalExtJSONIndent(v, false, false, "", "  ")
	if err != nil {
		return "<unprintable>"
	}
	return string(b)
}

// nextPageCommand returns the command line that shows the page after
// cursor, to paste as it is: the command of fs ("changehook dlq list"),
// the flags of keep that this invocation set, with their values (values
// replaces one, such as a --since duration resolved to the time it
// meant), then --after cursor. -c/--config comes first, as -c; the others
// follow keep's order; a boolean flag is written bare when true and left
// out when false. Only the flags in keep are repeated: a caller lists
// those that choose what is shown, never one that may carry a secret.
func nextPageCommand(fs *flag.FlagSet, keep []string, values map[string]string, cursor string) string {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	args := []string{fs.Name()}
	if set["c"] || set["config"] {
		args = append(args, "-c", shellQuote(fs.Lookup("c").Value.String()))
	}
	for _, name := range keep {
		f := fs.Lookup(name)
		if name == "c" || name == "config" || f == nil || !set[name] {
			continue
		}
		v, ok := values[name]
		if !ok {
			v = f.Value.String()
		}
		if b, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool && b.IsBoolFlag() {
			if v == "true" {
				args = append(args, "--"+name)
			}
			continue
		}
		args = append(args, "--"+name, shellQuote(v))
	}
	return strings.Join(append(args, "--after", shellQuote(cursor)), " ")
}

// shellQuote returns s as one word of a POSIX shell command line: as it is
// when it holds only characters no shell treats specially, else in single
// quotes.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || slices.Contains([]rune("_@%+=:,./-"), r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
