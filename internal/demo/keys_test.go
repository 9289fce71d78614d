package demo

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// TestPublishedKeysAreTheRepositorysKeys: PublishedKeys lists exactly the
// signing keys written in the repository's configurations (the demo, the
// examples and the scenarios that run them).
func TestPublishedKeysAreTheRepositorysKeys(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../../triggers.yaml", "../../examples/*/*.yaml", "../../test/e2e/scenarios/*/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 6 {
		t.Fatalf("found only %v", files)
	}
	key := regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`)
	found := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range key.FindAllString(string(data), -1) {
			found[k] = true
			if !IsPublishedKey(k) {
				t.Errorf("%s: signing key %s is not in PublishedKeys", f, k)
			}
		}
	}
	for _, k := range PublishedKeys {
		if !found[k] {
			t.Errorf("PublishedKeys lists %s, which no configuration of the repository has", k)
		}
	}
	if slices.Contains(PublishedKeys, "whsec_") || IsPublishedKey("whsec_aW5zdGFuY2Uta2V5LW9mLWEtdXNlcg==") {
		t.Error("IsPublishedKey takes other keys for published ones")
	}
}
