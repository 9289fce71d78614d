package dispatcher

import (
	"encoding/json"
	"fmt"
	"github.com/changehook/changehook/triggers"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestWebhookID(t *testing.T) {
	tokA := mustMarshal(t, bson.D{{Key: "_data", Value: "826A"}})
	tokB := mustMarshal(t, bson.D{{Key: "_data", Value: "826B"}})
	shape := regexp.MustCompile(`^msg_[a-z2-7]{26}$`)
	tests := []struct {
		name         string
		trigA, trigB string
		tokA, tokB   bson.Raw
		same         bool
	}{
		{"same trigger and token", "orders", "orders", tokA, tokA, true},
		{"different token", "orders", "orders", tokA, tokB, false},
		{"different trigger", "orders", "stock", tokA, tokA, false},
		{"name and token bytes do not run together", "a", "a\x00", tokA, tokA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := WebhookID(tt.trigA, tt.tokA), WebhookID(tt.trigB, tt.tokB)
			if !shape.MatchString(a) || !shape.MatchString(b) {
				t.Fatalf("ids %q, %q do not match %v", a, b, shape)
			}
			if (a == b) != tt.same {
				t.Fatalf("WebhookID equal = %v, want %v (%s, %s)", a == b, tt.same, a, b)
			}
		})
	}
}

func TestSign(t *testing.T) {
	// Test vector from the Standard Webhooks reference libraries.
	const (
		vecKey  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		vecID   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		vecBody = `{"test": 2432232314}`
		vecSig  = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	vecTS := time.Unix(1614265330, 0)
	other := "whsec_" + "c2Vjb25kLWtleS1mb3Itcm90YXRpb24="
	tests := []struct {
		name    string
		secrets []string
		want    string
		wantErr string
	}{
		{name: "spec vector", secrets: []string{vecKey}, want: vecSig},
		{name: "key without prefix", secrets: []string{strings.TrimPrefix(vecKey, "whsec_")}, want: vecSig},
		{name: "rotation: one signature per key", secrets: []string{vecKey, other}},
		{name: "no secret", secrets: nil, wantErr: "no secret"},
		{name: "not base64", secrets: []string{"whsec_not*base64!"}, wantErr: "secret 1"},
		{name: "empty key", secrets: []string{"whsec_"}, wantErr: "empty key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sign(tt.secrets, vecID, vecTS, []byte(vecBody))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Sign error = %v, want one containing %q", err, tt.wantErr)
				}
				for _, s := range tt.secrets {
					if s != "" && s != "whsec_" && strings.Contains(err.Error(), strings.TrimPrefix(s, "whsec_")) {
						t.Fatalf("error %q leaks the secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("Sign = %q, want %q", got, tt.want)
			}
			if n := len(strings.Fields(got)); n != len(tt.secrets) {
				t.Fatalf("Sign gave %d signatures, want %d: %q", n, len(tt.secrets), got)
			}
			h := http.Header{}
			h.Set("webhook-id", vecID)
			h.Set("webhook-timestamp", fmt.Sprint(vecTS.Unix()))
			h.Set("webhook-signature", got)
			for _, s := range tt.secrets {
				if err := verifySignature(s, h, []byte(vecBody), vecTS, time.Minute); err != nil {
					t.Fatalf("independent verifier rejects key %d: %v", len(s), err)
				}
			}
			if err := verifySignature(vecKey, h, []byte(vecBody+" "), vecTS, time.Minute); err == nil {
				t.Fatal("independent verifier accepts a modified body")
			}
		})
	}
}

func TestBuildPayload(t *testing.T) {
	ev := testEvent(t, 7, "k1")
	mustExpr := func(spec any) *mql.Expr {
		t.Helper()
		e, err := mql.CompileExpr(spec)
		if err != nil {
			t.Fatalf("CompileExpr(%v): %v", spec, err)
		}
		return e
	}
	tests := []struct {
		name    string
		w       triggers.Webhook
		ev      Event
		want    string // substring of the JSON
		wantErr string
	}{
		{name: "relaxed by default", ev: ev, want: `"seq":7`},
		{name: "relaxed json", w: triggers.Webhook{Format: "json"}, ev: ev, want: `"_data":"8200000007"`},
		{name: "canonical", w: triggers.Webhook{Format: "canonical"}, ev: ev, want: `"seq":{"$numberInt":"7"}`},
		{name: "unknown format", w: triggers.Webhook{Format: "xml"}, ev: ev, wantErr: "unknown format"},
		{name: "empty event", ev: Event{}, wantErr: "empty event"},
		{name: "corrupt event", ev: Event{Raw: []byte{5, 0, 0, 0, 1}}, wantErr: "invalid event"},
		{name: "payload expression", w: triggers.Webhook{Payload: mustExpr(bson.D{{Key: "op", Value: "$operationType"}})}, ev: ev, want: `{"op":"insert"}`},
		{name: "payload must be a document", w: triggers.Webhook{Payload: mustExpr("$operationType")}, ev: ev, wantErr: "must evaluate to a document, got string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BuildPayload(tt.w, tt.ev)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("BuildPayload error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("BuildPayload: %v", err)
			}
			if !json.Valid(got) {
				t.Fatalf("BuildPayload gave invalid JSON: %s", got)
			}
			if !strings.Contains(string(got), tt.want) {
				t.Fatalf("BuildPayload = %s, want it to contain %s", got, tt.want)
			}
		})
	}
}

func ExampleSign() {
	sig, err := Sign([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		"msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

func ExampleWebhookID() {
	token, _ := bson.Marshal(bson.D{{Key: "_data", Value: "8263A1F2C4000000012B022C0100296E5A1004"}})
	id := WebhookID("low_stock", token)
	fmt.Println(id == WebhookID("low_stock", token), len(id), id[:4])
	// Output: true 30 msg_
}
