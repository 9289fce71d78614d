package dispatcher

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// reasonConstants returns the values of the package's Reason* constants,
// read from its non-test sources, sorted.
func reasonConstants(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Reason") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s is not a string literal", name.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, v)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestInitCreatesEveryReason: Init creates an attempts series at zero for
// "ok" and every failure reason, the Reason* constants being the same set
// as README's metrics section lists, so that alerts on any reason (such as
// payload_error) work before its first failure.
func TestInitCreatesEveryReason(t *testing.T) {
	consts := reasonConstants(t)
	if len(consts) == 0 {
		t.Fatal("no Reason* constants found")
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`changehook_delivery_attempts_total\{reason="([a-z_|]+)"\}`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README lists no changehook_delivery_attempts_total reasons")
	}
	documented := strings.Split(string(m[1]), "|")
	slices.Sort(documented)

	reg := prometheus.NewRegistry()
	NewMetrics(reg).Init("orders")
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var initialised []string
	for _, f := range fams {
		if f.GetName() != "changehook_delivery_attempts_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			if s.GetCounter().GetValue() != 0 {
				t.Errorf("series %v = %v, want 0", s.GetLabel(), s.GetCounter().GetValue())
			}
			for _, l := range s.GetLabel() {
				if l.GetName() == "reason" {
					initialised = append(initialised, l.GetValue())
				}
			}
		}
	}
	slices.Sort(initialised)

	want := slices.Sorted(slices.Values(append([]string{"ok"}, consts...)))
	for _, tc := range []struct {
		name string
		got  []string
	}{
		{"initialised series", initialised},
		{"README list", documented},
	} {
		if !slices.Equal(tc.got, want) {
			t.Errorf("%s = %v, want ok and the Reason* constants %v", tc.name, tc.got, want)
		}
	}
}
