package triggers

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in a configuration file. Line and Col are 1-based; a zero
// Line means the position is unknown (the whole file).
type Pos struct {
	// File is the path the configuration was read from.
	File string
	// Line is the 1-based line (0: unknown).
	Line int
	// Col is the 1-based column.
	Col int
}

// String formats p as FILE:LINE:COL (FILE alone when the line is unknown).
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Problem is one configuration problem at a position: an error of a
// ValidationError, or a warning of Config.Warnings.
type Problem struct {
	// Pos is where the problem is.
	Pos Pos
	// Message says what is wrong and, where it helps, what would be right.
	// It never contains a secret.
	Message string
	// Trigger names the trigger a warning (Config.Warnings) is about, for
	// one about a trigger's own settings: what its match, payload, batch
	// or retry lists very likely get wrong. Its position may be in the
	// defaults section, where the trigger got the setting from. "" for a
	// warning about the file (an endpoint, admin.token) and for every
	// error.
	Trigger string
}

// String formats the problem as FILE:LINE:COL: message.
func (p Problem) String() string { return p.Pos.String() + ": " + p.Message }

// ValidationError holds every problem found in a configuration, sorted by
// position. Load and Parse return it (as error) whenever a file is rejected,
// so that one run reports all problems at once.
type ValidationError struct {
	// Problems are the problems found, sorted by position; never empty.
	Problems []Problem
}

// Error formats every problem on its own line as FILE:LINE:COL: message.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems by file, line, column, message and trigger
// and drops exact duplicates (a defaults entry is checked once per trigger
// that inherits it).
func sortProblems(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
			cmp.Compare(a.Message, b.Message),
			cmp.Compare(a.Trigger, b.Trigger),
		)
	})
	return slices.Compact(ps)
}

// Suggest returns the candidate s was most likely meant to be, or "". It
// is the rule behind every "did you mean" of the configuration and the
// CLI: the candidate closest to s (case-insensitive edit distance) when it
// is close enough to be a plausible typo; otherwise the one candidate that
// s is a part of, or that is a part of s, at an underscore ("attempts" for
// max_attempts, "payload_format" for format), when that part is at least
// five letters long. Word parts at the end are tried first: in a compound
// name the last word names the thing.
//
// Its cost stays bounded by the candidates whatever s is (a name from a URL
// or a command line may be long): a candidate whose length differs from
// s's by more than the distance allowed cannot be that close, so the edit
// distance, quadratic in the lengths, is computed only for the others.
func Suggest(s string, candidates []string) string {
	best, bestDist := "", 0
	limit := max(1, min(3, len(s)/3))
	ls := strings.ToLower(s)
	for _, c := range candidates {
		lc := strings.ToLower(c)
		if len(ls)-len(lc) > limit || len(lc)-len(ls) > limit {
			continue // the edit distance is at least the length difference
		}
		d := editDistance(ls, lc)
		if best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best != "" && bestDist <= limit {
		return best
	}
	for _, part := range []func(long, short string) bool{
		func(long, short string) bool { return strings.HasSuffix(long, "_"+short) },
		func(long, short string) bool { return strings.HasPrefix(long, short+"_") },
	} {
		found := ""
		for _, c := range candidates {
			long, short := ls, strings.ToLower(c)
			if len(short) > len(long) {
				long, short = short, long // only a longer name can hold the other at an underscore
			}
			if len(short) < 5 || !part(long, short) {
				continue
			}
			if found != "" {
				found = ""
				break
			}
			found = c
		}
		if found != "" {
			return found
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
