package runner

import (
	"errors"
	"strings"
	"testing"
)

// TestUnknownTriggerErrorCutsTheName: the error for a name that is no
// trigger (the admin API's POST /api/triggers/NAME/... answers it with
// 404) quotes at most the start of the name, however long it was, and
// names the closest trigger and the configured ones.
func TestUnknownTriggerErrorCutsTheName(t *testing.T) {
	r := &Runner{order: []string{"orders", "users"}}
	for _, tc := range []struct {
		name, want string
	}{
		{"nope", `unknown trigger "nope"; triggers: orders, users`},
		{"order", `unknown trigger "order" (did you mean "orders"?); triggers: orders, users`},
		{strings.Repeat("x", 100000), `unknown trigger "` + strings.Repeat("x", 200) + `"… (100000 bytes); triggers: orders, users`},
	} {
		_, err := r.slotsOf(tc.name)
		if !errors.Is(err, ErrUnknownTrigger) || err.Error() != tc.want {
			t.Errorf("slotsOf(%.20q…) = %.300v, want %.300s", tc.name, err, tc.want)
		}
	}
}
