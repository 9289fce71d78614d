package cli

import (
	"os"
	"strings"
	"testing"
)

// TestReloadLogsWarnings: a reload that succeeds logs the new file's
// warnings, each once with its position, as the start does; a disabled
// trigger's are left out. A reload used to log only "configuration
// reloaded", so a likely mistake an edit brought in went unseen until the
// next restart.
func TestReloadLogsWarnings(t *testing.T) {
	const orders = `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/orders" }
`
	cfg := writeConfig(t, orders)
	reload := make(chan struct{}, 1)
	_, stderr, stop := startDevIn(t, t.TempDir(), nil, reload, running, "-c", cfg, "--addr", "127.0.0.1:0", "--log-level", "info")
	if strings.Contains(stderr.String(), "level=WARN") {
		t.Fatalf("warnings at the start of a configuration without any:\n%s", stderr)
	}
	edited := orders + `  - name: paid
    database: shop
    collection: orders
    match: { status: paid }
    webhook: { url: "http://127.0.0.1:1/paid" }
  - name: off
    enabled: false
    database: shop
    collection: orders
    match: { total: 1 }
    webhook: { url: "http://127.0.0.1:1/off" }
`
	if err := os.WriteFile(cfg, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitFor(t, stderr, "configuration reloaded")
	want := "status is no field of a change event"
	waitFor(t, stderr, want)
	log := stderr.String()
	if n := strings.Count(log, want); n != 1 {
		t.Errorf("the warning is logged %d times, want once:\n%s", n, log)
	}
	line := log[strings.Index(log, want):]
	line = line[:strings.IndexByte(line, '\n')]
	if !strings.Contains(line, "at="+cfg+":10:") || !strings.Contains(line, "trigger=paid") {
		t.Errorf("the warning's line has no position %s:10:COL or no trigger=paid: %s", cfg, line)
	}
	if strings.Contains(log, "total is no field") {
		t.Errorf("the disabled trigger's warning is logged:\n%s", log)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("dev: exit %d\n%s", code, stderr)
	}
}
