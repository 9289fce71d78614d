package triggers

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
		secrets  []string
	}{
		{"https://example.com/hooks/stock", "https://example.com/hooks/stock", nil},
		{"https://httpbin.example/status/429", "https://httpbin.example/status/429", nil},
		{"https://example.com/hooks", "https://example.com/hooks", nil},
		{"https://example.com/hooks/", "https://example.com/hooks/", nil},
		{"https://example.com/", "https://example.com/", nil},
		{"https://hooks.slack.com/services/T0AAA/B0BBB/XXsecretXX", "https://hooks.slack.com/services/REDACTED", []string{"XXsecretXX", "T0AAA"}},
		{"https://hooks.zapier.com/hooks/catch/123/abcKEY/", "https://hooks.zapier.com/hooks/REDACTED", []string{"abcKEY", "123"}},
		{"https://discord.com/api/webhooks/1234567/tokTOKtok", "https://discord.com/api/REDACTED", []string{"tokTOKtok", "1234567"}},
		{"https://acme.webhook.office.com/webhookb2/g@t/IncomingWebhook/abc/def", "https://acme.webhook.office.com/webhookb2/REDACTED", []string{"abc/def", "g@t"}},
		{"https://hook.eu1.make.com/abcdefghij", "https://hook.eu1.make.com/REDACTED", []string{"abcdefghij"}},
		{"https://n8n.example.com/webhook/order-created", "https://n8n.example.com/webhook/REDACTED", []string{"order-created"}},
		{"https://hooks.example.com/Zx81kQp0aBc9dEf7GhI2", "https://hooks.example.com/REDACTED", []string{"Zx81kQp0aBc9dEf7GhI2"}},
		{"https://example.com/in/whsec_ab12cd34ef56gh78ij90", "https://example.com/in/REDACTED", []string{"ab12cd34ef56gh78ij90"}},
		{"https://user:hunter2@example.com/h", "https://REDACTED@example.com/h", []string{"hunter2", "user"}},
		{"https://example.com/h?token=s3cr3t&x=1", "https://example.com/h?token=REDACTED&x=REDACTED", []string{"s3cr3t"}},
		{"https://example.com/h?flag", "https://example.com/h?flag", nil},
		{"https://hooks.example.com/in?Xk39fjQm2Lp8Zr7Tq1Vw", "https://hooks.example.com/in?REDACTED", []string{"Xk39fjQm2Lp8Zr7Tq1Vw"}},
		{"https://example.com/h?flag&Xk39fjQm2Lp8Zr7Tq1Vw&token=s3cr3t", "https://example.com/h?flag&REDACTED&token=REDACTED", []string{"Xk39fjQm2Lp8Zr7Tq1Vw", "s3cr3t"}},
		{"https://example.com/h?Xk39fjQm2Lp8Zr7Tq1Vw=1&x=", "https://example.com/h?REDACTED=REDACTED&x=REDACTED", []string{"Xk39fjQm2Lp8Zr7Tq1Vw"}},
		{"https://example.com/h?status-update&order_id=7", "https://example.com/h?status-update&order_id=REDACTED", nil},
		{"https://example.com/h#frag-secret", "https://example.com/h", []string{"frag-secret"}},
		{"mailto:someone@secret.example", "mailto:REDACTED", []string{"secret.example"}},
		{"http://[::1]:namedport?k=v", "<unparsable URL>", []string{"k=v"}},
		// A segment with sub-delimiters is judged part by part: a Telegram
		// bot token ("bot<id>:<secret>") hides the whole segment.
		{"https://api.telegram.example/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
			"https://api.telegram.example/REDACTED/sendMessage", []string{"AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "123456789"}},
		{"https://example.com/in;jsessionid=Zx81kQp0aBc9dEf7GhI2/x", "https://example.com/REDACTED/x", []string{"Zx81kQp0aBc9dEf7GhI2"}},
		{"https://example.com/u/alice@Zx81kQp0aBc9dEf7GhI2", "https://example.com/u/REDACTED", []string{"Zx81kQp0aBc9dEf7GhI2"}},
		{"https://example.com/h?key:Zx81kQp0aBc9dEf7GhI2", "https://example.com/h?REDACTED", []string{"Zx81kQp0aBc9dEf7GhI2"}},
		// Ordinary segments with sub-delimiters stay readable.
		{"https://example.com/v1/orders/2024-01-31", "https://example.com/v1/orders/2024-01-31", nil},
		{"https://example.com/hooks/order-created", "https://example.com/hooks/order-created", nil},
		{"https://example.com/at/2024-01-31T10:00:00Z", "https://example.com/at/2024-01-31T10:00:00Z", nil},
		{"https://example.com/orders/order:12345678901", "https://example.com/orders/order:12345678901", nil},
		{"https://example.com/to/ops@example.com", "https://example.com/to/ops@example.com", nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := RedactURL(tt.in)
			if got != tt.want {
				t.Fatalf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Fatalf("RedactURL(%q) = %q still contains %q", tt.in, got, s)
				}
			}
		})
	}
}

func TestRedactedURLSecretPath(t *testing.T) {
	w := Webhook{URL: "https://example.com/status/abc", SecretPath: true}
	if got, want := w.RedactedURL(), "https://example.com/REDACTED"; got != want {
		t.Errorf("RedactedURL with secret_path = %q, want %q", got, want)
	}
	if s := w.String(); strings.Contains(s, "status") {
		t.Errorf("Webhook.String() = %q shows a secret path", s)
	}
}

func TestSecretShapedSegment(t *testing.T) {
	for seg, want := range map[string]bool{
		"hooks": false, "status": false, "429": false, "v1": false, "order-created": false,
		"customer-orders-endpoint": false, "123456789012345678": false,
		"Zx81kQp0aBc9dEf7GhI2": true, "3f2a6c1e-9b7d-4c1a-8e2f-0a1b2c3d4e5f": true, "AbCdEfGhIjKlMnOpQrStUvWx": true,
		// Judged part by part between the sub-delimiters :;,!$&'()*@.
		"bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw": true, "x;Zx81kQp0aBc9dEf7GhI2": true,
		"a!Zx81kQp0aBc9dEf7GhI2": true, "(Zx81kQp0aBc9dEf7GhI2)": true, "u@AbCdEfGhIjKlMnOpQrStUvWx": true,
		"2024-01-31T10:00:00Z": false, "order:12345678901": false, "ops@example.com": false, "a,b,c,d,e,f,g,h,i,j": false,
	} {
		if got := SecretShapedSegment(seg); got != want {
			t.Errorf("SecretShapedSegment(%q) = %v, want %v", seg, got, want)
		}
	}
}

func TestRedactURI(t *testing.T) {
	tests := []struct {
		in, want string
		secrets  []string
	}{
		{"mongodb://app:s3cr3t@db1:27017/?replicaSet=rs0", "mongodb://app:xxxxx@db1:27017/?replicaSet=rs0", []string{"s3cr3t"}},
		{"mongodb://db1/?tls=true&tlsCertificateKeyFilePassword=k3yp4ss&appName=x", "mongodb://db1/?tls=true&tlsCertificateKeyFilePassword=xxxxx&appName=x", []string{"k3yp4ss"}},
		{"mongodb://db1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:FQoGZXIvYXdz,SERVICE_NAME:mongodb", "mongodb://db1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:xxxxx,SERVICE_NAME:xxxxx", []string{"FQoGZXIvYXdz"}},
		{"mongodb+srv://u:p%40ss@c.example.net/?proxyPassword=pr0xy&sslPEMKeyPassword=pem", "mongodb+srv://u:xxxxx@c.example.net/?proxyPassword=xxxxx&sslPEMKeyPassword=xxxxx", []string{"p%40ss", "pr0xy", "=pem"}},
		{"mongodb://127.0.0.1:27017/?directConnection=true", "mongodb://127.0.0.1:27017/?directConnection=true", nil},
		{"not a uri", "xxxxx", nil},
		// The userinfo ends at the first "@", as the driver reads it.
		{"mongodb://user:pa?ssw0rd@localhost:27017/", "mongodb://user:xxxxx@localhost:27017/", []string{"ssw0rd"}},
		{"mongodb://user:pa#ss?w0rd@localhost:27017/?appName=x", "mongodb://user:xxxxx@localhost:27017/?appName=x", []string{"ss", "w0rd"}},
		{"mongodb://us?er:s3cr3t@localhost:27017/?replicaSet=rs0", "mongodb://us?er:xxxxx@localhost:27017/?replicaSet=rs0", []string{"s3cr3t"}},
		{"mongodb://user:pa?ssw0rd@localhost/?password=0pt1on", "mongodb://user:xxxxx@localhost/?password=xxxxx", []string{"ssw0rd", "0pt1on"}},
		{"mongodb+srv://user:pa?ssw0rd@c.example.net/", "mongodb+srv://user:xxxxx@c.example.net/", []string{"ssw0rd"}},
		// An unescaped "@" in the password, which the driver rejects.
		{"mongodb://user:p@ssw0rd@localhost/", "mongodb://user:xxxxx@localhost/", []string{"ssw0rd"}},
		// Option names are unescaped, then lower-cased.
		{"mongodb://db1/?tlsCertificateKeyFile%50assword=hunter2secret", "mongodb://db1/?tlsCertificateKeyFile%50assword=xxxxx", []string{"hunter2secret"}},
		{"mongodb://db1/?tlsCertificateKeyFile%70assword=hunter2secret", "mongodb://db1/?tlsCertificateKeyFile%70assword=xxxxx", []string{"hunter2secret"}},
		{"mongodb://db1/?%50ROXYPASSWORD=pr0xy&proxyHost=p", "mongodb://db1/?%50ROXYPASSWORD=xxxxx&proxyHost=p", []string{"pr0xy"}},
		{"mongodb://db1/?authMechanism%50roperties=AWS_SESSION_TOKEN:hunter2secret", "mongodb://db1/?authMechanism%50roperties=AWS_SESSION_TOKEN:xxxxx", []string{"hunter2secret"}},
		// "#" is an ordinary character to the driver: no fragment.
		{"mongodb://db1/?tlsCertificateKeyFilePassword=ab#cdsecret&appName=x", "mongodb://db1/?tlsCertificateKeyFilePassword=xxxxx&appName=x", []string{"cdsecret"}},
		{"mongodb://db1/db?appName=a#b", "mongodb://db1/db?appName=a#b", nil},
	}
	for _, tt := range tests {
		got := RedactURI(tt.in)
		if got != tt.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, s := range tt.secrets {
			if strings.Contains(got, s) {
				t.Errorf("RedactURI(%q) = %q still contains %q", tt.in, got, s)
			}
		}
	}
}

// TestRedactURIHidesWhatTheDriverReads: for connection strings the driver
// accepts, nothing the driver takes for a password, a key file password or
// an authMechanismProperties value shows in RedactURI.
func TestRedactURIHidesWhatTheDriverReads(t *testing.T) {
	for _, uri := range []string{
		"mongodb://user:pa?ssw0rd@localhost:27017/",
		"mongodb://user:pa#ssw0rd@localhost:27017/?appName=x",
		"mongodb://user:pass%3Fw0rd@localhost:27017/",
		"mongodb://user:p@localhost:27017/?tlsCertificateKeyFile%50assword=hunter2secret",
		"mongodb://user:p@localhost:27017/?tlsCertificateKeyFilePassword=hunter2#secret",
		"mongodb://user:p@localhost:27017/?authMechanism%50roperties=AWS_SESSION_TOKEN:hunter2secret",
		"mongodb://user:p@localhost:27017/?authMechanismProperties=AWS_SESSION_TOKEN%3Ahunter2secret",
	} {
		t.Run(uri, func(t *testing.T) {
			cs, err := connstring.ParseAndValidate(uri)
			if err != nil {
				t.Fatalf("the driver rejects it: %v", err)
			}
			if msg := checkMongoURI(uri); msg != "" {
				t.Fatalf("checkMongoURI = %q, want valid", msg)
			}
			secrets := []string{cs.Password}
			if cs.SSLClientCertificateKeyPasswordSet {
				secrets = append(secrets, cs.SSLClientCertificateKeyPassword())
			}
			for _, v := range cs.AuthMechanismProperties {
				secrets = append(secrets, v)
			}
			got := RedactURI(uri)
			for _, s := range secrets {
				for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
					if len(s) >= 3 && strings.Contains(got, form) {
						t.Errorf("RedactURI = %q shows %q", got, form)
					}
				}
			}
		})
	}
}

func TestCheckMongoURISRVUserinfo(t *testing.T) {
	for uri, want := range map[string]string{
		"mongodb+srv://user:pa?ssw0rd@c.example.net/":       "",
		"mongodb+srv://user:pa?ssw0rd@c.example.net:27017/": "invalid connection string: a mongodb+srv URI needs exactly one host name without a port",
		"mongodb+srv://user:pa?ssw0rd@/":                    "invalid connection string: a mongodb+srv URI needs exactly one host name",
	} {
		if got := checkMongoURI(uri); got != want {
			t.Errorf("checkMongoURI(%q) = %q, want %q", uri, got, want)
		}
	}
}

func TestScrubURIError(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		uri, msg, want string
	}{
		{"mongodb://db1/?tlsCertificateKeyFile%50assword=s3cr3t%zz", `error parsing uri: invalid option value "s3cr3t%zz": invalid URL escape "%zz"`,
			`error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz": cause`},
		{"mongodb://db1/?authMechanism%50roperties=AWS_SESSION_TOKEN:t0k3n%zz", `invalid option value "AWS_SESSION_TOKEN:t0k3n%zz"`,
			`invalid option value "xxxxx": cause`},
		// The user name goes too, as in validate's messages.
		{"mongodb://app:pa?ssw0rd@db1/", "dial mongodb://app:pa?ssw0rd@db1/: refused; password pa?ssw0rd",
			"dial mongodb://xxxxx:xxxxx@db1/: refused; password xxxxx: cause"},
		{"mongodb://app:pa%3Fss@db1/", "auth with pa?ss failed",
			"auth with xxxxx failed: cause"},
		// Parts under 3 characters are left, or every "u" would go.
		{"mongodb://u:p@db1/", "server selection error: current topology unknown",
			"server selection error: current topology unknown: cause"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			err := ScrubURIError(fmt.Errorf("%s: %w", tt.msg, cause), tt.uri)
			if got := err.Error(); got != tt.want {
				t.Errorf("ScrubURIError = %q, want %q", got, tt.want)
			}
			if !errors.Is(err, cause) {
				t.Errorf("errors.Is(ScrubURIError(...), cause) = false")
			}
		})
	}
	if ScrubURIError(nil, "mongodb://db1/") != nil {
		t.Error("ScrubURIError(nil) != nil")
	}
}

func TestCheckMongoURIScrubsOptionSecrets(t *testing.T) {
	msg := checkMongoURI("mongodb://db1/?tlsCertificateKeyFilePassword=k3yp4ss&connectTimeoutMS=abc")
	if msg == "" || strings.Contains(msg, "k3yp4ss") {
		t.Fatalf("checkMongoURI = %q: want an error without the key password", msg)
	}
	for uri, want := range map[string]string{
		"mongodb://db1/?tlsCertificateKeyFile%50assword=k3yp4ss%zz":           `invalid connection string: error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz"`,
		"mongodb://db1/?%70roxyPassword=pr0xy%zz":                             `invalid connection string: error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz"`,
		"mongodb://db1/?authMechanism%50roperties=AWS_SESSION_TOKEN:t0k3n%zz": `invalid connection string: error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz"`,
	} {
		if got := checkMongoURI(uri); got != want {
			t.Errorf("checkMongoURI(%q) = %q, want %q", uri, got, want)
		}
	}
}

// TestCheckMongoURIHosts: a host the driver's parser takes but no
// connection can reach ("[bad", a space in a name) is a validation error
// naming the host, never the password; every host form the driver
// connects to passes.
func TestCheckMongoURIHosts(t *testing.T) {
	for uri, want := range map[string]string{
		"mongodb://u:s3cretpw@[bad":           `invalid connection string: host "[bad" is not a host name, an IPv4 address or an [IPv6] address, with an optional :port`,
		"mongodb://u:s3cretpw@[bad]:27017":    `invalid connection string: host "[bad]:27017" is not a host name, an IPv4 address or an [IPv6] address, with an optional :port`,
		"mongodb://u:s3cretpw@ho st":          `invalid connection string: host "ho st" is not a host name, an IPv4 address or an [IPv6] address, with an optional :port`,
		"mongodb://u:s3cretpw@a,b c:27018/db": `invalid connection string: host "b c:27018" is not a host name, an IPv4 address or an [IPv6] address, with an optional :port`,
		"mongodb://u:s3cretpw@[::1]x":         `invalid connection string: host "[::1]x" is not a host name, an IPv4 address or an [IPv6] address, with an optional :port`,
		"mongodb://u:s3cretpw@db-1.example_net.com:27017,10.0.0.1,[::1]:27018,[fe80::1%25eth0]/?replicaSet=rs": "",
		"mongodb://%2Ftmp%2Fmongodb-27017.sock":          "",
		"mongodb://%2Fvar%2Frun%2Fmongodb%2Fmongod-sock": "", // the driver dials any host ending in "sock" as a socket
		"mongodb://localhost":                            "",
	} {
		if got := checkMongoURI(uri); got != want {
			t.Errorf("checkMongoURI(%q) = %q, want %q", uri, got, want)
		}
	}
}
