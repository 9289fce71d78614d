package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/testhooks"
)

// captureConfig watches shop.orders; its payload is finding 2's: a number
// inside $concat (valid statically, an error on every real event) unless
// fixed.
func captureConfig(uri string, fixed bool) string {
	total := `"$fullDocument.total"`
	if fixed {
		total = `{ $toString: "$fullDocument.total" }`
	}
	return fmt.Sprintf(`
mongodb: { uri: %q }
triggers:
  - name: orders
    database: shop
    collection: orders
    operations: [insert, update]
    full_document: updateLookup
    match: { fullDocument.total: { $gte: 10 } }
    webhook:
      url: "http://127.0.0.1:1/orders"
      payload:
        text: { $concat: ["Order total: ", %s] }
  - name: off
    enabled: false
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/off" }
`, uri, total)
}

// signalWriter is a goroutine-safe buffer that closes ready when what was
// written contains want.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	ready chan struct{}
	once  sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.ready) })
	}
	return n, err
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// captureEvents runs capture of the orders trigger into a file while
// writes(…) runs once the stream is open, and returns the file's path.
func captureEvents(t *testing.T, cfg string, n int, writes func(ctx context.Context)) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "events.jsonl")
	stderr := &signalWriter{want: "capturing up to", ready: make(chan struct{})}
	var stdout bytes.Buffer
	env := Env{Stdout: &stdout, Stderr: stderr, Version: "v0", RuntimeDir: t.TempDir(),
		LookupEnv: func(string) (string, bool) { return "", false }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"capture", "orders", "-c", cfg, "-n", fmt.Sprint(n), "-o", out}, env)
	}()
	select {
	case <-stderr.ready:
	case code := <-done:
		t.Fatalf("capture ended before its stream opened: exit %d\n%s", code, stderr)
	case <-ctx.Done():
		t.Fatal("capture did not open its stream")
	}
	writes(ctx)
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("capture: exit %d\n%s", code, stderr)
		}
	case <-ctx.Done():
		t.Fatalf("capture did not stop after %d events\n%s", n, stderr)
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("captured %d events", n)) {
		t.Errorf("capture stderr:\n%s", stderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("capture -o wrote to stdout: %q", stdout.String())
	}
	return out
}

// TestCaptureRoundTrip: capture records exactly N of the trigger's events
// (its namespace, operations, match and fullDocument option applied by the
// server) as canonical Extended JSON lines that parse back to the same
// documents.
func TestCaptureRoundTrip(t *testing.T) {
	srv, client := devdbtest.Start(t)
	cfg := writeConfig(t, captureConfig(srv.URI(), false))
	events := captureEvents(t, cfg, 3, func(ctx context.Context) {
		db := client.Database("shop")
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		_, err := db.Collection("other").InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "total", Value: 99}})
		must(err) // another collection
		_, err = db.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "small"}, {Key: "total", Value: 3}})
		must(err) // match false
		_, err = db.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}, {Key: "total", Value: 12.5}})
		must(err)
		_, err = db.Collection("orders").DeleteOne(ctx, bson.D{{Key: "_id", Value: "small"}})
		must(err) // operation not watched
		_, err = db.Collection("orders").UpdateOne(ctx, bson.D{{Key: "_id", Value: "o1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "note", Value: "gift"}}}})
		must(err) // update: fullDocument by updateLookup
		_, err = db.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "o2"}, {Key: "total", Value: int64(40)}})
		must(err)
		_, err = db.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "o3"}, {Key: "total", Value: 50}})
		must(err) // beyond -n 3
	})
	data, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	want := []struct{ op, id, note string }{{"insert", "o1", ""}, {"update", "o1", "gift"}, {"insert", "o2", ""}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), data)
	}
	for i, w := range want {
		var ev bson.D
		if err := bson.UnmarshalExtJSON([]byte(lines[i]), true, &ev); err != nil {
			t.Fatalf("line %d is not canonical Extended JSON: %v\n%s", i+1, err, lines[i])
		}
		raw, _ := bson.Marshal(ev)
		r := bson.Raw(raw)
		if got := r.Lookup("operationType").StringValue(); got != w.op {
			t.Errorf("line %d: operationType %q, want %q", i+1, got, w.op)
		}
		if got := r.Lookup("fullDocument", "_id").StringValue(); got != w.id {
			t.Errorf("line %d: fullDocument._id %q, want %q", i+1, got, w.id)
		}
		if w.note != "" {
			if got, _ := r.Lookup("fullDocument", "note").StringValueOK(); got != w.note {
				t.Errorf("line %d: fullDocument.note %q, want %q (updateLookup)", i+1, got, w.note)
			}
		}
		if _, err := r.LookupErr("_id", "_data"); err != nil {
			t.Errorf("line %d has no resume token", i+1)
		}
		// Round trip: writing the parsed event again gives the same line.
		again, err := bson.MarshalExtJSON(ev, true, false)
		if err != nil || string(again) != lines[i] {
			t.Errorf("line %d does not round-trip:\n%s\n%s", i+1, lines[i], again)
		}
	}
	// Canonical: the numbers keep their BSON types.
	if !strings.Contains(lines[0], `"total":{"$numberDouble":"12.5"}`) || !strings.Contains(lines[2], `"total":{"$numberLong":"40"}`) {
		t.Errorf("numbers are not canonical Extended JSON:\n%s", data)
	}

	// Nothing was checkpointed.
	n, err := client.Database("changehook").Collection("checkpoints").CountDocuments(context.Background(), bson.D{})
	if err != nil || n != 0 {
		t.Errorf("checkpoints after capture: %d (%v), want none", n, err)
	}

	// validate --events: finding 2's payload fails on the captured events,
	// with the line; exit 1. The fixed payload passes.
	for _, tc := range []struct {
		name    string
		fixed   bool
		code    int
		want    []string
		summary string // a match whose payload fails counts as both
	}{
		{"number in $concat", false, ExitFailure, []string{
			events + ":1: insert shop.orders {\"_id\":\"o1\"}: orders: ERROR: build payload: ",
			events + ":2: update shop.orders {\"_id\":\"o1\"}: orders: ERROR: build payload: ",
			"$concat",
			events + ":1: insert shop.orders {\"_id\":\"o1\"}: off (disabled): matched, payload ok (",
		}, ": 3 events, 6 trigger matches, 3 errors"},
		{"fixed", true, ExitOK, []string{
			events + ":1: insert shop.orders {\"_id\":\"o1\"}: orders: matched, payload ok (",
			events + ":3: insert shop.orders {\"_id\":\"o2\"}: orders: matched, payload ok (",
		}, ": 3 events, 6 trigger matches, 0 errors"},
	} {
		t.Run("validate "+tc.name, func(t *testing.T) {
			cfg := writeConfig(t, captureConfig(srv.URI(), tc.fixed))
			code, out, errOut := run(t, nil, "", "validate", "-c", cfg, "--events", events)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("validate --events output lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tc.summary) {
				t.Errorf("validate --events summary %q, want %q", errOut, tc.summary)
			}
			if strings.Count(out, "build payload") > strings.Count(out, "\n") {
				t.Errorf("an error says build payload more than once:\n%s", out)
			}
		})
	}

	// test --events: per event, the match and the body or the error.
	t.Run("test events", func(t *testing.T) {
		cfg := writeConfig(t, captureConfig(srv.URI(), true))
		code, out, errOut := run(t, nil, "", "test", "-c", cfg, "--trigger", "orders", "--events", events)
		if code != ExitOK {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		for _, w := range []string{
			events + ":1: insert shop.orders {\"_id\":\"o1\"}\n  match:   yes — ",
			`"text":"Order total: 12.5"`,
			events + ":2: update shop.orders",
			`"text":"Order total: 40"`,
		} {
			if !strings.Contains(out, w) {
				t.Errorf("test --events output lacks %q:\n%s", w, out)
			}
		}
		cfg = writeConfig(t, captureConfig(srv.URI(), false))
		code, out, _ = run(t, nil, "", "test", "-c", cfg, "--trigger", "orders", "--events", events)
		if code != ExitFailure || strings.Count(out, "  payload: ERROR: build payload: ") != 3 {
			t.Errorf("broken payload: exit %d, want 1 with 3 payload errors:\n%s", code, out)
		}
	})
}

// TestEventsFileProblems: lines that are not events, events of another
// namespace or that do not match, and a disabled trigger for capture.
func TestEventsFileProblems(t *testing.T) {
	cfg := writeConfig(t, captureConfig("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", true))
	ev := func(db, coll string, total int) string {
		return fmt.Sprintf(`{"_id":{"_data":"82AA"},"operationType":"insert","ns":{"db":%q,"coll":%q},"documentKey":{"_id":"k"},"fullDocument":{"_id":"k","total":%d}}`, db, coll, total)
	}
	file := filepath.Join(t.TempDir(), "events.jsonl")
	content := strings.Join([]string{ev("shop", "orders", 11), "", "not json", ev("shop", "other", 11), ev("shop", "orders", 1)}, "\n") + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "", "validate", "-c", cfg, "--events", file)
	if code != ExitFailure {
		t.Errorf("exit %d, want 1 (line 3 is not an event)", code)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var got []string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), file+":") && strings.Contains(sc.Text(), ": orders: ") || strings.HasPrefix(sc.Text(), file+":3:") {
			got = append(got, strings.TrimPrefix(sc.Text(), file))
		}
	}
	want := []string{
		`:1: insert shop.orders {"_id":"k"}: orders: matched, payload ok (`,
		`:3: not an Extended JSON document: `,
		`:4: insert shop.other {"_id":"k"}: orders: no match — the event is from shop.other, the trigger watches shop.orders`,
		`:5: insert shop.orders {"_id":"k"}: orders: no match — false in the match filter: {"fullDocument.total":{"$gte":10}} (fullDocument.total is 1)`,
	}
	if len(got) != len(want) {
		t.Fatalf("lines %q, want %d like %q\n%s", got, len(want), want, errOut)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
	if !strings.Contains(errOut, file+": 4 events, 3 trigger matches, 1 error") {
		t.Errorf("summary: %q", errOut)
	}

	code, _, errOut = run(t, nil, "", "capture", "-c", cfg, "off")
	if code != ExitFailure || !strings.Contains(errOut, "trigger off is disabled") {
		t.Errorf("capture of a disabled trigger: exit %d, %q", code, errOut)
	}
	code, _, errOut = run(t, nil, "", "validate", "-c", cfg, "--events", filepath.Join(t.TempDir(), "missing.jsonl"))
	if code != ExitFailure || !strings.Contains(errOut, "read events: open ") {
		t.Errorf("missing events file: exit %d, %q", code, errOut)
	}
}

// TestCaptureStopsOnInterrupt: canceling the command (SIGINT in main)
// ends capture cleanly with the events so far.
func TestCaptureStopsOnInterrupt(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	cfg := writeConfig(t, captureConfig(srv.URI(), true))
	stderr := &signalWriter{want: "capturing up to", ready: make(chan struct{})}
	var stdout bytes.Buffer
	env := Env{Stdout: &stdout, Stderr: stderr, Version: "v0", RuntimeDir: t.TempDir(),
		LookupEnv: func(string) (string, bool) { return "", false }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"capture", "orders", "-c", cfg}, env) }()
	select {
	case <-stderr.ready:
	case code := <-done:
		t.Fatalf("capture ended before its stream opened: exit %d\n%s", code, stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("capture did not open its stream")
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK || !strings.Contains(stderr.String(), "captured 0 events") || stdout.Len() != 0 {
			t.Errorf("interrupted capture: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("capture did not stop when canceled")
	}
}

// TestNotAChangeEvent: validate --events, test --events and test --event
// refuse what is not a change event (the changed document itself, the
// usual mistake; an event without its resume token) with the file, the
// line and a hint, and exit 1; a drop event, which has no documentKey, is
// an event.
func TestNotAChangeEvent(t *testing.T) {
	cfg := writeConfig(t, captureConfig("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", true))
	const (
		doc   = `{"_id":"apples","type":"apples","quantity":12}`
		noID  = `{"operationType":"insert","ns":{"db":"shop","coll":"orders"},"documentKey":{"_id":"k"},"fullDocument":{"_id":"k","total":11}}`
		drop  = `{"_id":{"_data":"82AA"},"operationType":"drop","ns":{"db":"shop","coll":"orders"}}`
		hint  = "; did you pass the document? `changehook capture` records change events"
		noOp  = "not a change event: it has no operationType" + hint
		noTok = "not a change event: it has no _id (its resume token)" + hint
	)
	dir := t.TempDir()
	write := func(name string, lines ...string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	docs := write("doc.jsonl", doc)
	mixed := write("mixed.jsonl", drop, noID)
	for _, tc := range []struct {
		name     string
		args     []string
		stdin    string
		wantOut  []string
		wantErr  []string
		notWant  string
		exitCode int
	}{
		{"validate, the document", []string{"validate", "-c", cfg, "--events", docs}, "",
			[]string{docs + ":1: " + noOp + "\n"}, []string{docs + ": 1 event, 0 trigger matches, 1 error"}, "no match", ExitFailure},
		{"validate, no resume token", []string{"validate", "-c", cfg, "--events", mixed}, "",
			[]string{mixed + `:1: drop shop.orders: orders: no match — operationType "drop" is not one of`, mixed + ":2: " + noTok + "\n"},
			[]string{mixed + ": 2 events, 0 trigger matches, 1 error"}, "", ExitFailure},
		{"test --events, the document", []string{"test", "-c", cfg, "--trigger", "orders", "--events", docs}, "",
			[]string{docs + ":1: " + noOp + "\n"}, []string{docs + ": 1 event, 1 error"}, "match:", ExitFailure},
		{"test --event, the document", []string{"test", "-c", cfg, "--trigger", "orders", "--event", "-"}, doc,
			nil, []string{"changehook test: read event -: " + noOp + "\n"}, "match:", ExitFailure},
		{"test --event, a drop", []string{"test", "-c", cfg, "--trigger", "orders", "--event", "-"}, drop,
			[]string{`match:    no — operationType "drop" is not one of`}, nil, "not a change event", ExitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, nil, tc.stdin, tc.args...)
			if code != tc.exitCode {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.exitCode, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tc.notWant != "" && strings.Contains(out+errOut, tc.notWant) {
				t.Errorf("output says %q:\n%s%s", tc.notWant, out, errOut)
			}
		})
	}
}

// TestCaptureLargeEvent: an update whose event is larger than 16 MiB (a
// 9 MiB field, in fullDocument and in updateDescription) is recorded whole,
// put back together from the fragments $changeStreamSplitLargeEvent
// returns, as run delivers it, with the last fragment's resume token; on a
// server that refuses the stage (before MongoDB 6.0.9), capture opens the
// stream without it and records the other events as before.
func TestCaptureLargeEvent(t *testing.T) {
	big := strings.Repeat("x", 9<<20)
	for _, refused := range []bool{false, true} {
		srv, client := devdbtest.Start(t)
		if refused {
			testhooks.RefuseSplitLargeEvent.Store(srv.Addr(), true)
			t.Cleanup(func() { testhooks.RefuseSplitLargeEvent.Delete(srv.Addr()) })
		}
		cfg := writeConfig(t, captureConfig(srv.URI(), false))
		const n = 2
		events := captureEvents(t, cfg, n, func(ctx context.Context) {
			coll := client.Database("shop").Collection("orders")
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}, {Key: "total", Value: 12.5}}); err != nil {
				t.Fatal(err)
			}
			if refused {
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "o2"}, {Key: "total", Value: 20}}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "o1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: big}}}}); err != nil {
				t.Fatal(err)
			}
		})
		data, err := os.ReadFile(events)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(lines) != n {
			t.Fatalf("refused %v: %d lines, want %d", refused, len(lines), n)
		}
		if refused {
			continue
		}
		var ev bson.D
		if err := bson.UnmarshalExtJSON([]byte(lines[1]), true, &ev); err != nil {
			t.Fatalf("line 2 is not canonical Extended JSON: %v", err)
		}
		raw, err := bson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		r := bson.Raw(raw)
		if len(r) <= 16<<20 {
			t.Errorf("the update's event has %d bytes, want it whole, over 16 MiB", len(r))
		}
		if got, _ := r.Lookup("fullDocument", "big").StringValueOK(); got != big {
			t.Errorf("fullDocument.big has %d bytes, want %d", len(got), len(big))
		}
		if got, _ := r.Lookup("updateDescription", "updatedFields", "big").StringValueOK(); got != big {
			t.Errorf("updateDescription.updatedFields.big has %d bytes, want %d", len(got), len(big))
		}
		if _, err := r.LookupErr("splitEvent"); err == nil {
			t.Error("the recorded event has a splitEvent field: a fragment, not the event")
		}
		if op, _ := r.Lookup("operationType").StringValueOK(); op != "update" {
			t.Errorf("operationType %q, want update", op)
		}
	}
}

// TestCaptureKeepsTheFileUntilAnEvent: capture -o FILE replaces FILE only
// once it has an event to write: stopped before any (Ctrl-C), FILE keeps
// its previous recording and no temporary file is left beside it; with
// one, FILE holds that event alone, with FILE's permissions, as soon as it
// arrived.
func TestCaptureKeepsTheFileUntilAnEvent(t *testing.T) {
	srv, client := devdbtest.Start(t)
	cfg := writeConfig(t, captureConfig(srv.URI(), false))
	dir := t.TempDir()
	out := filepath.Join(dir, "keep.jsonl")
	const old = "{\"previous\": \"recording\"}\n"
	if err := os.WriteFile(out, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	capture := func(insert bool) (int, string) {
		stderr := &signalWriter{want: "capturing up to", ready: make(chan struct{})}
		env := Env{Stdout: io.Discard, Stderr: stderr, Version: "v0", RuntimeDir: t.TempDir(),
			LookupEnv: func(string) (string, bool) { return "", false }}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan int, 1)
		go func() { done <- Run(ctx, []string{"capture", "orders", "-c", cfg, "-n", "5", "-o", out}, env) }()
		select {
		case <-stderr.ready:
		case code := <-done:
			t.Fatalf("capture ended before its stream opened: exit %d\n%s", code, stderr)
		case <-time.After(60 * time.Second):
			t.Fatal("capture did not open its stream")
		}
		if insert {
			if _, err := client.Database("shop").Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}, {Key: "total", Value: 12.5}}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for b, _ := os.ReadFile(out); !strings.Contains(string(b), `"o1"`); b, _ = os.ReadFile(out) {
				if time.Now().After(deadline) {
					t.Fatalf("%s has no event 30 s after the insert: %q", out, b)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		cancel()
		select {
		case code := <-done:
			return code, stderr.String()
		case <-time.After(60 * time.Second):
			t.Fatal("capture did not stop when canceled")
			return 0, ""
		}
	}
	files := func() []string {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	code, stderr := capture(false)
	if b, _ := os.ReadFile(out); code != ExitOK || string(b) != old || !strings.Contains(stderr, "captured 0 events; "+out+" not replaced\n") {
		t.Errorf("capture stopped before any event: exit %d, %s holds %q (want %q)\n%s", code, out, b, old, stderr)
	}
	if names := files(); len(names) != 1 {
		t.Errorf("files beside it: %q, want keep.jsonl alone", names)
	}

	code, stderr = capture(true)
	b, _ := os.ReadFile(out)
	if code != ExitOK || strings.Count(string(b), "\n") != 1 || strings.Contains(string(b), "previous") || !strings.Contains(stderr, "captured 1 event\n") {
		t.Errorf("capture of one event: exit %d, %s holds %q\n%s", code, out, b, stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s after the capture: %v, %v; want mode 0600 as before", out, fi.Mode(), err)
	}
	if names := files(); len(names) != 1 {
		t.Errorf("files beside it: %q, want keep.jsonl alone", names)
	}
}
