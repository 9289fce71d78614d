package triggers

import (
	"strings"
	"testing"
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
		{"https://example.com/h#frag-secret", "https://example.com/h", []string{"frag-secret"}},
		{"mailto:someone@secret.example", "mailto:REDACTED", []string{"secret.example"}},
		{"http://[::1]:namedport?k=v", "<unparsable URL>", []string{"k=v"}},
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

func TestCheckMongoURIScrubsOptionSecrets(t *testing.T) {
	msg := checkMongoURI("mongodb://db1/?tlsCertificateKeyFilePassword=k3yp4ss&connectTimeoutMS=abc")
	if msg == "" || strings.Contains(msg, "k3yp4ss") {
		t.Fatalf("checkMongoURI = %q: want an error without the key password", msg)
	}
}
