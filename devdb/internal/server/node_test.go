package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests drive devdb with real non-Go clients. They skip unless the
// clients are installed; see devdb/README.md ("Other clients") for setup:
//
//	npm install --prefix /tmp/devdb-clients mongodb mongosh
//	DEVDB_NODE_MODULES=/tmp/devdb-clients/node_modules go test ./devdb -run 'TestNode|TestMongosh'

// nodeModules returns the node_modules directory named by
// DEVDB_NODE_MODULES, or skips the test.
func nodeModules(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DEVDB_NODE_MODULES")
	if dir == "" {
		t.Skip("DEVDB_NODE_MODULES is not set (see devdb/README.md)")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("DEVDB_NODE_MODULES: %v", err)
	}
	return dir
}

// nodeDriver returns the node_modules directory (see nodeModules) and the
// node executable, or skips the test unless node and the mongodb package
// are installed.
func nodeDriver(t *testing.T) (mods, node string) {
	t.Helper()
	mods = nodeModules(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	if _, err := os.Stat(filepath.Join(mods, "mongodb")); err != nil {
		t.Skipf("the mongodb package is not installed in %s", mods)
	}
	return mods, node
}

// mongoshPath returns the mongosh executable of the node_modules directory
// (see nodeModules), or skips the test unless node and mongosh are
// installed.
func mongoshPath(t *testing.T) string {
	t.Helper()
	mods := nodeModules(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	shell := filepath.Join(mods, ".bin", "mongosh")
	if _, err := os.Stat(shell); err != nil {
		t.Skipf("mongosh is not installed in %s", mods)
	}
	return shell
}

// runClient runs a client command with a deadline and fails the test unless
// it exits 0 and prints "ok" as its last line.
func runClient(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || lines[len(lines)-1] != "ok" {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestNodeDriver(t *testing.T) {
	mods, node := nodeDriver(t)
	s := startTestServer(t, Options{}, testHooks{})
	script, err := filepath.Abs(filepath.Join("testdata", "node", "crud.js"))
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, []string{"NODE_PATH=" + mods}, node, script, s.URI())
}

func TestMongosh(t *testing.T) {
	shell := mongoshPath(t)
	s := startTestServer(t, Options{}, testHooks{})
	script, err := filepath.Abs(filepath.Join("testdata", "node", "mongosh.js"))
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, []string{"HOME=" + t.TempDir(), "MONGOSH_NO_TELEMETRY=1"}, shell, s.URI(), "--quiet", "--norc", "--file", script)
}
