// Package layout checks that ARCHITECTURE.md describes the tree as it is:
// its import graph and its list of folders.
package layout

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/changehook/changehook/"

// productPrefixes are the folders whose packages the import block lists
// (examples and test scenarios are left out, as the document says).
var productPrefixes = []string{"cluster", "cmd", "devdb", "dispatcher", "internal", "runner", "store", "triggers"}

// packages returns the module's non-test packages by folder (relative to
// the module root), each with the module packages it imports.
func packages(t *testing.T, root string) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		p, err := build.Default.ImportDir(path, 0)
		if err != nil {
			var noGo *build.NoGoError
			if errors.As(err, &noGo) {
				return nil
			}
			return err
		}
		var imports []string
		for _, imp := range p.Imports {
			if rest, ok := strings.CutPrefix(imp, module); ok {
				imports = append(imports, rest)
			}
		}
		pkgs[rel] = imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func isProduct(dir string) bool {
	for _, p := range productPrefixes {
		if dir == p || strings.HasPrefix(dir, p+"/") {
			return true
		}
	}
	return false
}

// TestArchitectureImports compares ARCHITECTURE.md's import block with the
// imports of the tree; run the command above the block to regenerate it.
func TestArchitectureImports(t *testing.T) {
	doc, err := os.ReadFile("../../ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- BEGIN imports -->\n```\n(.*?)```\n<!-- END imports -->").FindSubmatch(doc)
	if m == nil {
		t.Fatal("ARCHITECTURE.md has no import block")
	}
	var want []string
	for dir, imports := range packages(t, "../..") {
		if !isProduct(dir) {
			continue
		}
		var deps []string
		for _, imp := range imports {
			if isProduct(imp) {
				deps = append(deps, imp)
			}
		}
		if len(deps) > 0 {
			slices.Sort(deps)
			want = append(want, dir+" → "+strings.Join(deps, " "))
		}
	}
	slices.Sort(want)
	got := strings.Split(strings.TrimSuffix(string(m[1]), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("ARCHITECTURE.md's import block is stale; regenerate it with the command above it.\n--- document ---\n%s\n--- tree ---\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestArchitectureLayout checks that every product folder holding a Go
// package is named in ARCHITECTURE.md's layout (a folder may be covered by
// its parent's line, e.g. devdb/internal/server/... by devdb/internal/server).
func TestArchitectureLayout(t *testing.T) {
	doc, err := os.ReadFile("../../ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Layout.*?```\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("ARCHITECTURE.md has no layout block")
	}
	named := map[string]bool{}
	for _, line := range strings.Split(string(m[1]), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "/") && !strings.HasPrefix(line, " ") {
			named[strings.TrimSuffix(f[0], "/")] = true
		}
	}
	var missing []string
	for dir := range packages(t, "../..") {
		if !isProduct(dir) && !strings.HasPrefix(dir, "test/") {
			continue
		}
		covered := false
		for d := dir; d != "." && !covered; d = filepath.ToSlash(filepath.Dir(d)) {
			covered = named[d]
		}
		if !covered {
			missing = append(missing, dir)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("ARCHITECTURE.md's layout does not name these folders: %s", strings.Join(missing, ", "))
	}
}
