package e2e

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDevDemo runs `changehook dev --demo` on the repository's
// triggers.yaml, as a newcomer would, and waits for the low-stock messages
// printed by the demo receiver with a verified signature.
func TestDevDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 6 s of demo time")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	t.Setenv("CHANGEHOOK_DEMO_URL", "http://127.0.0.1:"+strconv.Itoa(port)+"/hooks/stock")

	start := time.Now()
	r := startRunner(t, "dev", "--demo", "-c", "../../triggers.yaml", "--admin-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info")
	low := regexp.MustCompile(`signature ok\n\s+Only \d+ apples left!`)
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !low.MatchString(r.stdout.String()) {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("no verified low-stock message in %s:\n%s\n%s", waitTimeout, r.stdout.String(), r.logText())
		case <-r.exited:
			t.Fatalf("dev --demo exited: %v\n%s\n%s", r.exitErr, r.stdout.String(), r.logText())
		}
	}
	t.Logf("first low-stock message after %s", time.Since(start).Round(100*time.Millisecond))
	if code := r.stop(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	out := r.stdout.String()
	for _, want := range []string{"devdb      mongodb://127.0.0.1:", "[writer]   sold", "stopped: in-flight deliveries finished"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "INVALID") || strings.Contains(out, "whsec_") {
		t.Errorf("bad signature or leaked secret:\n%s", out)
	}
}
