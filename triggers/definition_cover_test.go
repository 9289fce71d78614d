package triggers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// clusterDefinitionSkips are the Trigger fields (paths as leafPath.String
// names them, a prefix covering what is under it) that
// WriteClusterDefinition leaves out on purpose, each with its reason. A
// field not listed here must change what WriteClusterDefinition writes:
// TestWriteClusterDefinitionCoversEveryField fails for a new field, a
// secret above all, that the members of a cluster would not compare.
var clusterDefinitionSkips = map[string]string{
	"Pos":           "where the trigger is declared, not what it does",
	"unit":          "which partition a copy reads; every partition's copy writes its trigger's definition",
	"Network":       "the network section, which each member may set for itself",
	"StateDatabase": "the state section, which each member may set for itself",
	"Webhook.TLS.loaded": "the contents of the files the tls section names, which each member reads from its own disk " +
		"(certificates are rotated machine by machine); the file names are compared",
}

// leafStep is one step from a value to a part of it.
type leafStep struct {
	kind   reflect.Kind // Struct (a field), Pointer, Slice, Array or Map
	field  int          // the struct field's index
	index  int          // the slice or array element's index
	mapKey bool         // the map's key is the leaf (else its value is on the way)
	name   string       // the step's name in the path
}

// leafPath is the way from a Trigger to one of its leaves.
type leafPath struct {
	steps []leafStep
	typ   reflect.Type
}

func (p leafPath) String() string {
	var parts []string
	for _, s := range p.steps {
		if s.name != "" {
			parts = append(parts, s.name)
		}
	}
	return strings.Join(parts, ".")
}

var anyType = reflect.TypeFor[any]()

// leafPaths lists every leaf reachable from t: each string, number, bool,
// time and interface value under its fields and pointers, the first and
// second element of its slices and arrays (a hidden copy that keeps only
// the first would be missed otherwise), and the key and the value of its
// maps. Compiled payload expressions are left out (Webhook.PayloadSpec,
// their source, is a leaf).
func leafPaths(t reflect.Type, prefix []leafStep, seen map[reflect.Type]bool, out *[]leafPath) {
	with := func(s leafStep) []leafStep { return append(slices.Clone(prefix), s) }
	if t == exprType {
		return
	}
	if t == timeType || t == anyType {
		*out = append(*out, leafPath{steps: prefix, typ: t})
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for i := range t.NumField() {
			leafPaths(t.Field(i).Type, with(leafStep{kind: reflect.Struct, field: i, name: t.Field(i).Name}), seen, out)
		}
	case reflect.Pointer:
		leafPaths(t.Elem(), with(leafStep{kind: reflect.Pointer}), seen, out)
	case reflect.Slice, reflect.Array:
		for i := range 2 {
			if t.Kind() == reflect.Array && i >= t.Len() {
				break
			}
			leafPaths(t.Elem(), with(leafStep{kind: t.Kind(), index: i, name: fmt.Sprintf("[%d]", i)}), seen, out)
		}
	case reflect.Map:
		*out = append(*out, leafPath{steps: with(leafStep{kind: reflect.Map, mapKey: true, name: "[key]"}), typ: t.Key()})
		leafPaths(t.Elem(), with(leafStep{kind: reflect.Map, name: "[value]"}), seen, out)
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
	default:
		*out = append(*out, leafPath{steps: prefix, typ: t})
	}
}

// probe is a pair of values a leaf is set to in turn.
type probe struct {
	name string
	set  func(v reflect.Value, i int) // sets v to the pair's value i (0 or 1)
}

// stringProbes are the pairs a string leaf is set to: one plain, and URLs
// differing only in a part that RedactURL hides, so that a URL the
// redacted form shows masked must be compared whole (hiddenValues).
var stringProbes = []probe{
	{"plain", func(v reflect.Value, i int) { v.SetString(fmt.Sprint("value", i)) }},
	{"userinfo", func(v reflect.Value, i int) { v.SetString(fmt.Sprintf("https://app:pass%d@hooks.example.com/in", i)) }},
	{"query value", func(v reflect.Value, i int) { v.SetString(fmt.Sprintf("https://hooks.example.com/in?token=t%d", i)) }},
	{"token path segment", func(v reflect.Value, i int) {
		v.SetString(fmt.Sprintf("https://hooks.example.com/in/a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d%d", i))
	}},
}

// probesFor returns the pairs a leaf of type t is set to.
func probesFor(t reflect.Type) []probe {
	switch {
	case t == timeType:
		return []probe{{"time", func(v reflect.Value, i int) {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2+i, 3, 4, 5, 0, time.UTC)))
		}}}
	case t == anyType:
		return []probe{{"any", func(v reflect.Value, i int) { v.Set(reflect.ValueOf(fmt.Sprint("value", i))) }}}
	}
	var set func(v reflect.Value, i int)
	switch t.Kind() {
	case reflect.String:
		return stringProbes
	case reflect.Bool:
		set = func(v reflect.Value, i int) { v.SetBool(i == 1) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		set = func(v reflect.Value, i int) { v.SetInt(int64(7 + i)) }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		set = func(v reflect.Value, i int) { v.SetUint(uint64(7 + i)) }
	case reflect.Float32, reflect.Float64:
		set = func(v reflect.Value, i int) { v.SetFloat(1.5 + float64(i)) }
	case reflect.Complex64, reflect.Complex128:
		set = func(v reflect.Value, i int) { v.SetComplex(complex(1.5+float64(i), 0)) }
	default:
		return nil
	}
	return []probe{{t.Kind().String(), set}}
}

// setLeaf sets the leaf at steps under v (addressable) with set,
// allocating the pointers, slices and maps on the way (the elements before
// an index, and a map's value beside a probed key, are zero values).
func setLeaf(v reflect.Value, steps []leafStep, set func(reflect.Value)) {
	if len(steps) == 0 {
		set(v)
		return
	}
	s := steps[0]
	switch s.kind {
	case reflect.Struct:
		f := v.Field(s.field)
		setLeaf(reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem(), steps[1:], set)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		setLeaf(v.Elem(), steps[1:], set)
	case reflect.Slice:
		for v.Len() <= s.index {
			v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
		}
		setLeaf(v.Index(s.index), steps[1:], set)
	case reflect.Array:
		setLeaf(v.Index(s.index), steps[1:], set)
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		key := reflect.New(v.Type().Key()).Elem()
		elem := reflect.New(v.Type().Elem()).Elem()
		if s.mapKey {
			set(key)
			v.SetMapIndex(key, elem)
			return
		}
		if ps := probesFor(key.Type()); len(ps) > 0 {
			ps[0].set(key, 0) // one fixed key
		}
		if old := v.MapIndex(key); old.IsValid() {
			elem.Set(old)
		}
		setLeaf(elem, steps[1:], set)
		v.SetMapIndex(key, elem)
	}
}

// uncoveredLeaves returns the leaves of a Trigger (outside
// clusterDefinitionSkips) that write cannot tell apart: for some probe,
// two triggers differing only in that leaf write the same bytes.
func uncoveredLeaves(t *testing.T, write func(io.Writer, *Trigger) error) (uncovered []string, compared int) {
	t.Helper()
	var paths []leafPath
	leafPaths(reflect.TypeFor[Trigger](), nil, map[reflect.Type]bool{}, &paths)
	skipped := func(p leafPath) bool {
		name := p.String()
		for prefix := range clusterDefinitionSkips {
			if name == prefix || strings.HasPrefix(name, prefix+".") {
				return true
			}
		}
		return false
	}
	definition := func(p leafPath, pr probe, i int) []byte {
		// start_at is a time, so that StartAt.Time is what the trigger
		// says (with start_at: now, the time is unused).
		cfg, err := Parse("t.yaml", []byte("triggers:\n  - name: orders\n    database: shop\n    collection: orders\n"+
			"    start_at: 2026-01-15T09:00:00Z\n    webhook: { url: \"https://api.example.com/hook\" }\n"),
			func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		tr := cfg.Triggers[0]
		setLeaf(reflect.ValueOf(tr).Elem(), p.steps, func(v reflect.Value) { pr.set(v, i) })
		var b bytes.Buffer
		if err := write(&b, tr); err != nil {
			t.Fatalf("%s (%s): %v", p, pr.name, err)
		}
		return b.Bytes()
	}
	for _, p := range paths {
		if skipped(p) {
			continue
		}
		compared++
		for _, pr := range probesFor(p.typ) {
			if bytes.Equal(definition(p, pr, 0), definition(p, pr, 1)) {
				uncovered = append(uncovered, fmt.Sprintf("%s (%s, %s)", p, p.typ, pr.name))
			}
		}
	}
	return uncovered, compared
}

// TestWriteClusterDefinitionCoversEveryField: for every leaf of a Trigger
// (every string, number, bool, time and secret under its fields, however
// deep; a slice's first and second element; a map's keys and values), two
// triggers that differ only there write different cluster definitions,
// unless clusterDefinitionSkips names the field with a reason. A string
// is probed plain and as URLs that differ only in a part the redacted
// form masks. MarshalJSON masks the secrets and the URLs' secret parts, so
// WriteClusterDefinition writes them apart (hiddenValues): a secret field
// added to Trigger without adding it there fails here, where it would
// otherwise be invisible to the cluster's drift detection.
func TestWriteClusterDefinitionCoversEveryField(t *testing.T) {
	uncovered, compared := uncoveredLeaves(t, WriteClusterDefinition)
	if compared < 40 {
		t.Fatalf("compared %d leaves of Trigger, want every field's", compared)
	}
	for _, u := range uncovered {
		t.Errorf("two triggers differing only in %s write the same cluster definition: "+
			"show it in MarshalJSON, add it to hiddenValues, or name it in clusterDefinitionSkips with the reason", u)
	}
	t.Logf("%d leaves compared", compared)
}

// TestCoverageCheckFindsOmissions: the coverage check above fails for a
// WriteClusterDefinition that leaves a hidden value out: each mutant
// below drops one, and the check must name the leaf it dropped.
func TestCoverageCheckFindsOmissions(t *testing.T) {
	mutant := func(drop func(*hidden)) func(io.Writer, *Trigger) error {
		return func(w io.Writer, tr *Trigger) error {
			shown, err := tr.MarshalJSON()
			if err != nil {
				return err
			}
			h := hiddenValues(tr)
			drop(&h)
			hb, err := json.Marshal(h)
			if err != nil {
				return err
			}
			_, err = w.Write(append(append(shown, '\n'), hb...))
			return err
		}
	}
	tests := []struct {
		name string
		drop func(*hidden)
		want []string // leaves the check must report
	}{
		{"the webhook URL", func(h *hidden) { h.URL = "" }, []string{"Webhook.URL (string, userinfo)",
			"Webhook.URL (string, query value)", "Webhook.URL (string, token path segment)"}},
		{"the OAuth 2.0 token URL", func(h *hidden) { h.OAuth2TokenURL = "" }, []string{"Webhook.Auth.OAuth2.TokenURL (string, query value)"}},
		{"a rotation's second signing key", func(h *hidden) {
			if len(h.SigningKeys) > 1 {
				h.SigningKeys = h.SigningKeys[:1]
			}
		}, []string{"Webhook.Secrets.[1] (triggers.Secret, plain)"}},
		{"the header values", func(h *hidden) { h.Headers = nil }, []string{"Webhook.Headers.[value] (triggers.Secret, plain)"}},
		{"the endpoint's prefix", func(h *hidden) {
			if h.Endpoint != nil {
				h.Endpoint.URLPrefix = ""
			}
		}, []string{"Webhook.Endpoint.URLPrefix (string, plain)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uncovered, _ := uncoveredLeaves(t, mutant(tc.drop))
			for _, w := range tc.want {
				if !slices.Contains(uncovered, w) {
					t.Errorf("the check does not report %s; it reports %q", w, uncovered)
				}
			}
		})
	}
}
