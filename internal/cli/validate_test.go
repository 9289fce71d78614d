package cli

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/triggers"
)

// warningsConfig has one warning of each kind: a short admin.token and an
// endpoint no enabled trigger uses (about the file); a retry class another
// list takes, a payload string that looks like a template placeholder, a
// batch to a chat webhook, a match on a field no event has, a
// fullDocument condition on updates without full_document, a condition
// that never holds and a quoted ${VAR} read as a number (about one
// trigger, a disabled one's included: its match and retry class).
const warningsConfig = `admin: { token: "short-s3cret" }
endpoints:
  - name: unused
    url_prefix: https://hooks.example.com/
    rate_limit: { per_second: 1 }
triggers:
  - name: chat
    database: shop
    collection: orders
    operations: [insert, update]
    retry: { drop_on: [4xx] }
    batch: { max_events: 10 }
    match:
      quantity: 1
      fullDocument.status: paid
    webhook:
      url: https://hooks.slack.com/services/T000/B000/XXXX
      payload: { text: "Order {{id}} is paid" }
  - name: deletes
    database: shop
    operations: [delete]
    match:
      fullDocument.qty: { $lt: "${LIMIT}" }
    webhook: { url: https://example.com/h }
  - name: off
    enabled: false
    database: shop
    operations: [delete]
    match: { updateDescription.x: 1 }
    webhook: { url: https://hooks.example.com/off }
    retry: { drop_on: [4xx] }
`

// TestValidateWarnings: validate prints every warning as "warning:
// FILE:LINE:COL: message", those about the file under its first line and
// those about a trigger under the trigger (a disabled one's too), and
// never a secret.
func TestValidateWarnings(t *testing.T) {
	cfg := writeConfig(t, warningsConfig)
	code, out, errOut := run(t, map[string]string{"LIMIT": "20"}, "", "validate", "-c", cfg)
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	want := cfg + " is valid: 3 triggers (2 enabled)\n" +
		"  warning: " + cfg + ":1:17: admin.token is shorter than 16 characters: anyone who can reach the admin server may guess it; use a long random one (openssl rand -hex 32)\n" +
		"  warning: " + cfg + `:3:5: endpoints: "unused" applies to no enabled trigger (no webhook.url of one is under its url_prefix https://hooks.example.com/): its rate limit limits nothing` + "\n" +
		"  chat: shop.orders [insert, update] -> POST https://hooks.slack.com/services/REDACTED, ordering strict\n" +
		"    warning: " + cfg + ":11:24: retry.drop_on: 4xx: 408 and 429 are retried (the default retry_on lists them); a code beats a class\n" +
		"    warning: " + cfg + ":12:5: batch: a batched request's body is a JSON array of events, which chat incoming webhooks (Slack, Discord, Teams) refuse; remove batch for this endpoint\n" +
		"    warning: " + cfg + ":14:7: match: quantity is no field of a change event, so every event sees it missing; the changed document is under fullDocument (fullDocument.quantity)\n" +
		"    warning: " + cfg + ":15:7: match: update events carry no fullDocument unless full_document is updateLookup, whenAvailable or required, so for every update fullDocument.status is missing; set full_document: updateLookup, or test updateDescription.updatedFields\n" +
		"    warning: " + cfg + `:18:24: webhook.payload: "Order {{id}} is paid" looks like a template placeholder, but payload is a MongoDB expression and sends a string as written: build it with $concat and field paths, e.g. {$concat: ["Order ", {$toString: "$fullDocument._id"}]}` + "\n" +
		"  deletes: shop [delete] -> POST https://example.com/h, ordering strict\n" +
		"    warning: " + cfg + ":23:7: match: fullDocument.qty must hold, but no operation delivered (delete) carries fullDocument (insert and replace events do, and update events with full_document), so the match never holds\n" +
		"    warning: " + cfg + `:23:32: match: fullDocument.qty: {$lt: "${LIMIT}"} compares with the string "20", not a number: a quoted ${VAR} stays a string, and $lt with a string matches only string values; if fullDocument.qty holds numbers, write the condition in block style with the variable unquoted, $lt: ${LIMIT} on a line of its own; if it holds strings, write $lt: !!str "${LIMIT}" to say so (see ${VAR} under Configuration reference in README.md)` + "\n" +
		"  off (disabled): shop [delete] -> POST https://hooks.example.com/off, ordering strict\n" +
		"    warning: " + cfg + ":29:14: match: updateDescription.x must hold, but only update events carry updateDescription and the operations delivered (delete) do not include update, so the match never holds\n" +
		"    warning: " + cfg + ":31:24: retry.drop_on: 4xx: 408 and 429 are retried (the default retry_on lists them); a code beats a class\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(out+errOut, "s3cret") {
		t.Errorf("the output shows admin.token:\n%s%s", out, errOut)
	}
}

// TestLogWarnings: run and dev log each warning once, with its position
// as "at" (and its trigger), except those about a disabled trigger.
func TestLogWarnings(t *testing.T) {
	cfg, err := triggers.Parse("triggers.yaml", []byte(warningsConfig), func(k string) (string, bool) { return "20", k == "LIMIT" })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	logWarnings(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime})), cfg)
	lines := strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n")
	for _, tc := range []struct {
		name string
		want string // the line's start, up to its at (and trigger)
	}{
		{"admin token", `level=WARN msg="admin.token is shorter than 16 characters: anyone`},
		{"endpoint", `level=WARN msg="endpoints: \"unused\" applies to no enabled trigger`},
		{"retry", `level=WARN msg="retry.drop_on: 4xx: 408 and 429 are retried`},
		{"batch", `level=WARN msg="batch: a batched request's body is a JSON array of events`},
		{"match field", `level=WARN msg="match: quantity is no field of a change event`},
		{"fullDocument on updates", `level=WARN msg="match: update events carry no fullDocument`},
		{"payload", `level=WARN msg="webhook.payload: \"Order {{id}} is paid\" looks like a template placeholder`},
		{"never holds", `level=WARN msg="match: fullDocument.qty must hold`},
		{"quoted number", `level=WARN msg="match: fullDocument.qty: {$lt: \"${LIMIT}\"} compares with the string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, l := range lines {
				if strings.HasPrefix(l, tc.want) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d lines start with %q, want 1:\n%s", n, tc.want, logs.String())
			}
		})
	}
	ats := []string{
		" at=triggers.yaml:1:17", " at=triggers.yaml:3:5", " at=triggers.yaml:11:24 trigger=chat",
		" at=triggers.yaml:12:5 trigger=chat", " at=triggers.yaml:14:7 trigger=chat", " at=triggers.yaml:15:7 trigger=chat",
		" at=triggers.yaml:18:24 trigger=chat", " at=triggers.yaml:23:7 trigger=deletes", " at=triggers.yaml:23:32 trigger=deletes",
	}
	if len(lines) != len(ats) {
		t.Fatalf("%d lines, want %d (none of the disabled trigger):\n%s", len(lines), len(ats), logs.String())
	}
	for i, at := range ats {
		if !strings.HasSuffix(lines[i], at) {
			t.Errorf("line %d = %q, want it to end with %q", i+1, lines[i], at)
		}
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the log shows admin.token:\n%s", logs.String())
	}
}

// dropTime leaves the time out of a test's log lines.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

// TestValidateRefusesAnUnreachableURIHost: MONGODB_URI with a host no
// connection can reach, which the driver's parser takes ("[bad"), fails
// validate with the host named and the password nowhere.
func TestValidateRefusesAnUnreachableURIHost(t *testing.T) {
	cfg := writeConfig(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/orders" }
`)
	code, out, errOut := runWith(t, t.TempDir(), map[string]string{"MONGODB_URI": "mongodb://u:s3cretpw@[bad"}, "validate", "-c", cfg)
	want := cfg + `:1:1: mongodb.uri is omitted, so its default is MONGODB_URI from the environment, which is not valid: invalid connection string: host "[bad" is not a host name, an IPv4 address or an [IPv6] address, with an optional :port`
	if code != ExitFailure || !strings.Contains(out+errOut, want) || strings.Contains(out+errOut, "s3cretpw") {
		t.Errorf("validate with MONGODB_URI=mongodb://u:…@[bad: exit %d\n%s%s\nwant exit %d with %q, no password", code, out, errOut, ExitFailure, want)
	}
}
