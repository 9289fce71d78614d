package triggers

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestEdgeConfigLoaded(t *testing.T) {
	cfg, err := Load("testdata/good/edge.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Trigger{}
	for _, tr := range cfg.Triggers {
		byName[tr.Name] = tr
	}
	if w := byName["structured"].Webhook; w.Format != FormatCloudEvents || w.Auth.Kind() != "basic" ||
		w.Auth.Basic.Username != "shop" || w.Auth.Basic.Password.Reveal() != "tok-api-123" || w.TLS != nil {
		t.Errorf("structured: %+v auth %s", w, w.Auth.Kind())
	}
	if w := byName["binary"].Webhook; w.Format != FormatCloudEventsBinary || w.CloudEvents.Type != "com.example.order.changed" ||
		w.Auth.Bearer.Token.Reveal() != "tok-orders-456" {
		t.Errorf("binary: %+v", w)
	}
	w := byName["oauth"].Webhook
	o := w.Auth.OAuth2
	if w.Format != FormatJSON || o.TokenURL != "https://auth.example.com/oauth/token?audience=hooks" || o.ClientID != "changehook" ||
		o.ClientSecret.Reveal() != "tok-api-123" || strings.Join(o.Scopes, " ") != "events.write users:read" {
		t.Errorf("oauth: %+v", o)
	}
	c := w.TLS.ClientConfig()
	if c.MinVersion != tls.VersionTLS13 || c.RootCAs == nil || len(c.Certificates) != 1 || c.Certificates[0].PrivateKey == nil {
		t.Errorf("oauth tls config: min %x roots %v certs %d", c.MinVersion, c.RootCAs != nil, len(c.Certificates))
	}
	c = byName["ca-only"].Webhook.TLS.ClientConfig()
	if c.MinVersion != tls.VersionTLS12 || c.RootCAs == nil || len(c.Certificates) != 0 {
		t.Errorf("ca-only tls config: min %x roots %v certs %d", c.MinVersion, c.RootCAs != nil, len(c.Certificates))
	}
	// Nothing secret in any printed or logged form.
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "webhook", w, "auth", w.Auth, "oauth", *o, "tls", w.TLS)
	for _, out := range []string{
		fmt.Sprintf("%v %+v %#v %s", w, w, w, w),
		fmt.Sprintf("%v %+v %#v", *o, *o, *o),
		fmt.Sprintf("%v %+v %#v", *w.Auth, *w.Auth, *w.Auth),
		fmt.Sprintf("%+v %#v", *w.TLS, *w.TLS),
		fmt.Sprintf("%+v", *byName["structured"].Webhook.Auth.Basic),
		logged.String(),
	} {
		for _, s := range append(testSecrets, "audience=hooks", "PRIVATE KEY") {
			if strings.Contains(out, s) {
				t.Errorf("output leaks %q: %s", s, out)
			}
		}
	}
}

func TestTLSLoadFiles(t *testing.T) {
	tl := &TLS{CAFile: "testdata/tls/ca.pem", CertFile: "testdata/tls/client.pem", KeyFile: "testdata/tls/client-key.pem", MinVersion: TLSVersion13}
	if err := tl.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	if c := tl.ClientConfig(); c.RootCAs == nil || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS13 {
		t.Errorf("config %+v", c)
	}
	for _, tc := range []struct {
		tls  TLS
		want string
	}{
		{TLS{CAFile: "testdata/tls/none.pem"}, `load tls: ca_file: cannot read "testdata/tls/none.pem": no such file or directory`},
		{TLS{MinVersion: "1.0"}, `load tls: min_version "1.0" is not one of 1.2, 1.3`},
		{TLS{CertFile: "testdata/tls/client.pem", KeyFile: "testdata/tls/client.pem"}, `load tls: cert_file: "testdata/tls/client.pem" and key_file "testdata/tls/client.pem" are not a valid certificate and private key: tls: found a certificate rather than a key in the PEM for the private key`},
	} {
		if err := tc.tls.LoadFiles(); err == nil || err.Error() != tc.want {
			t.Errorf("LoadFiles(%+v) = %v, want %s", tc.tls, err, tc.want)
		}
	}
}
