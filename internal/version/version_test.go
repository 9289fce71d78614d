package version

import "testing"

func TestResolve(t *testing.T) {
	// Tests run without a recorded module version, so "" and Dev resolve
	// to Dev.
	tests := []struct{ in, want string }{
		{"v1.2.3", "v1.2.3"},
		{"test", "test"},
		{"", Dev},
		{Dev, Dev},
	}
	for _, tt := range tests {
		if got := Resolve(tt.in); got != tt.want {
			t.Errorf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUserAgent(t *testing.T) {
	if got := UserAgent("v9.9.9"); got != "changehook/v9.9.9" {
		t.Errorf("UserAgent(v9.9.9) = %q", got)
	}
	if got := UserAgent(""); got != "changehook/"+Dev {
		t.Errorf("UserAgent(\"\") = %q", got)
	}
}
