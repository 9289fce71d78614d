package triggers

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// clusterDefinitionSkips are the Trigger fields (paths as leafPaths
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
	field int    // struct field index, or -1
	name  string // the step's name in the path
	kind  reflect.Kind
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
// time and interface value under its fields, pointers, the first element
// of its slices and the value of one key of its maps. Compiled payload
// expressions are left out (Webhook.PayloadSpec, their source, is a leaf).
func leafPaths(t reflect.Type, prefix []leafStep, seen map[reflect.Type]bool, out *[]leafPath) {
	add := func(steps []leafStep) {
		*out = append(*out, leafPath{steps: steps, typ: t})
	}
	if t == exprType {
		return
	}
	if t == timeType || t == anyType {
		add(prefix)
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
			f := t.Field(i)
			leafPaths(f.Type, append(append([]leafStep(nil), prefix...), leafStep{field: i, name: f.Name, kind: reflect.Struct}), seen, out)
		}
	case reflect.Pointer:
		leafPaths(t.Elem(), append(append([]leafStep(nil), prefix...), leafStep{field: -1, kind: reflect.Pointer}), seen, out)
	case reflect.Slice, reflect.Array:
		leafPaths(t.Elem(), append(append([]leafStep(nil), prefix...), leafStep{field: -1, name: "[0]", kind: t.Kind()}), seen, out)
	case reflect.Map:
		leafPaths(t.Elem(), append(append([]leafStep(nil), prefix...), leafStep{field: -1, name: "[key]", kind: reflect.Map}), seen, out)
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
	default:
		add(prefix)
	}
}

// setLeaf sets the leaf at steps under v (addressable) to variant i's
// value, allocating the pointers, slices and maps on the way.
func setLeaf(v reflect.Value, steps []leafStep, i int) {
	if len(steps) == 0 {
		setValue(v, i)
		return
	}
	s := steps[0]
	switch s.kind {
	case reflect.Struct:
		f := v.Field(s.field)
		f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
		setLeaf(f, steps[1:], i)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		setLeaf(v.Elem(), steps[1:], i)
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		setLeaf(v.Index(0), steps[1:], i)
	case reflect.Array:
		setLeaf(v.Index(0), steps[1:], i)
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		key := reflect.New(v.Type().Key()).Elem()
		setValue(key, 0)
		elem := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(key); old.IsValid() {
			elem.Set(old)
		}
		setLeaf(elem, steps[1:], i)
		v.SetMapIndex(key, elem)
	}
}

// setValue sets the leaf v to variant i (0 or 1) of a value of its kind.
func setValue(v reflect.Value, i int) {
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2+i, 3, 4, 5, 0, time.UTC)))
		return
	case v.Type() == anyType:
		v.Set(reflect.ValueOf(fmt.Sprint("value", i)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprint("value", i))
	case reflect.Bool:
		v.SetBool(i == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(7 + i))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(uint64(7 + i))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5 + float64(i))
	case reflect.Complex64, reflect.Complex128:
		v.SetComplex(complex(1.5+float64(i), 0))
	}
}

// TestWriteClusterDefinitionCoversEveryField: for every leaf of a Trigger
// (every string, number, bool, time and secret under its fields, however
// deep), two triggers that differ only there write different cluster
// definitions, unless clusterDefinitionSkips names the field with a
// reason. MarshalJSON masks the secrets and the URLs' secret parts, so
// WriteClusterDefinition writes them apart (hiddenValues): a secret field
// added to Trigger without adding it there fails here, where before it
// would have been invisible to the cluster's drift detection.
func TestWriteClusterDefinitionCoversEveryField(t *testing.T) {
	var paths []leafPath
	leafPaths(reflect.TypeFor[Trigger](), nil, map[reflect.Type]bool{}, &paths)
	if len(paths) < 40 {
		t.Fatalf("found %d leaves in Trigger, want every field's", len(paths))
	}
	skipped := func(p leafPath) bool {
		name := p.String()
		for prefix := range clusterDefinitionSkips {
			if name == prefix || strings.HasPrefix(name, prefix+".") || strings.HasPrefix(name, prefix+"[") {
				return true
			}
		}
		return false
	}
	write := func(t *testing.T, p leafPath, i int) ([]byte, error) {
		t.Helper()
		// start_at is a time, so that StartAt.Time is what the trigger
		// says (with start_at: now, the time is unused).
		cfg, err := Parse("t.yaml", []byte("triggers:\n  - name: orders\n    database: shop\n    collection: orders\n"+
			"    start_at: 2026-01-15T09:00:00Z\n    webhook: { url: \"https://api.example.com/hook\" }\n"),
			func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		tr := cfg.Triggers[0]
		setLeaf(reflect.ValueOf(tr).Elem(), p.steps, i)
		var b bytes.Buffer
		err = WriteClusterDefinition(&b, tr)
		return b.Bytes(), err
	}
	var covered int
	for _, p := range paths {
		if skipped(p) {
			continue
		}
		t.Run(p.String(), func(t *testing.T) {
			a, errA := write(t, p, 0)
			b, errB := write(t, p, 1)
			if errA != nil || errB != nil {
				t.Fatalf("WriteClusterDefinition: %v / %v", errA, errB)
			}
			if bytes.Equal(a, b) {
				t.Errorf("two triggers differing only in %s (%s) write the same cluster definition: "+
					"show it in MarshalJSON, add it to hiddenValues, or name it in clusterDefinitionSkips with the reason",
					p, p.typ)
			}
		})
		covered++
	}
	t.Logf("%d leaves compared, %d skipped", covered, len(paths)-covered)
}
