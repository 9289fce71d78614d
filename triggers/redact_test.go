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
		{"https://example.com/hooks/stock", "https://example.com/hooks/REDACTED", []string{"stock"}},
		{"https://example.com/hooks", "https://example.com/hooks", nil},
		{"https://example.com/hooks/", "https://example.com/hooks/", nil},
		{"https://hooks.slack.com/services/T0AAA/B0BBB/XXsecretXX", "https://hooks.slack.com/services/REDACTED", []string{"XXsecretXX", "T0AAA"}},
		{"https://hooks.zapier.com/hooks/catch/123/abcKEY/", "https://hooks.zapier.com/hooks/REDACTED", []string{"abcKEY", "123"}},
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
