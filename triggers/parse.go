package triggers

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/textcut"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"gopkg.in/yaml.v3"
)

// Limits that keep hostile files (alias bombs, deep nesting) cheap to reject.
const (
	maxConfigBytes = 4 << 20
	maxNodeVisits  = 200_000
	maxDepth       = 64
)

var (
	// Read-only after initialisation.
	triggerNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	yamlLineRE    = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// Load reads the configuration file at path and parses it with Parse. A
// file that cannot be read is os.ReadFile's *fs.PathError, which names the
// file (errors.Is(err, fs.ErrNotExist) when it does not exist).
func Load(path string, env LookupEnv) (*Config, error) {
	return LoadWith(path, env, Options{})
}

// Options change how LoadWith and ParseWith read a configuration.
type Options struct {
	// IgnoreMongoURI leaves mongodb.uri unread, for a caller that connects
	// elsewhere (changehook dev, to its devdb): the variables its ${VAR}s
	// name need not be set, it is not checked, and Config.MongoDB.URI is
	// "" for the caller to fill in.
	IgnoreMongoURI bool
	// IgnoreUnsetWebhookVars, for a caller that sends no request (the
	// state commands: dead-letter listings, history, checkpoints,
	// controls), leaves a webhook field unset instead of reporting a
	// problem when a ${VAR} of it names a variable that is not set: whoever
	// runs those commands need not hold the endpoints' secrets. Such a
	// field is empty in the Config (a URL, a secret, a header left out).
	IgnoreUnsetWebhookVars bool
}

// LoadWith is Load with opts.
func LoadWith(path string, env LookupEnv, opts Options) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	return ParseWith(path, data, env, opts)
}

// fileKind names the kind of file of a mode that is not a regular file.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file (" + m.Type().String() + ")"
}

// readConfigFile reads the configuration file at path: a regular file
// (through links) of at most maxConfigBytes. Anything else is refused
// before it is read: a FIFO or a device would block or never end, and a
// huge file would be read whole only to be refused. Its errors wrap the
// os package's (os.ErrNotExist for a missing file).
func readConfigFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read configuration %s: not a regular file but %s", path, fileKind(fi.Mode()))
	}
	if fi.Size() > maxConfigBytes {
		return nil, fmt.Errorf("read configuration %s: %d bytes, more than the %d allowed", path, fi.Size(), maxConfigBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// At most one byte more than allowed: a file that grew since the
	// check is refused by ParseWith's size check, not read whole.
	return io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
}

// Parse parses, interpolates, defaults and validates a configuration file.
// filename is only used in messages. env resolves ${VAR} references (nil
// means no variable is set) and gives mongodb.uri its default when the file
// omits it: MONGODB_URI (MongoURIEnv) when set and not empty, else
// DefaultMongoURI.
//
// On any problem Parse returns a nil *Config and a *ValidationError holding
// every problem found, each formatted FILE:LINE:COL: message and sorted by
// position. Messages never contain secrets: signing keys, header values and
// the passwords of URLs are not echoed.
func Parse(filename string, data []byte, env LookupEnv) (*Config, error) {
	return ParseWith(filename, data, env, Options{})
}

// ParseWith is Parse with opts.
func ParseWith(filename string, data []byte, env LookupEnv, opts Options) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	d := &decoder{file: filename, env: env, opts: opts, budget: maxNodeVisits, stopAt: -1}
	cfg := d.parse(data)
	if d.stopAt >= 0 {
		d.problems = d.problems[:d.stopAt]
	}
	if len(d.problems) > 0 {
		return nil, &ValidationError{Problems: sortProblems(d.problems)}
	}
	cfg.Path = filename
	if len(d.warnings) > 0 {
		cfg.Warnings = sortProblems(d.warnings)
	}
	return cfg, nil
}

// decoder walks the YAML tree, collecting problems instead of stopping at
// the first one.
type decoder struct {
	file string
	data []byte // the file's text, to locate syntax errors in
	// lineStarts holds the offset of each line of data, once offsetOf
	// needed it.
	lineStarts []int
	// keyIndex indexes the keys of large mappings (keyAt).
	keyIndex map[*yaml.Node]map[string]int
	// last is offsetOf's previous answer.
	last     struct{ line, col, off int }
	env      LookupEnv
	opts     Options
	budget   int
	problems []Problem
	// warnings are what a valid file very likely gets wrong
	// (Config.Warnings).
	warnings []Problem
	// stopAt is the number of problems when the budget ran out (-1: it
	// did not): the ones after it are follow-ups of an unfinished walk
	// (fields not read, so "missing"), which Parse drops.
	stopAt int
	// poisoned holds scalars whose interpolation failed: they are already
	// reported, so validators skip them instead of adding follow-up noise.
	poisoned map[*yaml.Node]bool
	// unread is a scalar left as written, not interpolated
	// (Options.IgnoreMongoURI: mongodb.uri).
	unread *yaml.Node
	// quotedNumbers holds the quoted scalars whose ${VAR}s made text that
	// reads as a number (it stays a string), with their text as written.
	quotedNumbers map[*yaml.Node]string
}

// entry is one key/value pair of a mapping.
type entry struct {
	key, val *yaml.Node
}

// set reports whether the entry was present in the file.
func (e entry) set() bool { return e.val != nil }

func (d *decoder) pos(n *yaml.Node) Pos {
	if n == nil || n.Line == 0 {
		return Pos{File: d.file, Line: 1, Col: 1}
	}
	return Pos{File: d.file, Line: n.Line, Col: n.Column}
}

// errorf records a problem at n. A string argument is shown cut to a
// bounded length (see shown): a value quoted from the file may be
// megabytes long.
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = shown(s)
		}
	}
	d.problems = append(d.problems, Problem{Pos: d.pos(n), Message: fmt.Sprintf(format, args...)})
}

// warnf records a warning about the file at n (a setting outside the
// triggers and the defaults section), its arguments shown as errorf's are.
// A warning about a trigger's settings, own or from defaults, is
// warnTrigger's: run and dev leave a disabled trigger's out.
func (d *decoder) warnf(n *yaml.Node, format string, args ...any) {
	d.warnings = append(d.warnings, d.problem(n, format, args...))
}

// problem is a problem at n, its arguments shown as errorf's are.
func (d *decoder) problem(n *yaml.Node, format string, args ...any) Problem {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = shown(s)
		}
	}
	return Problem{Pos: d.pos(n), Message: fmt.Sprintf(format, args...)}
}

// maxShownText bounds a string argument of a problem's message printed
// with %s or %v (a composed message, an error's text).
const maxShownText = 1 << 10

// shown is a string argument of a problem's message: %q prints it as
// textcut.Quote does (its first textcut.QuoteLimit bytes and its length),
// any other verb at most maxShownText bytes of it (textcut.Marked).
type shown string

// Format implements fmt.Formatter.
func (s shown) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		io.WriteString(f, textcut.Quote(string(s)))
		return
	}
	io.WriteString(f, textcut.Marked(string(s), maxShownText))
}

func (d *decoder) parse(data []byte) *Config {
	if len(data) > maxConfigBytes {
		d.errorf(nil, "configuration is %d bytes, more than the %d allowed", len(data), maxConfigBytes)
		return nil
	}
	d.data = data
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "configuration is empty: at least one trigger is required")
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "configuration must be a single YAML document; remove this second document")
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(err)
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if d.opts.IgnoreMongoURI {
		d.unread = mongoURINode(d.file, doc)
	}
	d.interpolateTree(doc, false)

	cfg := &Config{
		MongoDB: MongoDBConfig{URI: DefaultMongoURI},
		State:   StateConfig{Database: DefaultStateDatabase},
		Admin: AdminConfig{Addr: DefaultAdminAddr, ReadTimeout: DefaultAdminReadTimeout, WriteTimeout: DefaultAdminWriteTimeout,
			IdleTimeout: DefaultAdminIdleTimeout, MaxConnections: DefaultAdminMaxConnections, RetryingUnreadyAfter: DefaultRetryingUnreadyAfter},
		Log:        LogConfig{Level: "info", Format: "text"},
		Cluster:    ClusterConfig{LeaseTTL: DefaultLeaseTTL, RenewEvery: DefaultLeaseTTL / 3},
		Checkpoint: CheckpointConfig{IdleInterval: DefaultCheckpointIdleInterval},
		Limits:     LimitsConfig{MaxInflightBytes: DefaultProcessMaxInflightBytes},
		History:    HistoryConfig{Enabled: true, Retention: DefaultHistoryRetention, MaxRecords: DefaultHistoryMaxRecords},
	}
	top := d.fields(doc, "configuration", []string{"mongodb", "state", "admin", "log", "cluster", "network", "endpoints", "checkpoint", "limits", "history", "defaults", "triggers"})
	if top == nil {
		return cfg
	}
	uriSet := false
	if e := top["mongodb"]; e.set() {
		f := d.fields(e.val, "mongodb", []string{"uri"})
		if u := f["uri"]; u.set() && !d.opts.IgnoreMongoURI {
			uriSet = true
			if s, ok := d.str(u, "mongodb.uri"); ok {
				cfg.MongoDB.URI = s
				if msg := checkMongoURI(s); msg != "" {
					d.errorf(u.val, "mongodb.uri: %s", msg)
				}
			}
		}
	}
	switch {
	case d.opts.IgnoreMongoURI:
		cfg.MongoDB.URI = ""
	case !uriSet:
		// The environment's deployment, as in the README's Kubernetes
		// and systemd examples, rather than a local default that is
		// silently not the one meant.
		if s, ok := d.env(MongoURIEnv); ok && s != "" {
			cfg.MongoDB.URI = s
			if msg := checkMongoURI(s); msg != "" {
				d.errorf(top["mongodb"].val, "mongodb.uri is omitted, so its default is %s from the environment, which is not valid: %s", MongoURIEnv, msg)
			}
		}
	}
	if e := top["state"]; e.set() {
		f := d.fields(e.val, "state", []string{"database"})
		if db := f["database"]; db.set() {
			if s, ok := d.str(db, "state.database"); ok {
				cfg.State.Database = s
				if msg := checkDatabaseName(s); msg != "" {
					d.errorf(db.val, "state.database: %s", msg)
				}
			}
		}
	}
	if e := top["admin"]; e.set() {
		f := d.fields(e.val, "admin", []string{"addr", "token", "read_timeout", "write_timeout", "idle_timeout", "max_connections", "retrying_unready_after"})
		cfg.Admin.ReadTimeout = d.duration(f["read_timeout"], "admin.read_timeout", cfg.Admin.ReadTimeout)
		cfg.Admin.WriteTimeout = d.duration(f["write_timeout"], "admin.write_timeout", cfg.Admin.WriteTimeout)
		cfg.Admin.IdleTimeout = d.duration(f["idle_timeout"], "admin.idle_timeout", cfg.Admin.IdleTimeout)
		cfg.Admin.RetryingUnreadyAfter = d.duration(f["retrying_unready_after"], "admin.retrying_unready_after", cfg.Admin.RetryingUnreadyAfter)
		cfg.Admin.MaxConnections = d.integer(f["max_connections"], "admin.max_connections", cfg.Admin.MaxConnections, 1, MaxAdminMaxConnections)
		if tok := f["token"]; tok.set() {
			if s, ok := d.str(tok, "admin.token"); ok {
				// "" is no token, as when omitted. A token that no
				// header can carry would lock the admin API.
				if hasControlChar(s) {
					d.errorf(deref(tok.val), "admin.token: must not contain control characters such as CR, LF or NUL (no Authorization header can carry them)")
				}
				cfg.Admin.Token = Secret(s)
				if ShortAdminToken(s) {
					d.warnf(deref(tok.val), "admin.token is shorter than %d characters: anyone who can reach the admin server may guess it; "+
						"use a long random one (openssl rand -hex 32)", MinAdminTokenLength)
				}
			}
		}
		if a := f["addr"]; a.set() {
			if s, ok := d.str(a, "admin.addr"); ok {
				cfg.Admin.Addr = s
				if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
					d.errorf(a.val, "admin.addr: %q is not a host:port address such as 127.0.0.1:9470", s)
				} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
					d.errorf(a.val, "admin.addr: port %q is not a number between 0 and 65535", port)
				}
			}
		}
	}
	if e := top["log"]; e.set() {
		f := d.fields(e.val, "log", []string{"level", "format"})
		cfg.Log.Level = d.enum(f["level"], "log.level", cfg.Log.Level, []string{"debug", "info", "warn", "error"})
		cfg.Log.Format = d.enum(f["format"], "log.format", cfg.Log.Format, []string{"text", "json"})
	}

	if e := top["cluster"]; e.set() {
		cfg.Cluster = d.cluster(e)
	}
	if e := top["checkpoint"]; e.set() {
		f := d.fields(e.val, "checkpoint", []string{"idle_interval"})
		cfg.Checkpoint.IdleInterval = d.durationIn(f["idle_interval"], "checkpoint.idle_interval", cfg.Checkpoint.IdleInterval,
			MinCheckpointIdleInterval, MaxDuration)
	}
	if e := top["limits"]; e.set() {
		f := d.fields(e.val, "limits", []string{"max_inflight_bytes"})
		cfg.Limits.MaxInflightBytes = d.byteSize(f["max_inflight_bytes"], "limits.max_inflight_bytes", cfg.Limits.MaxInflightBytes)
	}
	if e := top["history"]; e.set() {
		cfg.History = d.history(e, cfg.History)
	}

	var defs map[string]entry
	if e := top["defaults"]; e.set() {
		defs = d.fields(e.val, "defaults", triggerFields()[1:])
	}
	cfg.Defaults = d.trigger(nil, defs, top["defaults"].val, true)

	te := top["triggers"]
	if !te.set() {
		d.errorf(doc, "missing field \"triggers\": at least one trigger is required")
		return cfg
	}
	seq := deref(te.val)
	if seq.Kind != yaml.SequenceNode {
		d.errorf(seq, "triggers: expected a list of triggers, got %s", describe(seq))
		return cfg
	}
	if len(seq.Content) == 0 {
		d.errorf(seq, "triggers: at least one trigger is required")
	}
	first := map[string]*yaml.Node{}
	for _, item := range seq.Content {
		tf := d.fields(item, "trigger", triggerFields())
		if tf == nil {
			continue
		}
		t := d.trigger(tf, defs, deref(item), false)
		t.StateDatabase = cfg.State.Database
		if t.Database == cfg.State.Database {
			e := tf["database"]
			if !e.set() {
				e = defs["database"]
			}
			d.errorf(deref(e.val), "database: %q is changehook's state database (state.database), where it writes checkpoints and dead letters; a trigger on it would feed on changehook's own writes. Watch another database, or move state.database", t.Database)
		}
		if t.Name != "" {
			if prev, dup := first[t.Name]; dup {
				d.errorf(tf["name"].val, "duplicate trigger name %q (first declared at line %d)", t.Name, prev.Line)
			} else {
				first[t.Name] = tf["name"].val
			}
		}
		cfg.Triggers = append(cfg.Triggers, t)
	}
	d.applyPolicy(cfg, top)
	return cfg
}

// exhausted reports, once, that the walk ran out of its budget of visits at
// n (an alias bomb or a huge file). Every later problem is dropped: the
// walk no longer reads the fields, so they would read as missing.
func (d *decoder) exhausted(n *yaml.Node) {
	if d.stopAt >= 0 {
		return
	}
	d.errorf(n, "the file expands to more than %d values once aliases (*name) and merge keys (<<) are expanded and the defaults section is applied to every trigger, which looks like an alias bomb; "+
		"remove the repeated aliases, or shrink what defaults gives every trigger (checking stopped here)", maxNodeVisits)
	d.stopAt = len(d.problems)
}

// spend charges the walk's budget with cost values read at n (the items
// of a list or mapping read without collect or toBSON, which charge their
// own) and reports whether it holds; when it runs out, exhausted reports
// it. A list or mapping that the defaults section (or an alias) gives
// every trigger is read, and so charged, once per trigger. The few items
// of an ordinary list are free, so that they do not bring a large file of
// ordinary triggers closer to the budget.
func (d *decoder) spend(n *yaml.Node, cost int) bool {
	const free = 16
	if cost <= free {
		return true
	}
	d.budget -= cost
	if d.budget < 0 {
		d.exhausted(n)
		return false
	}
	return true
}

// syntaxError records a YAML syntax error at the line yaml.v3 names.
func (d *decoder) syntaxError(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			d.lineError(msg)
		}
		return
	}
	d.lineError(err.Error())
}

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to
// its scanner) errors, whose line numbers count from 0.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// hasControlChar reports whether s has a character no HTTP header value
// may carry: an ASCII control character other than horizontal tab.
func hasControlChar(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f })
}

// yamlProblemWhere says where to look for the mistake of a parser error
// that yaml.v3 reports at the line its enclosing collection starts on, not
// at the mistake's own line (used when breakingLine cannot find that line).
var yamlProblemWhere = map[string]string{
	"did not find expected '-' indicator": " (in the list that starts on this line: a line below it is indented differently from its items)",
	"did not find expected key":           " (in the mapping that starts on this line: a line below it is indented differently from its keys)",
	"did not find expected ',' or ']'":    " (in the [...] list that starts on this line)",
	"did not find expected ',' or '}'":    " (in the {...} mapping that starts on this line)",
}

// yamlIndentHint explains a block parser error at the line that causes it
// (see breakingLine); %d and %d are where the enclosing collection starts.
var yamlIndentHint = map[string]string{
	"did not find expected '-' indicator": " (its indentation matches no item or field above it; the list it is in starts at line %d, column %d)",
	"did not find expected key":           " (its indentation matches no field above it; the mapping it is in starts at line %d, column %d)",
}

// mappingValuesHint explains yaml.v3's "mapping values are not allowed in
// this context", reported at its own line: a key indented deeper than the
// keys above it (read as the continuation of the value before it), or a
// plain value with ": " in it.
const mappingValuesHint = " (a field indented deeper than the fields above it, or a value with \": \" in it, which needs quotes)"

func (d *decoder) lineError(msg string) {
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			// yaml.v3 numbers a parser error's line from 0 (its scanner
			// errors from 1): the line where the enclosing flow or block
			// collection starts.
			line++
		}
		col, where := 1, yamlProblemWhere[m[2]]
		switch m[2] {
		case "found a tab character that violates indentation":
			// Reported at the line where the value before the tab
			// starts: the tab is on a later line.
			if l, c, ok := indentTab(d.data, line, -1); ok {
				line, col, where = l, c, tabHint
			}
		case "found character that cannot start any token":
			if l, c, ok := indentTab(d.data, line, line); ok {
				line, col, where = l, c, tabHint
			}
		case "did not find expected ',' or '}'", "did not find expected ',' or ']'":
			if l, c, ok := flowReference(d.data, line); ok {
				line, col, where = l, c, flowReferenceHint
			}
		case "did not find expected '-' indicator", "did not find expected key":
			if l, start, ok := breakingLine(d.data, m[2], line); ok {
				startCol := indentCol(d.data, start)
				if m[2] == "did not find expected key" {
					startCol = mappingCol(d.data, start)
				}
				where = fmt.Sprintf(yamlIndentHint[m[2]], start, startCol)
				line, col = l, indentCol(d.data, l)
			}
		case "mapping values are not allowed in this context":
			col, where = indentCol(d.data, line), mappingValuesHint
		}
		d.problems = append(d.problems, Problem{Pos: Pos{File: d.file, Line: line, Col: col}, Message: "invalid YAML: " + textcut.Marked(m[2], maxShownText) + where})
		return
	}
	d.errorf(nil, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// breakingLine finds the line that makes yaml.v3 fail with a block
// parser error (problem, reported at line, 1-based) and the line where the
// enclosing list or mapping starts. yaml.v3 reports such an error at the
// collection's start, or at the breaking line itself when the collection
// starts on the document's first line. The search parses prefixes of data,
// whole lines, in a binary search: a prefix that ends before the breaking
// line parses (or fails otherwise), one that includes it fails the same
// way. False when it cannot confirm a line.
func breakingLine(data []byte, problem string, line int) (breaking, start int, ok bool) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(k int) bool {
		var n yaml.Node
		err := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		if err == nil {
			return false
		}
		m := yamlLineRE.FindStringSubmatch(err.Error())
		if m == nil || m[2] != problem {
			return false
		}
		l, _ := strconv.Atoi(m[1])
		return l+1 == line
	}
	if line < 1 || line > len(lines) {
		return 0, 0, false
	}
	if fails(line) {
		return line, 1, true // reported at its own line
	}
	lo, hi := line, len(lines)
	if !fails(hi) {
		return 0, 0, false
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, line, true
}

// indentCol returns the column of the first character of line (1-based)
// after its indentation; 1 when there is no such line.
func indentCol(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 1
	}
	l := lines[line-1]
	return 1 + utf8.RuneCount(l[:len(l)-len(bytes.TrimLeft(l, " "))])
}

// mappingCol returns the column where a block mapping starting on line
// (1-based) has its first key: after the line's indentation and any list
// item indicators ("- ") before the key.
func mappingCol(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 1
	}
	l := lines[line-1]
	rest := bytes.TrimLeft(l, " ")
	for len(rest) > 1 && rest[0] == '-' && rest[1] == ' ' {
		rest = bytes.TrimLeft(rest[1:], " ")
	}
	return 1 + utf8.RuneCount(l[:len(l)-len(rest)])
}

// flowReferenceHint explains a syntax error at an unquoted ${VAR} in a
// {...} or [...] collection, where "{" and "}" cannot be part of a plain
// value.
const flowReferenceHint = ` (a ${VAR} inside {...} or [...] must be quoted: "${VAR}")`

// flowReference finds an unquoted "${" in the flow collection that starts
// on line (1-based): on that line or on the more indented lines after it.
// It returns its line and column.
func flowReference(data []byte, line int) (int, int, bool) {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 0, 0, false
	}
	indentOf := func(l []byte) int { return len(l) - len(bytes.TrimLeft(l, " ")) }
	first := indentOf(lines[line-1])
	var quote byte // the quote of the scalar being read, or 0
	for n := line; n <= len(lines); n++ {
		l := lines[n-1]
		if n > line && quote == 0 && len(bytes.TrimSpace(l)) > 0 && indentOf(l) <= first {
			break
		}
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case quote == '"' && c == '\\':
				i++ // an escaped character
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '#' && (i == 0 || l[i-1] == ' '):
				i = len(l) // a comment
			case c == '$' && bytes.HasPrefix(l[i:], []byte("${")):
				return n, 1 + utf8.RuneCount(l[:i]), true
			}
		}
	}
	return 0, 0, false
}

// tabHint explains a YAML syntax error at a tab in a line's indentation.
const tabHint = " (a tab: YAML indents with spaces only)"

// indentTab finds the first line, from line from to line to (1-based; to
// -1: to the end), whose indentation holds a tab, and returns it and the
// tab's column.
func indentTab(data []byte, from, to int) (line, col int, ok bool) {
	for i, l := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		if n < from {
			continue
		}
		if to >= 0 && n > to {
			break
		}
		indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]
		if j := bytes.IndexByte(indent, '\t'); j >= 0 {
			return n, j + 1, true
		}
	}
	return 0, 0, false
}

// interpolateTree expands ${VAR} in every scalar value (never in keys).
// A plain scalar whose text changed is re-resolved, so that
// "concurrency: ${N:-4}" is an integer; quoted scalars stay strings. Every
// plain scalar is resolved by YAML 1.2's core schema (coreTag), not
// yaml.v3's mix with YAML 1.1: 010 is the integer ten, 1_000 a string.
func (d *decoder) interpolateTree(n *yaml.Node, inWebhook bool) {
	if n == nil || n == d.unread {
		return
	}
	if msg := tagProblem(n); msg != "" {
		d.errorf(n, "%s", msg)
		d.poison(n)
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			d.interpolateTree(c, inWebhook)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			d.interpolateTree(n.Content[i], inWebhook || n.Content[i-1].Value == "webhook")
		}
	case yaml.ScalarNode:
		if n == d.unread {
			return
		}
		out, errs := interpolate(n.Value, d.env)
		if inWebhook && d.opts.IgnoreUnsetWebhookVars && len(errs) > 0 && !slices.ContainsFunc(errs, func(e interpolationError) bool { return !e.unset }) {
			d.poison(n) // left unset, not reported
			return
		}
		offsets := make([]int, len(errs))
		for i, e := range errs {
			offsets[i] = e.offset
		}
		for i, p := range d.referencePositions(n, offsets) {
			d.problems = append(d.problems, Problem{Pos: p, Message: errs[i].msg})
		}
		if len(errs) > 0 {
			d.poison(n)
		}
		if out != n.Value && quotedUntagged(n) && len(errs) == 0 {
			if tag := resolveCore(out); tag == "!!int" || tag == "!!float" {
				d.noteQuotedNumber(n)
			}
		}
		switch {
		case out != n.Value && n.Style == 0 && out == "":
			n.Tag = "!!str" // an empty variable is an empty string, not null
		case out != n.Value && n.Style == 0:
			n.Tag = resolveCore(out)
		case n.Style == 0:
			n.Tag = coreTag(n.ShortTag(), n.Value)
		}
		n.Value = out
	}
}

// poison marks n as already reported, so that validators skip it.
func (d *decoder) poison(n *yaml.Node) {
	if d.poisoned == nil {
		d.poisoned = map[*yaml.Node]bool{}
	}
	d.poisoned[n] = true
}

// tagProblem reports an explicit YAML tag changehook does not read: one
// other than the core schema's (!!str, !!int, !!float, !!bool, !!null,
// !!timestamp on a scalar, !!map on a mapping, !!seq on a list). A local
// tag such as !env or !secret, which other tools expand, would otherwise
// be ignored and its text taken as the value ("database: !env DB" would
// watch the database DB), and !!binary's text would be taken undecoded.
func tagProblem(n *yaml.Node) string {
	if n.Tag == "" || n.Tag == "!" {
		return ""
	}
	tag := n.ShortTag()
	switch n.Kind {
	case yaml.ScalarNode:
		switch tag {
		case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp":
			return ""
		}
	case yaml.MappingNode:
		if tag == "!!map" {
			return ""
		}
	case yaml.SequenceNode:
		if tag == "!!seq" {
			return ""
		}
	default:
		return ""
	}
	hint := ""
	if !strings.HasPrefix(tag, "!!") {
		hint = " (for an environment variable write ${VAR})"
	}
	return fmt.Sprintf("unsupported YAML tag %s: tags are not expanded, so the text after it would be the value; remove the tag%s", textcut.Marked(tag, 80), hint)
}

// referencePositions returns the position in the file of the "${" at
// each offset of scalar n's value (offsets ascending, as interpolate
// reports them): the same references found in the file's text from n's
// start, so that a scalar over several lines (a block scalar, a quoted or
// plain one folded onto the next lines) and a tagged one are located where
// each reference is written. Where the text differs (a reference written
// with escapes) it falls back to n's line and to the column the offset
// would have on a one-line scalar. One pass over the text, whatever the
// number of references.
func (d *decoder) referencePositions(n *yaml.Node, offsets []int) []Pos {
	if len(offsets) == 0 {
		return nil
	}
	out := make([]Pos, len(offsets))
	// The fallbacks, counting the runes before each offset once.
	base, runes, prev := d.pos(n), 0, 0
	switch n.Style {
	case 0:
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		base.Col++
	default:
		runes = -1 // the column of n itself
	}
	for j, off := range offsets {
		p := base
		if runes >= 0 {
			runes += utf8.RuneCountInString(n.Value[prev:off])
			prev = off
			p.Col += runes
		}
		out[j] = p
	}
	start, ok := d.offsetOf(n.Line, n.Column)
	if !ok {
		return out
	}
	// The value's references in order, as interpolate scans them ("$${"
	// is not one): where each starts, and what is written from its "${"
	// to its "}".
	var refs []string
	var refStarts []int
	for i := 0; i < len(n.Value); {
		switch {
		case strings.HasPrefix(n.Value[i:], "$${"):
			i += 3
		case strings.HasPrefix(n.Value[i:], "${"):
			ref := n.Value[i:]
			if end := strings.IndexAny(ref, "}\n"); end >= 0 {
				ref = ref[:end]
			}
			refs = append(refs, ref)
			refStarts = append(refStarts, i)
			i += 2
		default:
			i++
		}
	}
	which := make([]int, len(offsets)) // each offset's index in refs
	for j, r := 0, 0; j < len(offsets); j++ {
		for r < len(refStarts) && refStarts[r] < offsets[j] {
			r++
		}
		which[j] = r
	}
	src := d.data[start:]
	line := n.Line
	// col is the column of the byte at colAt.
	col, colAt := n.Column, start
	j, k := 0, 0
	for i := 0; i < len(src) && j < len(offsets) && k < len(refs); {
		switch {
		case src[i] == '\n':
			line++
			col, colAt = 1, start+i+1
			i++
		case bytes.HasPrefix(src[i:], []byte("$${")):
			i += 3
		case bytes.HasPrefix(src[i:], []byte("${")):
			if !bytes.HasPrefix(src[i:], []byte(refs[k])) {
				return out // the text differs: the fallbacks stand
			}
			col += utf8.RuneCount(d.data[colAt : start+i])
			colAt = start + i
			for j < len(offsets) && which[j] == k {
				out[j] = Pos{File: d.file, Line: line, Col: col}
				j++
			}
			k++
			i += 2
		default:
			i++
		}
	}
	return out
}

// offsetOf returns the byte offset in the file of a line and column as
// yaml.v3 counts them (from 1; columns in characters). A column after the
// one of the previous call on the same line is counted from there, so that
// the scalars of one long line cost one pass over it.
func (d *decoder) offsetOf(line, col int) (int, bool) {
	if d.lineStarts == nil {
		// yaml.v3 counts the first line's columns after a byte order mark.
		d.lineStarts = []int{len(d.data) - len(bytes.TrimPrefix(d.data, []byte("\xef\xbb\xbf")))}
		for i, c := range d.data {
			if c == '\n' {
				d.lineStarts = append(d.lineStarts, i+1)
			}
		}
	}
	if line < 1 || line > len(d.lineStarts) || col < 1 {
		return 0, false
	}
	off, c := d.lineStarts[line-1], 1
	if d.last.line == line && d.last.col <= col {
		off, c = d.last.off, d.last.col
	}
	for ; c < col; c++ {
		if off >= len(d.data) || d.data[off] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(d.data[off:])
		off += size
	}
	d.last.line, d.last.col, d.last.off = line, col, off
	return off, true
}

// mongoURINode returns the scalar node of mongodb.uri in doc, found as
// parse finds it (merge keys and aliases followed), or nil. It reports
// nothing: parse reports the file's problems.
func mongoURINode(file string, doc *yaml.Node) *yaml.Node {
	q := &decoder{file: file, budget: maxNodeVisits, stopAt: -1}
	top := q.fields(doc, "configuration", []string{"mongodb"})
	if top == nil || !top["mongodb"].set() {
		return nil
	}
	f := q.fields(top["mongodb"].val, "mongodb", []string{"uri"})
	if u := f["uri"]; u.set() {
		if n := deref(u.val); n != nil && n.Kind == yaml.ScalarNode {
			return n
		}
	}
	return nil
}

// deref follows aliases to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxDepth; i++ {
		n = n.Alias
	}
	return n
}

// describe names a node's kind for messages, without echoing its value.
func describe(n *yaml.Node) string {
	n = deref(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a string"
	}
	return "an unsupported YAML node"
}

// fields collects a mapping's entries, reporting duplicate and unknown keys
// (with a suggestion when one is close). Merge keys (<<: *anchor) are
// honoured with the usual lower precedence. It returns nil when n is not a
// mapping.
func (d *decoder) fields(n *yaml.Node, section string, known []string) map[string]entry {
	n = deref(n)
	if n == nil {
		return map[string]entry{}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", section, describe(n))
		return nil
	}
	out := map[string]entry{}
	d.collect(n, section, known, out, 0)
	return out
}

func (d *decoder) collect(n *yaml.Node, section string, known []string, out map[string]entry, depth int) {
	d.budget -= 1 + len(n.Content)/2
	if d.budget < 0 {
		d.exhausted(n)
		return
	}
	var merges []*yaml.Node
	// unset holds the keys written with an empty string where that means
	// "not set here" (unsetByEmpty): read as absent, but still keys of
	// this mapping for the duplicate check.
	var unset map[string]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: keys must be strings", section)
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		prev, dup := out[k.Value]
		if !dup {
			prev.key, dup = unset[k.Value]
		}
		if dup {
			d.errorf(k, "%s: duplicate field %q (first set at line %d)", section, k.Value, prev.key.Line)
			continue
		}
		if !slices.Contains(known, k.Value) {
			d.errorf(k, "%s", unknownFieldMessage(k, v, section, known))
			continue
		}
		if unsetByEmpty(section, k.Value) && emptyString(deref(v)) {
			if unset == nil {
				unset = map[string]*yaml.Node{}
			}
			unset[k.Value] = k
			continue
		}
		out[k.Value] = entry{key: k, val: v}
	}
	if depth >= maxDepth {
		return
	}
	for _, m := range merges {
		m = deref(m)
		var sources []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{m}
		case yaml.SequenceNode:
			sources = m.Content
		}
		for _, src := range sources {
			src = deref(src)
			if src == nil || src.Kind != yaml.MappingNode {
				d.errorf(m, "%s: a merge key (<<) needs a mapping or a list of mappings", section)
				continue
			}
			merged := map[string]entry{}
			d.collect(src, section, known, merged, depth+1)
			for k, e := range merged {
				if _, ok := out[k]; !ok {
					out[k] = e
				}
			}
		}
	}
}

// str returns a string scalar.
func (d *decoder) str(e entry, field string) (string, bool) {
	v := deref(e.val)
	if d.poisoned[v] {
		return "", false
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		d.errorf(v, "%s: expected a string, got %s", field, describe(v))
		return "", false
	}
	return v.Value, true
}

// enum returns e's value when it is one of allowed, def when e is unset.
func (d *decoder) enum(e entry, field, def string, allowed []string) string {
	if !e.set() {
		return def
	}
	s, ok := d.str(e, field)
	if !ok {
		return def
	}
	if !slices.Contains(allowed, s) {
		hint := ""
		if sg := Suggest(s, allowed); sg != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", sg)
		}
		d.errorf(deref(e.val), "%s: %q is not one of %s%s", field, s, strings.Join(allowed, ", "), hint)
		return def
	}
	return s
}

// integer returns an integer scalar within [lo, hi].
func (d *decoder) integer(e entry, field string, def, lo, hi int) int {
	if !e.set() {
		return def
	}
	v := deref(e.val)
	if d.poisoned[v] {
		return def
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		d.errorf(v, "%s: expected an integer, got %s%s", field, describe(v), notCoreNumberHint(v))
		return def
	}
	n, err := parseCoreInt(v.Value)
	if errors.Is(err, errNotCoreNumber) { // an explicit !!int tag on another text
		d.errorf(v, "%s: expected an integer such as 10, 0o17 or 0x1F, got %q", field, v.Value)
		return def
	}
	if err != nil || n < int64(lo) || n > int64(hi) {
		d.errorf(v, "%s: must be an integer between %d and %d, got %s", field, lo, hi, v.Value)
		return def
	}
	return int(n)
}

// boolean returns a boolean scalar.
func (d *decoder) boolean(e entry, field string, def bool) bool {
	if !e.set() {
		return def
	}
	v := deref(e.val)
	if d.poisoned[v] {
		return def
	}
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		if b, err := strconv.ParseBool(strings.ToLower(v.Value)); err == nil {
			return b
		}
	}
	d.errorf(v, "%s: expected true or false, got %s", field, describe(v))
	return def
}

// duration returns a positive Go duration ("500ms", "10s", "1m") of at
// most MaxDuration, def when e is unset. The empty string never reaches
// it: fields drops a duration field written "" (unsetByEmpty), so that it
// reads as absent.
func (d *decoder) duration(e entry, field string, def time.Duration) time.Duration {
	return d.durationIn(e, field, def, 0, MaxDuration)
}

// durationSyntaxRE matches what time.ParseDuration reads, whatever the
// magnitude: a value it matches that ParseDuration refuses is out of
// range (beyond about 292 years).
var durationSyntaxRE = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// durationIn is duration bounded by [lo, hi]; lo 0 means only "positive".
func (d *decoder) durationIn(e entry, field string, def, lo, hi time.Duration) time.Duration {
	if !e.set() {
		return def
	}
	v := deref(e.val)
	if d.poisoned[v] {
		return def
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		d.errorf(v, "%s: expected a duration such as 500ms, 10s or 1m, got %s", field, describe(v))
		return def
	}
	tooLong := func(got string) {
		if lo > 0 {
			d.errorf(v, "%s: must be between %s and %s, got %s", field, lo, hi, got)
		} else {
			d.errorf(v, "%s: must be at most %s, got %s", field, hi, got)
		}
	}
	dur, err := time.ParseDuration(v.Value)
	switch {
	case err != nil && durationSyntaxRE.MatchString(v.Value) && !strings.HasPrefix(v.Value, "-"):
		tooLong(v.Value)
		return def
	case err != nil && durationSyntaxRE.MatchString(v.Value):
		d.errorf(v, "%s: must be positive, got %s", field, v.Value)
		return def
	case err != nil:
		d.errorf(v, "%s: %q is not a duration; use a number with a unit such as 500ms, 10s or 1m", field, v.Value)
		return def
	case dur <= 0:
		d.errorf(v, "%s: must be positive, got %s", field, v.Value)
		return def
	case dur < lo || dur > hi:
		if dur < lo {
			d.errorf(v, "%s: must be between %s and %s, got %s", field, lo, hi, dur)
		} else {
			tooLong(dur.String())
		}
		return def
	}
	return dur
}

// emptyString reports whether v is the string "" (quoted, or an empty
// ${VAR}).
func emptyString(v *yaml.Node) bool {
	return v != nil && v.Kind == yaml.ScalarNode && v.Value == "" && v.ShortTag() == "!!str"
}

// unsetByEmpty reports whether the field key of section, written as the
// empty string ("" or a ${VAR} whose variable is empty), reads exactly as
// if the key were absent: its value then comes from a merge key (<<), the
// defaults section, or else the built-in default. That holds for the
// duration fields (renew_every: "" in the README's cluster example), as
// cluster.instance_id: "" means its default.
func unsetByEmpty(section, key string) bool {
	switch section + "." + key {
	case "admin.read_timeout", "admin.write_timeout", "admin.idle_timeout", "admin.retrying_unready_after",
		"checkpoint.idle_interval", "history.retention", "cluster.lease_ttl", "cluster.renew_every",
		"webhook.timeout", "retry.initial_backoff", "retry.max_backoff", "circuit.max_probe_interval", "batch.max_wait":
		return true
	}
	return false
}

// cluster decodes the cluster section: instance_id, lease_ttl and
// renew_every (default lease_ttl/3, and at most MaxRenewEvery(lease_ttl)
// so that one lost renewal never costs the lease).
func (d *decoder) cluster(e entry) ClusterConfig {
	c := ClusterConfig{LeaseTTL: DefaultLeaseTTL}
	f := d.fields(e.val, "cluster", []string{"instance_id", "lease_ttl", "renew_every"})
	if id := f["instance_id"]; id.set() {
		if s, ok := d.str(id, "cluster.instance_id"); ok {
			switch {
			case len(s) > 128:
				d.errorf(id.val, "cluster.instance_id: longer than 128 bytes")
			case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
				d.errorf(id.val, "cluster.instance_id: contains a control character")
			default:
				c.InstanceID = s
			}
		}
	}
	ttl := f["lease_ttl"]
	before := len(d.problems)
	c.LeaseTTL = d.duration(ttl, "cluster.lease_ttl", DefaultLeaseTTL)
	if c.LeaseTTL < MinLeaseTTL {
		d.errorf(ttl.val, "cluster.lease_ttl: must be at least %s, got %s", MinLeaseTTL, c.LeaseTTL)
		c.LeaseTTL = DefaultLeaseTTL
	}
	// An invalid lease_ttl was replaced by the default: renew_every is not
	// judged against a lease_ttl the file does not set.
	ttlValid := len(d.problems) == before && !(ttl.set() && d.poisoned[deref(ttl.val)])
	re := f["renew_every"]
	c.RenewEvery = d.duration(re, "cluster.renew_every", c.LeaseTTL/3)
	if re.set() && c.RenewEvery < MinRenewEvery {
		d.errorf(re.val, "cluster.renew_every: must be at least %s, got %s", MinRenewEvery, c.RenewEvery)
		c.RenewEvery = c.LeaseTTL / 3
	}
	if most := MaxRenewEvery(c.LeaseTTL); ttlValid && re.set() && c.RenewEvery > most {
		d.errorf(re.val, "cluster.renew_every: must be at most %s (35%% of lease_ttl %s, so that one lost renewal never costs the lease), got %s",
			most, c.LeaseTTL, c.RenewEvery)
		c.RenewEvery = c.LeaseTTL / 3
	}
	return c
}

// history decodes the history section over def: enabled, retention (at
// least MinHistoryRetention, at most MaxHistoryRetention) and max_records.
func (d *decoder) history(e entry, def HistoryConfig) HistoryConfig {
	h := def
	f := d.fields(e.val, "history", []string{"retention", "max_records", "enabled"})
	h.Enabled = d.boolean(f["enabled"], "history.enabled", def.Enabled)
	h.Retention = d.durationIn(f["retention"], "history.retention", def.Retention, MinHistoryRetention, MaxHistoryRetention)
	h.MaxRecords = d.integer(f["max_records"], "history.max_records", def.MaxRecords, MinHistoryMaxRecords, MaxHistoryMaxRecords)
	return h
}

// byteSizeRE matches a byte size: an integer with an optional binary unit.
var byteSizeRE = regexp.MustCompile(`^([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?$`)

// Errors of ParseByteSize.
var (
	// ErrNotASize: the text is not a whole number with an optional unit.
	ErrNotASize = errors.New("not a size")
	// ErrNegativeSize: the text is a size with a minus sign.
	ErrNegativeSize = errors.New("a size cannot be negative")
	// ErrSizeTooLarge: the size does not fit 63 bits.
	ErrSizeTooLarge = errors.New("size too large")
)

// ParseByteSize reads a byte size as the configuration writes one
// (max_inflight_bytes, batch.max_bytes): a whole number of bytes, or one
// with a binary unit B, KiB, MiB, GiB or TiB ("512MiB", "1GiB");
// underscores may group digits. It returns ErrNotASize, ErrNegativeSize or
// ErrSizeTooLarge for a value it cannot take; the caller checks the range
// its setting allows.
func ParseByteSize(s string) (int64, error) {
	v := strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	m := byteSizeRE.FindStringSubmatch(v)
	if m == nil {
		if neg, ok := strings.CutPrefix(v, "-"); ok && byteSizeRE.MatchString(neg) {
			return 0, ErrNegativeSize
		}
		return 0, ErrNotASize
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > math.MaxInt64>>shift {
		return 0, ErrSizeTooLarge
	}
	return n << shift, nil
}

// byteSize returns a byte size between MinInflightBytes and
// MaxInflightBytes: an integer (bytes) or an integer with a binary unit
// ("64MiB", "512KiB", "1GiB").
func (d *decoder) byteSize(e entry, field string, def int64) int64 {
	if !e.set() {
		return def
	}
	v := deref(e.val)
	if d.poisoned[v] {
		return def
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" || v.ShortTag() == "!!bool" {
		d.errorf(v, "%s: expected a size such as 65536, 512KiB, 64MiB or 1GiB, got %s", field, describe(v))
		return def
	}
	n, err := ParseByteSize(v.Value)
	if errors.Is(err, ErrNotASize) {
		d.errorf(v, "%s: %q is not a size; use bytes or a number with KiB, MiB or GiB such as 64MiB", field, v.Value)
		return def
	}
	if err != nil || n > MaxInflightBytes || n < MinInflightBytes {
		d.errorf(v, "%s: must be between 1KiB and 1TiB, got %s", field, v.Value)
		return def
	}
	return n
}

// triggerFields lists a trigger's fields; the first, name, cannot be
// defaulted.
func triggerFields() []string {
	return []string{
		"name", "database", "collection", "operations", "match", "project",
		"full_document", "full_document_before_change", "start_at", "ordering",
		"concurrency", "max_inflight_bytes", "partitions", "enabled", "webhook", "retry", "dead_letter",
		"payload_errors", "circuit", "batch",
	}
}

// webhookFields lists a trigger's webhook fields.
func webhookFields() []string {
	return []string{"url", "method", "headers", "secret", "timeout", "format", "payload", "secret_path", "rate_limit", "cloudevents", "auth", "tls"}
}

// trigger decodes one trigger from its own fields over the defaults section.
// With defaultsOnly it decodes the defaults section itself (no required
// fields).
func (d *decoder) trigger(own, defs map[string]entry, at *yaml.Node, defaultsOnly bool) *Trigger {
	// A trigger's explicit null clears a default ("database: ~" watches the
	// whole deployment even when defaults sets a database).
	get := func(k string) entry {
		if e, ok := own[k]; ok {
			if v := deref(e.val); v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
				return entry{}
			}
			return e
		}
		return defs[k]
	}
	t := &Trigger{
		FullDocument:             options.Default,
		FullDocumentBeforeChange: options.Off,
		StartAt:                  StartAt{Now: true},
		Ordering:                 Strict,
		Concurrency:              DefaultConcurrency,
		MaxInflightBytes:         DefaultMaxInflightBytes,
		Partitions:               1,
		Enabled:                  true,
		DeadLetter:               true,
		Pos:                      d.pos(at),
	}
	if !defaultsOnly {
		if e := own["name"]; !e.set() {
			d.errorf(at, "trigger: missing field \"name\"")
		} else if s, ok := d.str(e, "name"); ok {
			t.Name = s
			if !triggerNameRE.MatchString(s) || len(s) > 64 {
				d.errorf(deref(e.val), "name: %q must be 1 to 64 characters from a-z, 0-9, _ and -", s)
			}
		}
	}
	if e := get("database"); e.set() {
		if s, ok := d.str(e, "database"); ok {
			t.Database = s
			if msg := checkDatabaseName(s); msg != "" {
				d.errorf(deref(e.val), "database: %s", msg)
			} else if s == "admin" || s == "local" || s == "config" {
				d.errorf(deref(e.val), "database: MongoDB does not open change streams on the %s database; omit database to watch the whole deployment", s)
			}
		}
	}
	if e := get("collection"); e.set() {
		if s, ok := d.str(e, "collection"); ok {
			t.Collection = s
			msg := checkCollectionName(s)
			if msg != "" {
				d.errorf(deref(e.val), "collection: %s", msg)
			}
			if !get("database").set() && !defaultsOnly {
				d.errorf(deref(e.val), "collection: a collection needs a database; set database too")
			} else if msg == "" && t.Database != "" && checkDatabaseName(t.Database) == "" {
				// Where both are known: the database may come from defaults.
				if msg := checkNamespace(t.Database, s); msg != "" {
					d.errorf(deref(e.val), "collection: %s", msg)
				}
			}
		}
	}
	t.Operations = d.operations(get("operations"), t.Collection != "")
	t.FullDocument = options.FullDocument(d.enum(get("full_document"), "full_document", string(t.FullDocument),
		[]string{"default", "updateLookup", "whenAvailable", "required"}))
	t.FullDocumentBeforeChange = options.FullDocument(d.enum(get("full_document_before_change"), "full_document_before_change",
		string(t.FullDocumentBeforeChange), []string{"off", "whenAvailable", "required"}))
	if e := get("start_at"); e.set() {
		t.StartAt = d.startAt(e)
	}
	orderings := make([]string, 0, 3)
	for _, o := range Orderings() {
		orderings = append(orderings, string(o))
	}
	t.Ordering = Ordering(d.enum(get("ordering"), "ordering", string(t.Ordering), orderings))
	t.Concurrency = d.integer(get("concurrency"), "concurrency", t.Concurrency, 1, MaxConcurrency)
	if !defaultsOnly {
		// The defaults section keeps its concurrency for the triggers that
		// choose another ordering.
		t.Concurrency = t.Ordering.Concurrency(t.Concurrency)
	}
	t.MaxInflightBytes = d.byteSize(get("max_inflight_bytes"), "max_inflight_bytes", t.MaxInflightBytes)
	t.Partitions = d.integer(get("partitions"), "partitions", t.Partitions, 1, MaxPartitions)
	if !defaultsOnly && t.Partitions > 1 && t.Ordering == Strict {
		at, from := at, " (from defaults)"
		if e := own["partitions"]; e.set() {
			at, from = deref(e.val), ""
		}
		d.errorf(at, "partitions: %d partitions%s cannot keep ordering strict (one event at a time, in stream order); "+
			"use ordering: per_document, which keeps every document's changes in order across partitions, or partitions: 1", t.Partitions, from)
	}
	t.Enabled = d.boolean(get("enabled"), "enabled", t.Enabled)
	t.DeadLetter = d.boolean(get("dead_letter"), "dead_letter", t.DeadLetter)
	// A section merged field by field is cleared by the trigger's "~" as a
	// whole, as batch is: the built-in defaults apply.
	merged := func(k string) (entry, entry) {
		if isNull(own[k]) {
			return entry{}, entry{}
		}
		return own[k], defs[k]
	}
	ownRetry, defRetry := merged("retry")
	retryOf := t // whose warnings: none for the defaults section itself
	if defaultsOnly {
		retryOf = nil
	}
	t.Retry = d.retry(retryOf, ownRetry, defRetry)
	t.PayloadErrors = d.payloadErrors(merged("payload_errors"))
	t.Circuit = d.circuit(merged("circuit"))
	var payload entry
	t.Webhook, payload = d.webhook(own["webhook"], defs["webhook"], at, defaultsOnly)
	t.Batch = d.batch(own["batch"], defs["batch"], at, t.Name, defaultsOnly, t.MaxInflightBytes)
	if !defaultsOnly {
		d.checkBatch(t, own, at)
	}

	match := get("match")
	if match.set() {
		t.Match = d.match(match)
	}
	if e := get("project"); e.set() {
		t.Project = d.project(e, t.Ordering)
	}
	if !defaultsOnly {
		batch := own["batch"]
		if !batch.set() {
			batch = defs["batch"]
		}
		d.advise(t, payload, batch, match)
	}
	return t
}

func (d *decoder) operations(e entry, collectionStream bool) []string {
	if !e.set() {
		return DefaultOperations()
	}
	v := deref(e.val)
	var items []*yaml.Node
	switch {
	case v.Kind == yaml.SequenceNode:
		items = v.Content
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		items = []*yaml.Node{v}
	default:
		d.errorf(v, "operations: expected a list of operation types, got %s", describe(v))
		return DefaultOperations()
	}
	if len(items) == 0 {
		d.errorf(v, "operations: at least one operation type is required")
	}
	if !d.spend(v, len(items)) {
		return DefaultOperations()
	}
	known := operationNames()
	var ops []string
	for _, it := range items {
		s, ok := d.str(entry{val: it}, "operations")
		if !ok {
			continue
		}
		it = deref(it)
		switch {
		case s == "invalidate":
			d.errorf(it, "operations: invalidate is not a deliverable operation type; changehook always handles it (the trigger stops when its collection is dropped)")
		case !slices.Contains(known, s):
			if sg := Suggest(s, known); sg != "" {
				d.errorf(it, "operations: unknown operation type %q (did you mean %q?)", s, sg)
			} else {
				d.errorf(it, "operations: unknown operation type %q; valid types: %s", s, strings.Join(known, ", "))
			}
		case slices.Contains(ops, s):
			d.errorf(it, "operations: %q is listed twice", s)
		case s == "dropDatabase" && collectionStream:
			d.errorf(it, "operations: a collection stream never reports dropDatabase (it reports drop, then invalidate); remove it or omit collection")
			ops = append(ops, s)
		default:
			ops = append(ops, s)
		}
	}
	return ops
}

func (d *decoder) startAt(e entry) StartAt {
	v := deref(e.val)
	if d.poisoned[v] {
		return StartAt{Now: true}
	}
	if v.Kind == yaml.ScalarNode {
		if v.Value == "now" {
			return StartAt{Now: true}
		}
		if ts, err := time.Parse(time.RFC3339Nano, v.Value); err == nil {
			if _, err := OperationTime(ts); err != nil {
				d.errorf(v, "start_at: %s is outside the times a MongoDB timestamp holds, %s to %s (a change stream starts at a timestamp)",
					v.Value, minTimestampText, maxTimestampText)
				return StartAt{Now: true}
			}
			return StartAt{Time: ts}
		}
	}
	d.errorf(v, "start_at: expected now or an RFC 3339 time such as 2025-01-31T12:00:00Z")
	return StartAt{Now: true}
}

// retry decodes a retry section: own's fields over def's (the defaults
// section's), the built-in defaults for the rest. t is the trigger the
// policy is for, whose warnings they are; nil when decoding the defaults
// section itself, which records errors but no warnings (every trigger that
// gets a list from it is warned about).
func (d *decoder) retry(t *Trigger, own, def entry) RetryPolicy {
	f := map[string]entry{}
	known := []string{"max_attempts", "initial_backoff", "max_backoff", "retry_on", "success_on", "drop_on"}
	if def.set() {
		for k, e := range d.fields(def.val, "retry", known) {
			f[k] = e
		}
	}
	var ownF map[string]entry
	if own.set() {
		ownF = d.fields(own.val, "retry", known)
		for k, e := range ownF {
			f[k] = e
		}
	}
	p := RetryPolicy{
		MaxAttempts:    d.integer(f["max_attempts"], "retry.max_attempts", DefaultMaxAttempts, 1, 1000),
		InitialBackoff: d.duration(f["initial_backoff"], "retry.initial_backoff", DefaultInitialBackoff),
		MaxBackoff:     d.duration(f["max_backoff"], "retry.max_backoff", DefaultMaxBackoff),
		RetryOn:        d.statusRules(f["retry_on"], "retry.retry_on", DefaultRetryOn(), true),
		SuccessOn:      d.statusRules(f["success_on"], "retry.success_on", DefaultSuccessOn(), false),
		DropOn:         d.statusRules(f["drop_on"], "retry.drop_on", nil, false),
	}
	if e := f["success_on"]; e.set() && !d.poisoned[deref(e.val)] {
		if v := deref(e.val); v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
			d.errorf(v, "retry.success_on: an empty list makes no answer a delivery, so every event would be retried and then dead-lettered; list the statuses that mean delivered, or leave it out for [2xx]")
		}
	}
	d.checkRuleOverlap(t, f, p)
	if p.MaxBackoff < p.InitialBackoff {
		// At the trigger's own field when one of the two is: the defaults
		// section's value may suit its other triggers.
		at, from := f["max_backoff"].val, ""
		switch {
		case ownF["max_backoff"].set():
		case ownF["initial_backoff"].set():
			at = ownF["initial_backoff"].val
			if f["max_backoff"].set() {
				from = ", from defaults"
			} else {
				from = ", the default"
			}
		case at == nil:
			at = f["initial_backoff"].val
		}
		d.errorf(deref(at), "retry: max_backoff (%s%s) must not be shorter than initial_backoff (%s)", p.MaxBackoff, from, p.InitialBackoff)
	}
	return p
}

// webhook decodes a trigger's webhook section, its fields over the
// defaults section's, and returns it with the payload entry it read (not
// set when there is none).
func (d *decoder) webhook(own, def entry, at *yaml.Node, defaultsOnly bool) (Webhook, entry) {
	known := webhookFields()
	f := map[string]entry{}
	headers := map[string]entry{}
	var ownF, defF map[string]entry
	if def.set() {
		defF = d.fields(def.val, "webhook", known)
	}
	if own.set() {
		ownF = d.fields(own.val, "webhook", known)
	}
	for _, src := range []map[string]entry{defF, ownF} {
		for k, e := range src {
			f[k] = e
		}
		if h := src["headers"]; h.set() {
			d.headerEntries(h, headers)
		}
	}
	w := Webhook{}.WithDefaults()
	if !defaultsOnly && !own.set() && !def.set() {
		d.errorf(at, "trigger: missing field \"webhook\"")
		return w, entry{}
	}
	if e := f["url"]; e.set() {
		if s, ok := d.str(e, "webhook.url"); ok {
			w.URL = s
			if msg := checkWebhookURL(s); msg != "" {
				d.errorf(deref(e.val), "webhook.url: %s", msg)
			}
		}
	} else if !defaultsOnly {
		n := at
		if own.set() {
			n = deref(own.val)
		}
		d.errorf(n, "webhook: missing field \"url\"")
	}
	if e := f["method"]; e.set() {
		if s, ok := d.str(e, "webhook.method"); ok {
			if AllowedMethod(s) {
				w.Method = strings.ToUpper(s)
			} else {
				d.errorf(deref(e.val), "webhook.method: %q is not one of %s", s, strings.Join(Methods(), ", "))
			}
		}
	}
	if len(headers) > 0 {
		w.Headers = make(map[string]Secret, len(headers))
		for name, e := range headers {
			if s, ok := d.str(e, "webhook.headers."+name); ok {
				if hasControlChar(s) {
					d.errorf(deref(e.val), "webhook.headers.%s: value must not contain control characters such as CR, LF or NUL (no HTTP header can carry them)", name)
					continue
				}
				w.Headers[name] = Secret(s)
			}
		}
	}
	if e := f["secret"]; e.set() {
		w.Secrets = d.secrets(e)
	}
	w.SecretPath = d.boolean(f["secret_path"], "webhook.secret_path", w.SecretPath)
	if e := f["rate_limit"]; e.set() && !isNull(e) {
		w.RateLimit = d.rateLimit(e, "webhook.rate_limit")
	}
	w.Timeout = d.durationIn(f["timeout"], "webhook.timeout", w.Timeout, 0, MaxTimeout)
	w.Format = d.enum(f["format"], "webhook.format", w.Format, Formats())
	if e := f["cloudevents"]; e.set() && !isNull(e) {
		if IsCloudEvents(w.Format) {
			w.CloudEvents = d.cloudEvents(e)
		} else {
			d.errorf(e.key, "webhook.cloudevents: applies only with format: %s or %s", FormatCloudEvents, FormatCloudEventsBinary)
		}
	}
	if e := f["auth"]; e.set() && !isNull(e) {
		w.Auth = d.auth(e)
	}
	if e := f["tls"]; e.set() && !isNull(e) {
		w.TLS = d.tlsSection(e, w.URL)
	}
	d.checkEdgeHeaders(&w, headers)
	if e := f["payload"]; e.set() {
		spec, ok := d.toBSON(e.val, 0)
		if ok {
			w.PayloadSpec = spec
			if msg := payloadShape(spec); msg != "" {
				d.errorf(deref(e.val), "webhook.payload: %s", msg)
			} else {
				bad := false
				if msg := scalarPayload(spec); msg != "" {
					d.errorf(findKey(deref(e.val), spec.(bson.D)[0].Key, 0), "webhook.payload: %s", msg)
					bad = true
				}
				if d.exprProblems(e.val, nil, spec, "webhook.payload") > 0 {
					bad = true
				}
				if expr, err := mql.CompileExpr(spec); err != nil {
					if !bad {
						at := locateOperator(deref(e.val), err)
						if p, ok := failingPath(spec, mqlMessage(err), nil, 0); ok {
							at = d.locatePath(deref(e.val), p)
						}
						d.errorf(at, "webhook.payload: %s", withOperatorHint(mqlMessage(err)))
					}
				} else if !bad {
					w.Payload = expr
				}
			}
		}
	}
	return w, f["payload"]
}

// headerEntries adds a headers mapping to out, keyed by canonical name.
func (d *decoder) headerEntries(e entry, out map[string]entry) {
	n := deref(e.val)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "webhook.headers: expected a mapping of header names to values, got %s", describe(n))
		return
	}
	if !d.spend(n, len(n.Content)/2) {
		return
	}
	seen := map[string]bool{}
	// out's names by lower case: a name set again, in any case, replaces
	// the earlier one in one lookup.
	byLower := make(map[string]string, len(out))
	for name := range out {
		byLower[strings.ToLower(name)] = name
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || !validHeaderName(k.Value) {
			d.errorf(k, "webhook.headers: %q is not a valid HTTP header name", k.Value)
			continue
		}
		lk := strings.ToLower(k.Value)
		if seen[lk] {
			d.errorf(k, "webhook.headers: header %q is set twice", k.Value)
			continue
		}
		seen[lk] = true
		if why := ReservedHeaderReason(k.Value); why != "" {
			d.errorf(k, "webhook.headers: %q %s", k.Value, why)
			continue
		}
		if prev, ok := byLower[lk]; ok {
			delete(out, prev)
		}
		byLower[lk] = k.Value
		out[k.Value] = entry{key: k, val: v}
	}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// secrets decodes webhook.secret: one key or a list (rotation). An empty
// key (an empty list item, or ${SECRET} with SECRET set to "") is an error:
// a trigger that has secret: never sends unsigned requests.
func (d *decoder) secrets(e entry) []Secret {
	v := deref(e.val)
	var items []*yaml.Node
	switch v.Kind {
	case yaml.SequenceNode:
		items = v.Content
	default:
		items = []*yaml.Node{v}
	}
	if len(items) == 0 {
		d.errorf(v, "webhook.secret: the list of keys is empty; give at least one key, or remove secret to send unsigned requests")
	}
	if !d.spend(v, len(items)) {
		return nil
	}
	var out []Secret
	for _, it := range items {
		s, ok := d.str(entry{val: it}, "webhook.secret")
		if !ok {
			continue
		}
		if s == "" {
			d.errorf(deref(it), "webhook.secret: the key is empty (a ${VAR} set to an empty string?); a trigger with secret never sends unsigned requests: set the key, or remove secret")
			continue
		}
		if msg := checkSecret(s); msg != "" {
			d.errorf(deref(it), "webhook.secret: %s", msg)
			continue
		}
		out = append(out, Secret(s))
	}
	return out
}

// checkSecret validates a Standard Webhooks key without echoing it.
func checkSecret(s string) string {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return `must start with "whsec_" followed by the base64 key (Standard Webhooks format)`
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return `the part after "whsec_" is not valid base64`
	}
	if len(key) < 24 || len(key) > 64 {
		return fmt.Sprintf("the key must be 24 to 64 bytes long, got %d bytes", len(key))
	}
	return ""
}

// checkDatabaseName applies MongoDB's database naming rules.
func checkDatabaseName(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 63:
		return "must be at most 63 bytes"
	case !utf8.ValidString(s):
		return fmt.Sprintf("%s is not valid UTF-8, which MongoDB requires of database names", textcut.Quote(s))
	case strings.ContainsAny(s, "/\\. \"$*<>:|?\x00"):
		return fmt.Sprintf("%s contains a character MongoDB does not allow in database names (/\\. \"$*<>:|?)", textcut.Quote(s))
	}
	return ""
}

// maxNamespaceBytes bounds a namespace, database "." collection, in bytes
// (MongoDB's limit).
const maxNamespaceBytes = 255

// checkCollectionName applies MongoDB's collection naming rules to the name
// alone; checkNamespace adds the database's share of the length limit.
func checkCollectionName(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case !utf8.ValidString(s):
		return fmt.Sprintf("%s is not valid UTF-8, which MongoDB requires of collection names", textcut.Quote(s))
	case strings.ContainsAny(s, "$\x00"):
		return fmt.Sprintf("%s contains $ or NUL, which MongoDB does not allow in collection names", textcut.Quote(s))
	case strings.HasPrefix(s, "."):
		return fmt.Sprintf("%s starts with a dot, which MongoDB does not allow in collection names", textcut.Quote(s))
	case strings.HasPrefix(s, "system."):
		return "MongoDB does not open change streams on system collections"
	case len(s) > maxNamespaceBytes-2:
		return fmt.Sprintf("must be at most %d bytes (a namespace, database.collection, is at most %d)", maxNamespaceBytes-2, maxNamespaceBytes)
	}
	return ""
}

// checkNamespace applies MongoDB's length limit to db.coll, both names
// valid on their own.
func checkNamespace(db, coll string) string {
	if n := len(db) + 1 + len(coll); n > maxNamespaceBytes {
		return fmt.Sprintf("the namespace (database %s, a dot and this collection) is %d bytes; MongoDB allows at most %d: shorten the collection or the database name",
			textcut.Quote(db), n, maxNamespaceBytes)
	}
	return ""
}

// checkWebhookURL requires an absolute http(s) URL with a host. The message
// never echoes the URL (it may carry a token).
func checkWebhookURL(s string) string {
	u, err := url.Parse(s)
	if err != nil && strings.Contains(s, "://") {
		return "is not a valid URL"
	}
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		// Without "://", "localhost:8080/hook" parses with the scheme
		// "localhost" and "127.0.0.1:8080/hook" does not parse at all.
		return "must be an absolute URL starting with http:// or https://"
	}
	if u.Host == "" || u.Hostname() == "" {
		return "has no host"
	}
	if port := u.Port(); port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			if strings.Contains(u.RawPath+u.Path+u.RawQuery+u.Fragment, "@") {
				// "https://user:12/pw@host": the authority ends at the
				// unencoded "/", and the "port" is the password's start.
				return "port is not between 1 and 65535; an @ after it suggests a user name or password with an unencoded /, ? or #: percent-encode them (%2F, %3F, %23)"
			}
			return fmt.Sprintf("port %s is not between 1 and 65535", port)
		}
	}
	return ""
}
