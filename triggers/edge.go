package triggers

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// CloudEvents payload formats, values of Webhook.Format.
const (
	// FormatCloudEvents sends each event as a CloudEvents 1.0 structured
	// message: the body is the event in the CloudEvents JSON format
	// (Content-Type application/cloudevents+json), the change event or the
	// payload result (relaxed Extended JSON) in its data.
	FormatCloudEvents = "cloudevents"
	// FormatCloudEventsBinary sends each event as a CloudEvents 1.0 binary
	// message: the attributes in ce-* headers, the change event or the
	// payload result (relaxed Extended JSON) as the body (Content-Type
	// application/json).
	FormatCloudEventsBinary = "cloudevents-binary"
)

// IsCloudEvents reports whether format is FormatCloudEvents or
// FormatCloudEventsBinary.
func IsCloudEvents(format string) bool {
	return format == FormatCloudEvents || format == FormatCloudEventsBinary
}

// DefaultCloudEventsTypePrefix is the prefix of the default CloudEvents type:
// the type of an event is this prefix followed by its operationType
// ("com.changehook.insert").
const DefaultCloudEventsTypePrefix = "com.changehook."

// CloudEvents is a webhook's cloudevents section (only with a CloudEvents
// format).
type CloudEvents struct {
	// Type, when set, is the type attribute of every event of the trigger.
	// Empty: DefaultCloudEventsTypePrefix + the event's operationType.
	Type string `json:"type,omitempty"`
}

// Auth is a webhook's auth section: exactly one of its fields is set. The
// Authorization header it produces is never settable through headers.
type Auth struct {
	// Basic sends Authorization: Basic base64(username:password).
	Basic *BasicAuth `json:"basic,omitempty"`
	// Bearer sends Authorization: Bearer TOKEN.
	Bearer *BearerAuth `json:"bearer,omitempty"`
	// OAuth2 obtains an access token with the OAuth 2.0 client credentials
	// grant and sends it as a bearer token.
	OAuth2 *OAuth2ClientCredentials `json:"oauth2_client_credentials,omitempty"`
}

// Kind returns "basic", "bearer" or "oauth2_client_credentials" ("" for a
// nil or empty Auth).
func (a *Auth) Kind() string {
	switch {
	case a == nil:
		return ""
	case a.Basic != nil:
		return "basic"
	case a.Bearer != nil:
		return "bearer"
	case a.OAuth2 != nil:
		return "oauth2_client_credentials"
	}
	return ""
}

// BasicAuth is HTTP Basic authentication (RFC 7617).
type BasicAuth struct {
	// Username is the user id (no colon).
	Username string `json:"username"`
	// Password is the password.
	Password Secret `json:"password"`
}

// BearerAuth is a static bearer token (RFC 6750), typically from ${ENV}.
type BearerAuth struct {
	// Token is the token.
	Token Secret `json:"token"`
}

// OAuth2ClientCredentials is the OAuth 2.0 client credentials grant (RFC
// 6749 §4.4): the token is requested from TokenURL, cached until it
// expires, and requested again once when the endpoint answers 401.
type OAuth2ClientCredentials struct {
	// TokenURL is the token endpoint: an absolute http or https URL. Shown
	// only redacted.
	TokenURL string `json:"-"`
	// ClientID is the client identifier.
	ClientID string `json:"client_id"`
	// ClientSecret is the client secret.
	ClientSecret Secret `json:"client_secret"`
	// Scopes are requested with the token (none: the server's default).
	Scopes []string `json:"scopes,omitempty"`
}

// String describes the grant with the token URL redacted and the client
// secret masked.
func (o OAuth2ClientCredentials) String() string {
	return fmt.Sprintf("{token_url:%s client_id:%s client_secret:%s scopes:%v}", RedactURL(o.TokenURL), o.ClientID, RedactedMask, o.Scopes)
}

// GoString is String, so that %#v cannot show the token URL's secrets.
func (o OAuth2ClientCredentials) GoString() string {
	return "triggers.OAuth2ClientCredentials" + o.String()
}

// MarshalJSON writes the token URL redacted.
func (o OAuth2ClientCredentials) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		TokenURL     string   `json:"token_url"`
		ClientID     string   `json:"client_id"`
		ClientSecret Secret   `json:"client_secret"`
		Scopes       []string `json:"scopes,omitempty"`
	}{RedactURL(o.TokenURL), o.ClientID, o.ClientSecret, o.Scopes})
}

// TLS versions accepted by webhook.tls.min_version.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// DefaultTLSMinVersion is webhook.tls.min_version when omitted.
const DefaultTLSMinVersion = TLSVersion12

// TLS is a webhook's tls section: a custom CA, a client certificate (mTLS)
// and a minimum version. Parse loads the files, so a configuration that
// validated can connect; the loaded key is only reachable through
// ClientConfig.
type TLS struct {
	// CAFile is a PEM file of CA certificates that replaces the system roots
	// for the webhook's server certificate ("": system roots). Relative
	// paths are relative to the configuration file's directory.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are the PEM client certificate (chain) and its
	// private key, presented when the server asks (mTLS). Both or neither.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// MinVersion is TLSVersion12 (default) or TLSVersion13.
	MinVersion string `json:"min_version"`

	loaded *tlsMaterial
}

// tlsMaterial is what Parse loaded from a TLS section's files.
type tlsMaterial struct {
	roots *x509.CertPool
	caPEM []byte
	cert  *tls.Certificate
}

// ClientConfig returns a new tls.Config for connections to the webhook: the
// minimum version, the CA pool (nil: system roots) and the client
// certificate, as loaded by Parse. A TLS built by hand (not by Parse) has
// no loaded files: LoadFiles loads them.
func (t *TLS) ClientConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return c
	}
	if t.MinVersion == TLSVersion13 {
		c.MinVersion = tls.VersionTLS13
	}
	if m := t.loaded; m != nil {
		c.RootCAs = m.roots
		if m.cert != nil {
			c.Certificates = []tls.Certificate{*m.cert}
		}
	}
	return c
}

// TokenClientConfig returns a new tls.Config for an OAuth2 token endpoint
// of the same webhook: the minimum version, the system roots plus CAFile's
// certificates (an identity provider is often public while the webhook's
// CA is private), and no client certificate.
func (t *TLS) TokenClientConfig() *tls.Config {
	c := t.ClientConfig()
	c.Certificates = nil
	if t != nil && t.loaded != nil && len(t.loaded.caPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(t.loaded.caPEM)
		c.RootCAs = pool
	}
	return c
}

// Roots returns the CA pool loaded from CAFile (nil: none configured).
func (t *TLS) Roots() *x509.CertPool {
	if t == nil || t.loaded == nil {
		return nil
	}
	return t.loaded.roots
}

// LoadFiles (re)loads CAFile, CertFile and KeyFile as written (relative to
// the working directory) and checks MinVersion. Parse does this with paths
// resolved against the configuration file; LoadFiles is for TLS sections
// built in code. Errors name the field and the file, never key material.
func (t *TLS) LoadFiles() error {
	if t.MinVersion != "" && t.MinVersion != TLSVersion12 && t.MinVersion != TLSVersion13 {
		return fmt.Errorf("load tls: min_version %q is not one of %s, %s", t.MinVersion, TLSVersion12, TLSVersion13)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("load tls: cert_file and key_file go together (the client certificate and its private key)")
	}
	m, field, msg := loadTLSFiles(t.CAFile, t.CertFile, t.KeyFile)
	if msg != "" {
		return fmt.Errorf("load tls: %s: %s", field, msg)
	}
	t.loaded = m
	return nil
}

// maxTLSFileBytes bounds a CA, certificate or key file (a CA bundle of
// every public root is about 220 KB).
const maxTLSFileBytes = 1 << 20

// readTLSFile reads a PEM file named by webhook.tls: a regular file
// (through links) of at most maxTLSFileBytes, refused before it is read
// otherwise (a FIFO would block validate and every reload, a device such
// as /dev/zero would be read without end). On failure it returns the
// message.
func readTLSFile(path string) ([]byte, string) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Sprintf("cannot read %q: %s", path, fileErr(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Sprintf("%q is not a regular file but %s", path, fileKind(fi.Mode()))
	}
	tooLarge := func(n int64) string {
		return fmt.Sprintf("%q is %d bytes, more than the %d a PEM file may have", path, n, maxTLSFileBytes)
	}
	if fi.Size() > maxTLSFileBytes {
		return nil, tooLarge(fi.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Sprintf("cannot read %q: %s", path, fileErr(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTLSFileBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Sprintf("cannot read %q: %s", path, fileErr(err))
	case len(b) > maxTLSFileBytes:
		return nil, tooLarge(int64(len(b))) // it grew since Stat
	}
	return b, ""
}

// loadTLSFiles loads a CA file and a certificate/key pair (each optional);
// on failure it returns the field at fault and the message.
func loadTLSFiles(caFile, certFile, keyFile string) (*tlsMaterial, string, string) {
	m := &tlsMaterial{}
	if caFile != "" {
		pem, msg := readTLSFile(caFile)
		if msg != "" {
			return nil, "ca_file", msg
		}
		m.caPEM = pem
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(pem) {
			return nil, "ca_file", fmt.Sprintf("%q contains no PEM certificate", caFile)
		}
	}
	if certFile != "" && keyFile != "" {
		certPEM, msg := readTLSFile(certFile)
		if msg != "" {
			return nil, "cert_file", msg
		}
		keyPEM, msg := readTLSFile(keyFile)
		if msg != "" {
			return nil, "key_file", msg
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// crypto/tls's messages describe the PEM blocks, never the key.
			return nil, "cert_file", fmt.Sprintf("%q and key_file %q are not a valid certificate and private key: %s", certFile, keyFile, fileErr(err))
		}
		m.cert = &cert
	}
	return m, "", ""
}

// fileErr returns err without the path a *fs.PathError repeats.
func fileErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// resolvePath returns p relative to the configuration file's directory
// (absolute paths unchanged).
func (d *decoder) resolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(d.file), p)
}

// cloudEvents decodes webhook.cloudevents.
func (d *decoder) cloudEvents(e entry) *CloudEvents {
	f := d.fields(e.val, "webhook.cloudevents", []string{"type"})
	if f == nil {
		return nil
	}
	ce := &CloudEvents{}
	if t := f["type"]; t.set() {
		if s, ok := d.str(t, "webhook.cloudevents.type"); ok {
			if msg := checkCEString(s); msg != "" {
				d.errorf(deref(t.val), "webhook.cloudevents.type: %s", msg)
			} else {
				ce.Type = s
			}
		}
	}
	return ce
}

// checkCEString checks a configured CloudEvents string attribute.
func checkCEString(s string) string {
	if s == "" {
		return "must not be empty (omit it for the default com.changehook.<operationType>)"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "must not contain control characters"
		}
	}
	return ""
}

// auth decodes webhook.auth: a mapping with exactly one method.
func (d *decoder) auth(e entry) *Auth {
	kinds := []string{"basic", "bearer", "oauth2_client_credentials"}
	f := d.fields(e.val, "webhook.auth", kinds)
	if f == nil {
		return nil
	}
	var set []string
	for _, k := range kinds {
		if f[k].set() {
			set = append(set, k)
		}
	}
	if len(set) != 1 {
		if len(set) == 0 {
			d.errorf(deref(e.val), "webhook.auth: choose one of %s", strings.Join(kinds, ", "))
		} else {
			d.errorf(deref(e.val), "webhook.auth: choose one of %s, not %s", strings.Join(kinds, ", "), strings.Join(set, " and "))
		}
		return nil
	}
	a := &Auth{}
	switch set[0] {
	case "basic":
		g := d.fields(f["basic"].val, "webhook.auth.basic", []string{"username", "password"})
		if g == nil {
			return nil
		}
		b := &BasicAuth{}
		if u, ok := d.required(g, "username", "webhook.auth.basic", f["basic"]); ok {
			if strings.ContainsAny(u, ":\r\n\x00") || u == "" {
				d.errorf(deref(g["username"].val), "webhook.auth.basic.username: must be non-empty, without a colon, CR, LF or NUL")
			}
			b.Username = u
		}
		if p, ok := d.required(g, "password", "webhook.auth.basic", f["basic"]); ok {
			d.checkSecretValue(g["password"], "webhook.auth.basic.password", p)
			b.Password = Secret(p)
		}
		a.Basic = b
	case "bearer":
		g := d.fields(f["bearer"].val, "webhook.auth.bearer", []string{"token"})
		if g == nil {
			return nil
		}
		b := &BearerAuth{}
		if t, ok := d.required(g, "token", "webhook.auth.bearer", f["bearer"]); ok {
			d.checkSecretValue(g["token"], "webhook.auth.bearer.token", t)
			b.Token = Secret(t)
		}
		a.Bearer = b
	case "oauth2_client_credentials":
		sec := "webhook.auth.oauth2_client_credentials"
		g := d.fields(f["oauth2_client_credentials"].val, sec, []string{"token_url", "client_id", "client_secret", "scopes"})
		if g == nil {
			return nil
		}
		o := &OAuth2ClientCredentials{}
		if u, ok := d.required(g, "token_url", sec, f["oauth2_client_credentials"]); ok {
			if msg := checkWebhookURL(u); msg != "" {
				d.errorf(deref(g["token_url"].val), "%s.token_url: %s", sec, msg)
			}
			o.TokenURL = u
		}
		if id, ok := d.required(g, "client_id", sec, f["oauth2_client_credentials"]); ok {
			if id == "" {
				d.errorf(deref(g["client_id"].val), "%s.client_id: must not be empty", sec)
			}
			o.ClientID = id
		}
		if cs, ok := d.required(g, "client_secret", sec, f["oauth2_client_credentials"]); ok {
			d.checkSecretValue(g["client_secret"], sec+".client_secret", cs)
			o.ClientSecret = Secret(cs)
		}
		if s := g["scopes"]; s.set() {
			v := deref(s.val)
			if v.Kind != yaml.SequenceNode {
				d.errorf(v, "%s.scopes: expected a list of scopes, got %s", sec, describe(v))
			} else if d.spend(v, len(v.Content)) {
				for _, it := range v.Content {
					if sc, ok := d.str(entry{val: it}, sec+".scopes"); ok {
						if sc == "" || strings.ContainsAny(sc, " \"\\") || strings.ContainsFunc(sc, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
							d.errorf(deref(it), "%s.scopes: %q is not a valid scope (printable ASCII without spaces, quotes or backslashes)", sec, sc)
							continue
						}
						o.Scopes = append(o.Scopes, sc)
					}
				}
			}
		}
		a.OAuth2 = o
	}
	return a
}

// required returns the string field name of g, reporting it missing at
// the section's node.
func (d *decoder) required(g map[string]entry, name, section string, at entry) (string, bool) {
	e := g[name]
	if !e.set() {
		d.errorf(deref(at.val), "%s: missing field %q", section, name)
		return "", false
	}
	return d.str(e, section+"."+name)
}

// checkSecretValue reports an empty secret (a ${VAR} set to "") or one
// with a line break, without echoing it.
func (d *decoder) checkSecretValue(e entry, field, v string) {
	switch {
	case v == "":
		d.errorf(deref(e.val), "%s: is empty (a ${VAR} set to an empty string?)", field)
	case strings.ContainsAny(v, "\r\n\x00"):
		d.errorf(deref(e.val), "%s: must not contain CR, LF or NUL", field)
	}
}

// tlsSection decodes webhook.tls and loads its files.
func (d *decoder) tlsSection(e entry, webhookURL string) *TLS {
	f := d.fields(e.val, "webhook.tls", []string{"ca_file", "cert_file", "key_file", "min_version"})
	if f == nil {
		return nil
	}
	t := &TLS{MinVersion: DefaultTLSMinVersion}
	t.MinVersion = d.enum(f["min_version"], "webhook.tls.min_version", t.MinVersion, []string{TLSVersion12, TLSVersion13})
	path := func(name string) string {
		ent := f[name]
		if !ent.set() {
			return ""
		}
		s, ok := d.str(ent, "webhook.tls."+name)
		if !ok {
			return ""
		}
		if s == "" {
			d.errorf(deref(ent.val), "webhook.tls.%s: must not be empty (omit it instead)", name)
		}
		return s
	}
	t.CAFile, t.CertFile, t.KeyFile = path("ca_file"), path("cert_file"), path("key_file")
	bad := len(d.problems)
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		d.errorf(deref(f["cert_file"].val), "webhook.tls: cert_file needs key_file (the client certificate's private key)")
	case t.KeyFile != "" && t.CertFile == "":
		d.errorf(deref(f["key_file"].val), "webhook.tls: key_file needs cert_file (the client certificate)")
	}
	if strings.HasPrefix(strings.ToLower(webhookURL), "http://") {
		d.errorf(deref(e.val), "webhook.tls: the webhook URL is http://, so TLS settings would never be used; use an https:// URL or remove tls")
	}
	if len(d.problems) > bad {
		return t
	}
	m, field, msg := loadTLSFiles(d.resolvePath(t.CAFile), d.resolvePath(t.CertFile), d.resolvePath(t.KeyFile))
	if msg != "" {
		d.errorf(deref(f[field].val), "webhook.tls.%s: %s", field, msg)
		return t
	}
	t.loaded = m
	return t
}

// checkAuthHeaders reports configured headers that webhook.auth or a
// CloudEvents binary format set themselves.
func (d *decoder) checkEdgeHeaders(w *Webhook, headers map[string]entry) {
	for name, e := range headers {
		ck := strings.ToLower(name)
		if w.Auth != nil && ck == "authorization" {
			d.errorf(e.key, "webhook.headers: %q is set by webhook.auth; remove one of them", name)
		}
		if w.Format == FormatCloudEventsBinary && strings.HasPrefix(ck, "ce-") {
			switch strings.TrimPrefix(ck, "ce-") {
			case "specversion", "id", "source", "type", "time", "subject", "datacontenttype":
				d.errorf(e.key, "webhook.headers: %q is set by changehook in the cloudevents-binary format", name)
			}
		}
	}
}
