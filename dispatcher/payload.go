package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
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
	var small [256]byte
	msg := append(small[:0], trigger...)
	msg = append(msg, 0)
	msg = append(msg, token...)
	sum := sha256.Sum256(msg)
	var id [4 + 26]byte
	copy(id[:], "msg_")
	webhookIDEncoding.Encode(id[4:], sum[:16])
	return string(id[:])
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
	_, sig := newSigner(keys).stamp(id, ts.Unix(), body)
	return sig
}

// signer computes webhook-signature values for a fixed set of keys. Its
// HMAC states are keyed once and Reset between messages, so a pooled signer
// signs with one allocation (the header values). Not safe for concurrent use.
type signer struct {
	macs []hash.Hash
	buf  []byte // "<id>.<ts>." then the signatures
	sum  [sha256.Size]byte
}

func newSigner(keys [][]byte) *signer {
	s := &signer{macs: make([]hash.Hash, len(keys))}
	for i, k := range keys {
		s.macs[i] = hmac.New(sha256.New, k)
	}
	return s
}

// stamp returns the webhook-timestamp value for unix (decimal seconds) and
// the webhook-signature value for "<id>.<ts>.<body>": "v1,<base64
// HMAC-SHA256>" per key, space-separated. Both share one string.
func (s *signer) stamp(id string, unix int64, body []byte) (ts, sig string) {
	b := append(s.buf[:0], id...)
	b = append(b, '.')
	tsStart := len(b)
	b = strconv.AppendInt(b, unix, 10)
	tsEnd := len(b)
	b = append(b, '.')
	n := len(b)
	for i, m := range s.macs {
		m.Reset()
		m.Write(b[:n])
		m.Write(body)
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, "v1,"...)
		b = base64.StdEncoding.AppendEncode(b, m.Sum(s.sum[:0]))
	}
	s.buf = b[:0]
	both := string(b[tsStart:])
	return both[:tsEnd-tsStart], both[n-tsStart:]
}

// BuildPayload returns the payload for ev: the event, or the result of
// w.Payload evaluated on it, as relaxed (Format "json", "" and the
// CloudEvents formats) or canonical (Format "canonical") Extended JSON. It
// is the request body except with FormatCloudEvents, whose body
// (BuildMessage) carries it as the CloudEvent's data. A payload expression
// whose result is not a document is an error.
func BuildPayload(w triggers.Webhook, ev Event) ([]byte, error) {
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
		out, err := marshalExtJSON(ev.Raw, canonical)
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
		return nil, fmt.Errorf("build payload: payload expression must evaluate to a document, got %s", mql.TypeName(v))
	}
	out, err := marshalDocExtJSON(res, canonical)
	if err != nil {
		return nil, fmt.Errorf("build payload: encode payload: %w", err)
	}
	return out, nil
}

// marshalDocExtJSON returns bson.MarshalExtJSON(doc, canonical, false),
// byte for byte: doc is encoded to BSON (the driver's encoders make the same
// writer calls for both writers) and the BSON to Extended JSON by
// the direct encoder (in its fromDoc mode, which declines empty old-binary
// values: their driver output depends on how the driver reached them). When
// the BSON writer refuses doc (a NUL in a key or a regex, which JSON can
// carry), the driver's JSON path answers instead.
func marshalDocExtJSON(doc bson.D, canonical bool) ([]byte, error) {
	raw, err := bson.Marshal(doc)
	if err == nil {
		if out, ok := marshalExtJSONFast(raw, canonical, true); ok {
			return out, nil
		}
	}
	return bson.MarshalExtJSON(doc, canonical, false)
}

// canonicalFormat maps triggers.Webhook.Format to MarshalExtJSON's canonical flag.
func canonicalFormat(format string) (bool, error) {
	switch format {
	case "", triggers.FormatJSON, triggers.FormatCloudEvents, triggers.FormatCloudEventsBinary:
		return false, nil
	case triggers.FormatCanonical:
		return true, nil
	}
	return false, fmt.Errorf("build payload: unknown format %q (want one of %s)", format, strings.Join(triggers.Formats(), ", "))
}
