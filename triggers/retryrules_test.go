package triggers

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestRetryPolicyListOf checks the one rule that decides which of
// success_on, drop_on and retry_on a status falls in: a code beats a
// class, whichever lists they are in and whether set or default.
func TestRetryPolicyListOf(t *testing.T) {
	rules := func(r ...StatusRule) StatusRules { return r }
	tests := []struct {
		name   string
		policy RetryPolicy
		status int
		want   StatusList
	}{
		{"defaults: 200", RetryPolicy{}, 200, ListSuccessOn},
		{"defaults: 404", RetryPolicy{}, 404, ListNone},
		{"defaults: 429", RetryPolicy{}, 429, ListRetryOn},
		{"defaults: 503", RetryPolicy{}, 503, ListRetryOn},
		{"defaults: 302", RetryPolicy{}, 302, ListNone},
		{"retry code over drop class", RetryPolicy{DropOn: rules("4xx"), RetryOn: rules("429", "5xx")}, 429, ListRetryOn},
		{"drop class without a code", RetryPolicy{DropOn: rules("4xx"), RetryOn: rules("429", "5xx")}, 404, ListDropOn},
		{"default retry code over drop class", RetryPolicy{DropOn: rules("4xx")}, 408, ListRetryOn},
		{"drop code over retry class", RetryPolicy{DropOn: rules("429"), RetryOn: rules("4xx")}, 429, ListDropOn},
		{"drop code over default retry class", RetryPolicy{DropOn: rules("503")}, 503, ListDropOn},
		{"drop code and default retry code: drop", RetryPolicy{DropOn: rules("4xx", "429")}, 429, ListDropOn},
		{"retry code over default success class", RetryPolicy{RetryOn: rules("202")}, 202, ListRetryOn},
		{"drop code over default success class", RetryPolicy{DropOn: rules("204")}, 204, ListDropOn},
		{"success code over drop class", RetryPolicy{SuccessOn: rules("2xx", "409"), DropOn: rules("4xx")}, 409, ListSuccessOn},
		{"success code over default retry class", RetryPolicy{SuccessOn: rules("2xx", "503")}, 503, ListSuccessOn},
		{"success code and default retry code: success", RetryPolicy{SuccessOn: rules("2xx", "429")}, 429, ListSuccessOn},
		{"default retry code over success class", RetryPolicy{SuccessOn: rules("2xx", "4xx")}, 429, ListRetryOn},
		{"success class without a code", RetryPolicy{SuccessOn: rules("2xx", "4xx")}, 404, ListSuccessOn},
		{"empty retry_on takes nothing", RetryPolicy{RetryOn: StatusRules{}}, 503, ListNone},
		{"outside the registry", RetryPolicy{}, 600, ListNone},
		{"negative", RetryPolicy{}, -1, ListNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.ListOf(tc.status); got != tc.want {
				t.Errorf("ListOf(%d) = %q, want %q", tc.status, got, tc.want)
			}
		})
	}
}

// TestRetryClassOverlap checks what validation says of a status in two of
// success_on, drop_on and retry_on: the same code or class twice is an
// error; a class the file sets whose codes another list (set or default)
// takes is accepted with a warning naming them, about the trigger whose
// policy it is (formatWarnings: "t1: " before it), also when the class is
// in the defaults section.
func TestRetryClassOverlap(t *testing.T) {
	tests := []struct {
		name     string
		defaults string // the defaults section's retry ("": none)
		retry    string // the trigger's retry ("": none)
		problems []string
		warnings []string
	}{
		{name: "drop class, retry code", retry: `{ drop_on: [4xx], retry_on: [429, 5xx] }`,
			warnings: []string{`t1: c.yaml:4:24: retry.drop_on: 4xx: 429 is retried (retry_on lists it); a code beats a class`}},
		{name: "drop class, default retry", retry: `{ drop_on: [4xx] }`,
			warnings: []string{`t1: c.yaml:4:24: retry.drop_on: 4xx: 408 and 429 are retried (the default retry_on lists them); a code beats a class`}},
		{name: "default success class, retry code", retry: `{ retry_on: [202, 5xx] }`},
		{name: "success class set, retry code", retry: `{ success_on: [2xx], retry_on: [202, 5xx] }`,
			warnings: []string{`t1: c.yaml:4:27: retry.success_on: 2xx: 202 is retried (retry_on lists it); a code beats a class`}},
		{name: "success class set, drop code", retry: `{ success_on: [2xx], drop_on: [204] }`,
			warnings: []string{`t1: c.yaml:4:27: retry.success_on: 2xx: 204 is dropped (drop_on lists it); a code beats a class`}},
		{name: "retry class, codes in two lists", retry: `{ success_on: [2xx, 409], drop_on: [410], retry_on: [4xx] }`,
			warnings: []string{`t1: c.yaml:4:65: retry.retry_on: 4xx: 409 is taken as delivered (success_on lists it), 410 is dropped (drop_on lists it); a code beats a class`}},
		{name: "drop class and its code", retry: `{ drop_on: [4xx, 429] }`,
			warnings: []string{`t1: c.yaml:4:24: retry.drop_on: 4xx: 408 is retried (the default retry_on lists it); a code beats a class`}},
		{name: "retry class only", retry: `{ retry_on: [4xx, 5xx] }`},
		{name: "from defaults", defaults: `{ drop_on: [4xx] }`,
			warnings: []string{`t1: c.yaml:2:22: retry.drop_on: 4xx: 408 and 429 are retried (the default retry_on lists them); a code beats a class`}},
		{name: "same code twice", retry: `{ drop_on: [429] , retry_on: [429] }`,
			problems: []string{`c.yaml:4:41: retry.retry_on: 429 is also in retry.drop_on; list each status in one of success_on, drop_on and retry_on`}},
		{name: "same class twice", retry: `{ drop_on: [5xx], retry_on: [5xx] }`,
			problems: []string{`c.yaml:4:40: retry.retry_on: 5xx is also in retry.drop_on; list each status in one of success_on, drop_on and retry_on`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "defaults:\n  retry: " + tc.defaults + "\ntriggers:\n  - name: t1\n    retry: " + tc.retry + "\n    database: shop\n    webhook: { url: \"http://127.0.0.1:9999/h\" }\n"
			if tc.defaults == "" {
				src = strings.Replace(src, "defaults:\n  retry: \n", "defaults: {}\n", 1)
			}
			if tc.retry == "" {
				src = strings.Replace(src, "    retry: \n", "    enabled: true\n", 1)
			}
			cfg, err := Parse("c.yaml", []byte(src), testEnv)
			var got []string
			var ve *ValidationError
			switch {
			case errors.As(err, &ve):
				for _, p := range ve.Problems {
					got = append(got, p.String())
				}
			case err != nil:
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.problems) {
				t.Fatalf("problems\n%q\nwant\n%q", got, tc.problems)
			}
			if err != nil {
				return
			}
			var warnings []string
			if w := formatWarnings(cfg.Warnings); w != "" {
				warnings = strings.Split(strings.TrimSuffix(w, "\n"), "\n")
			}
			if !slices.Equal(warnings, tc.warnings) {
				t.Errorf("warnings\n%q\nwant\n%q", warnings, tc.warnings)
			}
		})
	}
}
