package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// geoConfig is a trigger whose match uses $geoWithin, which MongoDB
// evaluates in a change stream but changehook's evaluator and devdb do not.
const geoConfig = `
triggers:
  - name: near
    database: shop
    collection: orders
    operations: [insert]
    match: { fullDocument.loc: { $geoWithin: { $centerSphere: [[0, 0], 0.1] } }, fullDocument.qty: { $gt: 5 } }
    webhook: { url: "http://127.0.0.1:1/h" }
`

// geoEvents are two inserts: the first passes the condition changehook can
// evaluate (qty > 5), the second does not.
const geoEvents = `{"_id": {"_data": "8263"}, "operationType": "insert", "ns": {"db": "shop", "coll": "orders"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1, "qty": 10, "loc": [0, 0]}}
{"_id": {"_data": "8264"}, "operationType": "insert", "ns": {"db": "shop", "coll": "orders"}, "documentKey": {"_id": 2}, "fullDocument": {"_id": 2, "qty": 1, "loc": [0, 0]}}
`

// TestMatchOperatorsOnlyMongoDBEvaluates: a trigger whose match uses an
// operator only MongoDB evaluates is valid (with a note), the local
// commands say they cannot evaluate it instead of failing the trigger, and
// dev, whose devdb cannot serve its stream, refuses to start, naming it.
func TestMatchOperatorsOnlyMongoDBEvaluates(t *testing.T) {
	cfg := writeConfig(t, geoConfig)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	event := filepath.Join(dir, "event.json")
	if err := os.WriteFile(events, []byte(geoEvents), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(event, []byte(strings.SplitAfter(geoEvents, "\n")[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	const left = `{"fullDocument.loc":{"$geoWithin":{"$centerSphere":[[0,0],0.1]}}}`
	tests := []struct {
		name string
		args []string
		code int
		want []string // in stdout, or stderr for dev
	}{
		{"validate", []string{"validate", "-c", cfg}, ExitOK, []string{
			"    note: match uses $geoWithin, which MongoDB evaluates but changehook's local evaluator does not: " +
				"test and validate --events cannot tell whether an event matches, and dev (devdb) cannot run this trigger\n"}},
		{"validate --events", []string{"validate", "-c", cfg, "--events", events}, ExitOK, []string{
			`events.jsonl:1: insert shop.orders {"_id":1}: near: matched if MongoDB finds ` + left + ` true (changehook cannot evaluate it), payload ok (154 bytes)` + "\n",
			`events.jsonl:2: insert shop.orders {"_id":2}: near: no match — false in the match filter: {"fullDocument.qty":{"$gt":5}} (fullDocument.qty is 1)` + "\n"}},
		{"test --events", []string{"test", "-c", cfg, "--events", events}, ExitOK, []string{
			"  match:   undecided — changehook cannot evaluate $geoWithin locally (MongoDB evaluates the match on its server; devdb does not either): " + left + " is left to MongoDB; " +
				`operationType "insert" is one of [insert] and the match filter {"fullDocument.qty":{"$gt":5}} is true, so the event is shown as it is sent if MongoDB finds that true` + "\n" +
				`  body (154 bytes): {"_id":{"_data":"8263"}`,
			`  match:   no — false in the match filter: {"fullDocument.qty":{"$gt":5}} (fullDocument.qty is 1)` + "\n"}},
		{"test --event", []string{"test", "-c", cfg, "--event", event}, ExitOK, []string{
			"match:    undecided — changehook cannot evaluate $geoWithin locally",
			"body (exact bytes, 154):\n"}},
		{"dev", []string{"dev", "-c", cfg, "--addr", "127.0.0.1:0"}, ExitFailure, []string{
			"check triggers for devdb: trigger near: match uses $geoWithin, which MongoDB evaluates but devdb does not, so devdb cannot serve the change stream; " +
				"run it against MongoDB (changehook run), or set enabled: false on it for dev\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, nil, "", tt.args...)
			if tt.name == "dev" {
				out = errOut
			}
			out = strings.ReplaceAll(out, dir+string(filepath.Separator), "")
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output:\n%s\nwant:\n%s", out, w)
				}
			}
		})
	}
}

// TestDevReloadRefusesATriggerDevdbCannotServe: a reload under dev that
// adds a trigger whose match uses an operator devdb does not evaluate is
// rejected as dev's start would be, naming the trigger and the operator,
// and the running configuration stays.
func TestDevReloadRefusesATriggerDevdbCannotServe(t *testing.T) {
	const plain = `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/orders" }
`
	cfg := writeConfig(t, plain)
	reload := make(chan struct{}, 1)
	_, stderr, stop := startDevIn(t, t.TempDir(), nil, reload, running,
		"-c", cfg, "--addr", "127.0.0.1:0", "--admin-addr", "off", "--log-level", "info")
	if err := os.WriteFile(cfg, []byte(plain+strings.TrimPrefix(geoConfig, "\ntriggers:\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitFor(t, stderr, "reload rejected")
	want := "check triggers for devdb: trigger near: match uses $geoWithin, which MongoDB evaluates but devdb does not"
	if s := stderr.String(); !strings.Contains(s, want) || strings.Contains(s, "configuration reloaded") {
		t.Errorf("dev's log after the reload:\n%s\nwant a rejected reload with %q", s, want)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("dev: exit %d\n%s", code, stderr)
	}
}
