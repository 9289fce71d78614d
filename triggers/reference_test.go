package triggers

import (
	"cmp"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReferenceDocumentsEveryField: every field Parse accepts has a row in
// README's configuration reference (or, for the small mappings written
// inline such as {per_second, burst}, is named in its parent's row), and
// every field a row names is accepted; every operation type is listed.
// The accepted fields are read from Parse itself: the "valid fields" of
// the message about an unknown field in each section.
func TestReferenceDocumentsEveryField(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(readme)
	start := strings.Index(ref, "## Configuration reference")
	end := strings.Index(ref[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no Configuration reference section")
	}
	ref = ref[start : start+1+end]
	// rows maps each name in a row's first cell to the whole row;
	// "`a.b` / `c`" names a.b and a.c.
	rows := map[string]string{}
	nameRE := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(ref, "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) < 2 {
			continue
		}
		prefix := ""
		for _, m := range nameRE.FindAllStringSubmatch(cells[0], -1) {
			name := m[1]
			if i := strings.LastIndex(name, "."); i >= 0 {
				prefix = name[:i+1]
			} else if prefix != "" && !strings.Contains(cells[0], ", ") {
				name = prefix + name
			}
			rows[name] = line
		}
	}

	validRE := regexp.MustCompile(`unknown field "qqqqq" in [^;]*; valid fields: ([^\n]*)`)
	accepted := map[string]bool{"triggers[].name": true, "endpoints[]": true}
	for _, p := range sectionProbes {
		_, err := Parse("p.yaml", []byte(p.src), nil)
		if err == nil {
			t.Fatalf("%s: qqqqq accepted", p.path)
		}
		m := validRE.FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("%s: no list of valid fields in %v", p.path, err)
		}
		for _, field := range strings.Split(m[1], ", ") {
			switch p.path {
			case "trigger", "":
				accepted[field] = true
			default:
				accepted[p.path+"."+field] = true
			}
			var documented bool
			switch {
			case p.inline:
				documented = strings.Contains(rows[p.path], field)
			case p.path == "":
				// Top-level sections: some row starts with the section.
				for name := range rows {
					if name == field || strings.HasPrefix(name, field+".") || strings.HasPrefix(name, field+"[]") {
						documented = true
					}
				}
			case p.path == "trigger":
				_, documented = rows[field]
				if field == "name" {
					_, documented = rows["triggers[].name"]
				}
				if !documented {
					// A section of the trigger: rows start with it.
					for name := range rows {
						if strings.HasPrefix(name, field+".") {
							documented = true
						}
					}
				}
			default:
				path := p.path + "." + field
				_, documented = rows[path]
				for name := range rows {
					if strings.HasPrefix(name, path+".") {
						documented = true
					}
				}
			}
			if !documented {
				t.Errorf("%s field %q is accepted but has no row in README's configuration reference", cmp.Or(p.path, "top-level"), field)
			}
		}
	}
	for _, op := range operationNames() {
		if !regexp.MustCompile(`\b` + op + `\b`).MatchString(rows["operations"]) {
			t.Errorf("operation type %q is accepted but not listed in the operations row", op)
		}
	}
	for name := range rows {
		if !accepted[name] {
			t.Errorf("README's configuration reference has a row for %q, which Parse does not accept", name)
		}
	}
}

// probeHook is a trigger's minimal webhook in sectionProbes.
const probeHook = `webhook: { url: "https://h/x" }`

// sectionProbes are configurations with the unknown field qqqqq: 1 in each
// section, one per section (and inline mapping) Parse reads.
var sectionProbes = []struct {
	path string // the section's path in the reference ("" for a trigger's fields)
	src  string // a file with qqqqq: 1 in the section
	// inline: the fields are named in the row of path, not in rows
	// of their own.
	inline bool
}{
	{"", "qqqqq: 1\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"mongodb", "mongodb: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"state", "state: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"admin", "admin: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"log", "log: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"cluster", "cluster: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"network", "network: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"checkpoint", "checkpoint: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"limits", "limits: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"history", "history: {qqqqq: 1}\ntriggers: [{name: t, " + probeHook + "}]", false},
	{"endpoints[]", "endpoints: [{qqqqq: 1}]\ntriggers: [{name: t, " + probeHook + "}]", true},
	{"endpoints[]", "endpoints: [{name: e, url_prefix: \"https://h/\", rate_limit: {qqqqq: 1}}]\ntriggers: [{name: t, " + probeHook + "}]", true},
	{"trigger", "triggers: [{name: t, qqqqq: 1, " + probeHook + "}]", false},
	{"webhook", "triggers: [{name: t, webhook: {url: \"https://h/x\", qqqqq: 1}}]", false},
	{"webhook.rate_limit", "triggers: [{name: t, webhook: {url: \"https://h/x\", rate_limit: {qqqqq: 1}}}]", true},
	{"webhook.auth", "triggers: [{name: t, webhook: {url: \"https://h/x\", auth: {qqqqq: 1}}}]", true},
	{"webhook.auth", "triggers: [{name: t, webhook: {url: \"https://h/x\", auth: {basic: {qqqqq: 1}}}}]", true},
	{"webhook.auth", "triggers: [{name: t, webhook: {url: \"https://h/x\", auth: {bearer: {qqqqq: 1}}}}]", true},
	{"webhook.auth", "triggers: [{name: t, webhook: {url: \"https://h/x\", auth: {oauth2_client_credentials: {qqqqq: 1}}}}]", true},
	{"webhook.tls", "triggers: [{name: t, webhook: {url: \"https://h/x\", tls: {qqqqq: 1}}}]", false},
	{"webhook.cloudevents", "triggers: [{name: t, webhook: {url: \"https://h/x\", format: cloudevents, cloudevents: {qqqqq: 1}}}]", false},
	{"retry", "triggers: [{name: t, retry: {qqqqq: 1}, " + probeHook + "}]", false},
	{"payload_errors", "triggers: [{name: t, payload_errors: {qqqqq: 1}, " + probeHook + "}]", false},
	{"circuit", "triggers: [{name: t, circuit: {qqqqq: 1}, " + probeHook + "}]", false},
	{"batch", "triggers: [{name: t, batch: {qqqqq: 1}, " + probeHook + "}]", false},
}

// TestEmptyDurationReadsAsAbsent: every field Parse reads as a duration
// (found by writing a non-duration into each accepted field and looking
// for the duration message) accepts "" as "not set here", so that a new
// duration field cannot be left out of unsetByEmpty.
func TestEmptyDurationReadsAsAbsent(t *testing.T) {
	validRE := regexp.MustCompile(`unknown field "qqqqq" in [^;]*; valid fields: ([^\n]*)`)
	var durations []string
	for _, p := range sectionProbes {
		_, err := Parse("p.yaml", []byte(p.src), nil)
		m := validRE.FindStringSubmatch(fmt.Sprint(err))
		if m == nil {
			t.Fatalf("%s: no list of valid fields in %v", p.path, err)
		}
		for _, field := range strings.Split(m[1], ", ") {
			src := strings.Replace(p.src, "qqqqq: 1", field+": notaduration", 1)
			_, err := Parse("p.yaml", []byte(src), nil)
			if err == nil || !strings.Contains(err.Error(), field+`: "notaduration" is not a duration`) {
				continue
			}
			durations = append(durations, cmp.Or(p.path, "top-level")+"."+field)
			src = strings.Replace(p.src, "qqqqq: 1", field+`: ""`, 1)
			// Other sections' required fields may be missing (batch
			// needs max_events): only a message about this field counts.
			if _, err := Parse("p.yaml", []byte(src), nil); err != nil && strings.Contains(err.Error(), field) {
				t.Errorf("%s.%s: \"\" should read as absent, got %v", p.path, field, err)
			}
		}
	}
	if len(durations) < 10 {
		t.Fatalf("found only %d duration fields (%v): the probe no longer recognises the duration message", len(durations), durations)
	}
}

// TestReferenceListsReservedHeaders: README's row of webhook.headers lists
// exactly ReservedHeaders (in any case).
func TestReferenceListsReservedHeaders(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?m)^\\| `webhook\\.headers` \\|.*Reserved headers cannot be set \\(([^)]*)\\)").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README's webhook.headers row lists no reserved headers")
	}
	listed := map[string]bool{}
	for _, n := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(string(m[1]), -1) {
		if !IsReservedHeader(n[1]) {
			t.Errorf("README lists %s as reserved; it is not", n[1])
		}
		listed[strings.ToLower(n[1])] = true
	}
	for _, h := range ReservedHeaders() {
		if !listed[strings.ToLower(h)] {
			t.Errorf("README does not list the reserved header %s", h)
		}
	}
}
