package demo

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/syncbuf"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func sign(t *testing.T, key, id, ts string, body []byte) string {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerify(t *testing.T) {
	now := time.Unix(1700000000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"text":"hi"}`)
	good := sign(t, secret, "msg_1", ts, body)
	other := sign(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("another key of 24 bytes!")), "msg_1", ts, body)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	for _, tc := range []struct {
		name, id, ts, sig string
		body              []byte
		ok                bool
	}{
		{"valid", "msg_1", ts, good, body, true},
		{"rotation: second signature matches", "msg_1", ts, other + " " + good, body, true},
		{"wrong key", "msg_1", ts, other, body, false},
		{"body changed", "msg_1", ts, good, []byte(`{"text":"ho"}`), false},
		{"id changed", "msg_2", ts, good, body, false},
		{"stale timestamp", "msg_1", strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10), good, body, false},
		{"unknown version", "msg_1", ts, strings.Replace(good, "v1,", "v2,", 1), body, false},
		{"missing headers", "", ts, good, body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify([][]byte{key}, tc.id, tc.ts, tc.sig, tc.body, now, SignatureTolerance)
			if (err == nil) != tc.ok {
				t.Errorf("Verify = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestReceiver(t *testing.T) {
	var out syncbuf.Buffer
	now := time.Unix(1700000000, 0)
	r, err := StartReceiver(ReceiverOptions{Addr: "127.0.0.1:0", Secrets: []string{secret}, Out: &out, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	ts := strconv.FormatInt(now.Unix(), 10)
	for _, tc := range []struct {
		name, sig, body string
		status          int
		line            string
	}{
		{"signed", sign(t, secret, "msg_a", ts, []byte(`{"text":"Only 3 kiwis left!"}`)), `{"text":"Only 3 kiwis left!"}`, 204, "signature ok\n           Only 3 kiwis left!"},
		{"forged", "v1,AAAA", `{"text":"pay me"}`, 401, "signature INVALID"},
		{"whole event", sign(t, secret, "msg_a", ts, []byte(`{"operationType": "insert"}`)), `{"operationType": "insert"}`, 204, `{"operationType":"insert"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+r.Addr()+"/hooks/stock", strings.NewReader(tc.body))
			req.Header.Set("webhook-id", "msg_a")
			req.Header.Set("webhook-timestamp", ts)
			req.Header.Set("webhook-signature", tc.sig)
			req.Header.Set("X-Changehook-Trigger", "low_stock")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !strings.Contains(out.String(), tc.line) {
				t.Errorf("output lacks %q:\n%s", tc.line, out.String())
			}
		})
	}
}

func TestWriter(t *testing.T) {
	_, client := devdbtest.Start(t)

	var out syncbuf.Buffer
	const ticks = 12
	if err := RunWriter(context.Background(), WriterOptions{Client: client, Interval: time.Millisecond, Out: &out, Seed: 7, Ticks: ticks}); err != nil {
		t.Fatal(err)
	}
	// The printed quantities must be what the collection holds, and apples
	// (the fastest seller) must go below the low-stock threshold.
	last := map[string]int{"apples": Restock, "oranges": Restock, "bananas": Restock}
	minApples := Restock
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && f[1] == "restocked": // [writer] restocked FRUIT to N
			last[f[2]] = Restock
		case len(f) == 6 && f[1] == "sold": // [writer] sold N FRUIT: Q left
			q, err := strconv.Atoi(f[4])
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			fruit := strings.TrimSuffix(f[3], ":")
			if !strings.HasSuffix(fruit, "s") {
				fruit += "s" // "sold 1 apple"
			}
			last[fruit] = q
			if fruit == "apples" {
				minApples = min(minApples, q)
			}
		}
	}
	if minApples >= LowStock {
		t.Errorf("apples never went below %d in %d ticks:\n%s", LowStock, ticks, out.String())
	}
	cur, err := client.Database(Database).Collection(Collection).Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID       string `bson:"_id"`
		Type     string `bson:"type"`
		Quantity int    `bson:"quantity"`
	}
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("%d documents, want 3", len(docs))
	}
	for _, d := range docs {
		if d.Quantity != last[d.ID] || d.Type != d.ID {
			t.Errorf("%s: quantity %d in the collection, %d printed", d.ID, d.Quantity, last[d.ID])
		}
	}
}

func TestFruitCount(t *testing.T) {
	for n, want := range map[int]string{1: "1 apple", 2: "2 apples", 0: "0 apples"} {
		if got := fruitCount(n, "apples"); got != want {
			t.Errorf("fruitCount(%d) = %q, want %q", n, got, want)
		}
	}
}
