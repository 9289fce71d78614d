package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Payload formats accepted in Webhook.Format.
const (
	// FormatJSON is relaxed Extended JSON (the default).
	FormatJSON = "json"
	// FormatCanonical is canonical Extended JSON.
	FormatCanonical = "canonical"
)

// secretPrefix marks a Standard Webhooks signing key.
const secretPrefix = "whsec_"

// webhookIDEncoding is lower-case base32 without padding: URL-, header- and
// file-name-safe, case-insensitive-safe.
var webhookIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// WebhookID returns the webhook-id of the event with resume token token in
// trigger: "msg_" followed by 26 base32 characters of a SHA-256 over the
// trigger name and the token bytes. The same (trigger, token) always yields
// the same id — across retries, dead-letter replays and redeliveries after a
// restart — so receivers can use it to deduplicate.
func WebhookID(trigger string, token bson.Raw) string {
	h := sha256.New()
	h.Write([]byte(trigger))
	h.Write([]byte{0})
	h.Write(token)
	var sum [sha256.Size]byte
	return "msg_" + webhookIDEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}

// Sign returns the Standard Webhooks v1 webhook-signature header value for a
// message: for each secret, "v1," followed by the base64 HMAC-SHA256 of
// "<id>.<unix seconds of ts>.<body>" keyed with the base64-decoded secret
// (the part after the "whsec_" prefix; a secret without the prefix is
// decoded whole). Several signatures are separated by single spaces, in the
// order of secrets. It fails when secrets is empty or a secret is not valid
// base64; the error never contains the secret.
func Sign(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("sign webhook: no secret")
	}
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		k, err := decodeSecret(s)
		if err != nil {
			return "", fmt.Errorf("sign webhook: secret %d: %w", i+1, err)
		}
		keys[i] = k
	}
	return signWithKeys(keys, id, ts, body), nil
}

// decodeSecret decodes a "whsec_" signing key.
func decodeSecret(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil {
		// The base64 error names an offset, never the content.
		return nil, fmt.Errorf("decode signing key: not base64 after %q: %w", secretPrefix, err)
	}
	if len(k) == 0 {
		return nil, errors.New("decode signing key: empty key")
	}
	return k, nil
}

// signWithKeys computes the webhook-signature value with decoded keys.
func signWithKeys(keys [][]byte, id string, ts time.Time, body []byte) string {
	var b strings.Builder
	tsText := strconv.FormatInt(ts.Unix(), 10)
	b.Grow(len(keys) * (3 + base64.StdEncoding.EncodedLen(sha256.Size) + 1))
	var sum [sha256.Size]byte
	var enc [44]byte // base64 of 32 bytes
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(tsText))
		m.Write([]byte{'.'})
		m.Write(body)
		base64.StdEncoding.Encode(enc[:], m.Sum(sum[:0]))
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.Write(enc[:])
	}
	return b.String()
}

// BuildPayload returns the request body for ev: the event, or the result of
// w.Payload evaluated on it, as relaxed (Format "json" or "") or canonical
// (Format "canonical") Extended JSON. A payload expression whose result is
// not a document is an error.
func BuildPayload(w Webhook, ev Event) ([]byte, error) {
	canonical, err := canonicalFormat(w.Format)
	if err != nil {
		return nil, err
	}
	if len(ev.Raw) == 0 {
		return nil, errors.New("build payload: empty event")
	}
	if w.Payload == nil {
		if err := ev.Raw.Validate(); err != nil {
			return nil, fmt.Errorf("build payload: invalid event document: %w", err)
		}
		out, err := bson.MarshalExtJSON(ev.Raw, canonical, false)
		if err != nil {
			return nil, fmt.Errorf("build payload: encode event: %w", err)
		}
		return out, nil
	}
	var doc bson.D
	if err := bson.Unmarshal(ev.Raw, &doc); err != nil {
		return nil, fmt.Errorf("build payload: decode event: %w", err)
	}
	v, err := w.Payload.Eval(doc)
	if err != nil {
		return nil, fmt.Errorf("build payload: evaluate payload expression: %w", err)
	}
	res, ok := v.(bson.D)
	if !ok {
		return nil, fmt.Errorf("build payload: payload expression must evaluate to a document, got %s", typeName(v))
	}
	out, err := bson.MarshalExtJSON(res, canonical, false)
	if err != nil {
		return nil, fmt.Errorf("build payload: encode payload: %w", err)
	}
	return out, nil
}

// canonicalFormat maps Webhook.Format to MarshalExtJSON's canonical flag.
func canonicalFormat(format string) (bool, error) {
	switch format {
	case "", FormatJSON:
		return false, nil
	case FormatCanonical:
		return true, nil
	}
	return false, fmt.Errorf("build payload: unknown format %q (want %q or %q)", format, FormatJSON, FormatCanonical)
}

// typeName names the BSON type of an expression result for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bson.A:
		return "array"
	case string:
		return "string"
	case bool:
		return "bool"
	case int32:
		return "int"
	case int64:
		return "long"
	case float64:
		return "double"
	case bson.Decimal128:
		return "decimal"
	case bson.DateTime:
		return "date"
	case bson.ObjectID:
		return "objectId"
	}
	if mql.IsMissing(v) {
		return "missing"
	}
	return fmt.Sprintf("%T", v)
}
