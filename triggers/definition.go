package triggers

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"time"

	"github.com/changehook/changehook/internal/mql"
)

// exprType is the compiled payload expression's type, skipped by
// WriteDefinition (Webhook.PayloadSpec holds its source).
var exprType = reflect.TypeFor[mql.Expr]()

// timeType is time.Time, which WriteDefinition writes as the instant and
// offset it names: its *Location depends on the process's local zone.
var timeType = reflect.TypeFor[time.Time]()

// WriteDefinition writes t's whole definition to w, everything but its
// position in the file: every field, element and map entry (in an order
// that does not depend on the map's), type-tagged, secrets by value,
// compiled payload expressions left out (Webhook.PayloadSpec holds their
// source), a time (start_at) as the instant and offset it names, not by
// the *time.Location the parse gave it (the process's local zone when its
// offset matched). Two triggers with the same definition write the same
// bytes, in any process of the same version, whatever its time zone; what
// it writes holds secrets and is for a hash (keyed, when the hash is shown
// to anyone), never for output.
func WriteDefinition(w io.Writer, t *Trigger) {
	c := *t
	c.Pos = Pos{}
	walk(w, reflect.ValueOf(c), 0)
}

// WriteClusterDefinition writes the part of t's definition that the
// members of a cluster compare: t as MarshalJSON shows it (everything the
// configuration file says of the trigger, as the defaults complete it;
// not its position, not which partition a copy of it reads, not the
// sections a member may set for itself such as network or state, times
// by instant and offset, not by the process's time zone), then, as a
// second JSON document, the values MarshalJSON hides: the webhook URL
// whole, the header values, the signing keys, the basic, bearer and
// OAuth 2.0 secrets and token URL, and the shared endpoint the URL falls
// under (its whole URL prefix and its rate limit; MarshalJSON names it
// only). Two triggers with the same definition
// write the same bytes in any process of the same version, whatever its
// time zone, and a partition's copy writes what its trigger does. What
// it writes holds secrets: it is for a hash (keyed, when the hash is
// shown to anyone), never for output.
func WriteClusterDefinition(w io.Writer, t *Trigger) error {
	shown, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("write the definition of trigger %s: %w", t.Name, err)
	}
	hidden, err := json.Marshal(hiddenValues(t))
	if err != nil {
		return fmt.Errorf("write the secrets of trigger %s: %w", t.Name, err)
	}
	for _, b := range [][]byte{shown, {'\n'}, hidden} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write the definition of trigger %s: %w", t.Name, err)
		}
	}
	return nil
}

// hidden holds the values of a trigger that MarshalJSON redacts or masks,
// in a fixed order (JSON writes a map's keys sorted).
type hidden struct {
	URL                string            `json:"url"`
	Headers            map[string]string `json:"headers,omitempty"`
	SigningKeys        []string          `json:"signing_keys,omitempty"`
	BasicPassword      string            `json:"basic_password,omitempty"`
	BearerToken        string            `json:"bearer_token,omitempty"`
	OAuth2TokenURL     string            `json:"oauth2_token_url,omitempty"`
	OAuth2ClientSecret string            `json:"oauth2_client_secret,omitempty"`
	Endpoint           *hiddenEndpoint   `json:"endpoint,omitempty"`
}

// hiddenEndpoint is the shared endpoint a trigger's webhook falls under:
// its URL prefix whole and the rate limit its triggers share.
type hiddenEndpoint struct {
	URLPrefix string    `json:"url_prefix"`
	RateLimit RateLimit `json:"rate_limit"`
}

// hiddenValues returns the values of t that MarshalJSON hides.
func hiddenValues(t *Trigger) hidden {
	w := t.Webhook
	h := hidden{URL: w.URL, SigningKeys: w.SigningKeys()}
	if len(w.Headers) > 0 {
		h.Headers = make(map[string]string, len(w.Headers))
		for name, v := range w.Headers {
			h.Headers[name] = v.Reveal()
		}
	}
	if a := w.Auth; a != nil {
		if a.Basic != nil {
			h.BasicPassword = a.Basic.Password.Reveal()
		}
		if a.Bearer != nil {
			h.BearerToken = a.Bearer.Token.Reveal()
		}
		if a.OAuth2 != nil {
			h.OAuth2TokenURL, h.OAuth2ClientSecret = a.OAuth2.TokenURL, a.OAuth2.ClientSecret.Reveal()
		}
	}
	if e := w.Endpoint; e != nil {
		h.Endpoint = &hiddenEndpoint{URLPrefix: e.URLPrefix, RateLimit: e.RateLimit}
	}
	return h
}

// walk writes v's content to out: every field, element and map entry (sorted),
// type-tagged; functions, channels and compiled expressions are skipped.
func walk(out io.Writer, v reflect.Value, depth int) {
	if depth > 64 {
		return
	}
	w := func(s string) { _, _ = io.WriteString(out, s); _, _ = out.Write([]byte{0}) }
	if !v.IsValid() {
		w("invalid")
		return
	}
	if v.Type() == exprType {
		return
	}
	if v.Type() == timeType && v.CanInterface() {
		// Its zone is the process's Local when the offset matched it.
		w("time")
		w(v.Interface().(time.Time).Format(time.RFC3339Nano))
		return
	}
	w(v.Kind().String())
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			w("nil")
			return
		}
		walk(out, v.Elem(), depth+1)
	case reflect.Struct:
		for i := range v.NumField() {
			w(v.Type().Field(i).Name)
			walk(out, v.Field(i), depth+1)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			w("nil")
			return
		}
		w(strconv.Itoa(v.Len()))
		for i := range v.Len() {
			walk(out, v.Index(i), depth+1)
		}
	case reflect.Map:
		keys := v.MapKeys()
		type kv struct {
			k string
			v reflect.Value
		}
		entries := make([]kv, 0, len(keys))
		for _, k := range keys {
			kh := fnv.New64a()
			walk(kh, k, depth+1)
			entries = append(entries, kv{strconv.FormatUint(kh.Sum64(), 16), v.MapIndex(k)})
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].k < entries[j].k })
		w(strconv.Itoa(len(entries)))
		for _, e := range entries {
			w(e.k)
			walk(out, e.v, depth+1)
		}
	case reflect.String:
		w(v.String())
	case reflect.Bool:
		w(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		w(strconv.FormatUint(math.Float64bits(v.Float()), 16))
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		w(strconv.FormatUint(math.Float64bits(real(c)), 16) + "," + strconv.FormatUint(math.Float64bits(imag(c)), 16))
	default: // func, chan, unsafe pointer: not part of a definition
	}
}
