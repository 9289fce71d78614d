package cli

import (
	"strings"
	"testing"
)

// TestTestCommandListsAuthorization: `changehook test` lists the
// Authorization header the request is sent with, masked, whichever makes
// it: webhook.headers, webhook.auth, or a URL's userinfo (Basic
// credentials net/http adds when no other Authorization is set); the
// credentials never show.
func TestTestCommandListsAuthorization(t *testing.T) {
	ev := `{"_id": {"_data": "82AB"}, "operationType": "insert", "ns": {"db": "lessons", "coll": "x"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}`
	for _, tc := range []struct {
		name    string
		webhook string
		want    string // the Authorization line ("": none)
	}{
		{name: "the URL's userinfo", webhook: `{ url: "http://alice:s3cretpass@127.0.0.1:1/hooks/send" }`,
			want: "  Authorization: <secret>   (the URL's user:password)\n"},
		{name: "a user name without password", webhook: `{ url: "http://alice@127.0.0.1:1/hooks/send" }`,
			want: "  Authorization: <secret>   (the URL's user:password)\n"},
		{name: "userinfo and a configured header", webhook: `{ url: "http://alice:s3cretpass@127.0.0.1:1/hooks/send", headers: { Authorization: "Bearer h34derv4l" } }`,
			want: "  Authorization: <secret>\n"},
		{name: "userinfo and webhook.auth", webhook: `{ url: "http://alice:s3cretpass@127.0.0.1:1/hooks/send", auth: { bearer: { token: "b34rer" } } }`,
			want: "  Authorization: <secret>   (webhook.auth.bearer)\n"},
		{name: "no credentials", webhook: `{ url: "http://127.0.0.1:1/hooks/send" }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, "\ntriggers:\n  - name: send\n    database: lessons\n    webhook: "+tc.webhook+"\n")
			code, out, errOut := run(t, nil, ev, "test", "-c", cfg, "--event", "-")
			if code != ExitOK {
				t.Fatalf("exit %d: %s%s", code, out, errOut)
			}
			var got string
			for _, line := range strings.SplitAfter(out, "\n") {
				if strings.HasPrefix(line, "  Authorization:") {
					got += line
				}
			}
			if got != tc.want {
				t.Errorf("the request's Authorization line is %q, want %q:\n%s", got, tc.want, out)
			}
			for _, secret := range []string{"s3cretpass", "h34derv4l", "b34rer"} {
				if strings.Contains(out+errOut, secret) {
					t.Errorf("output shows %q:\n%s%s", secret, out, errOut)
				}
			}
		})
	}
}
