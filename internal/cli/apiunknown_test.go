package cli

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestAPIRefusesUnknownTrigger: the admin API of a running dev answers a
// history or dead-letter call naming a trigger that is neither configured
// nor named by a record with 404 and the same "unknown trigger ... (did
// you mean ...)" as `history --trigger` and `dlq --trigger` (it answered
// an empty list, as if the typo were a trigger without records); a
// configured trigger is an empty list, and one a reload added is known.
func TestAPIRefusesUnknownTrigger(t *testing.T) {
	const orders = `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/orders" }
`
	cfg := writeConfig(t, orders)
	reload := make(chan struct{}, 1)
	adminLine := regexp.MustCompile(`(?m)^admin      (http://127\.0\.0\.1:\d+)  \(console`)
	stdout, stderr, stop := startDevIn(t, t.TempDir(), nil, reload,
		func(stdout, stderr string) bool { return running(stdout, stderr) && adminLine.MatchString(stdout) },
		"-c", cfg, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "info")
	base := adminLine.FindStringSubmatch(stdout.String())[1]
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	unknown := func(what string) string {
		return `unknown trigger \"order\": it is not in the configuration, and no ` + what + ` name it (did you mean \"orders\"?); triggers: orders`
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/history?trigger=order", "", http.StatusNotFound, unknown("history records")},
		{"GET", "/api/deadletters?trigger=order", "", http.StatusNotFound, unknown("dead letters")},
		{"POST", "/api/deadletters/purge", `{"trigger": "order"}`, http.StatusNotFound, unknown("dead letters")},
		{"POST", "/api/deadletters/replay", `{"trigger": "order"}`, http.StatusNotFound, unknown("dead letters")},
		{"GET", "/api/history?trigger=orders", "", http.StatusOK, `"attempts": []`},
		{"GET", "/api/deadletters?trigger=orders", "", http.StatusOK, `"dead_letters": []`},
		{"GET", "/api/deadletters?trigger=added", "", http.StatusNotFound, `unknown trigger \"added\"`},
	} {
		if code, body := call(tc.method, tc.path, tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %s = %d %s; want %d with %s", tc.method, tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}

	// A trigger added by a reload is known from then on.
	added := orders + `  - name: added
    database: shop
    collection: added
    webhook: { url: "http://127.0.0.1:1/added" }
`
	if err := os.WriteFile(cfg, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitFor(t, stderr, "configuration reloaded")
	if code, body := call("GET", "/api/deadletters?trigger=added", ""); code != http.StatusOK || !strings.Contains(body, `"dead_letters": []`) {
		t.Errorf("after the reload that added it, GET /api/deadletters?trigger=added = %d %s", code, body)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("dev: exit %d\n%s", code, stderr)
	}
}
