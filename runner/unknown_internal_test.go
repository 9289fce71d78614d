package runner

import (
	"errors"
	"strings"
	"testing"
)

// TestUnknownTriggerErrorCutsTheName: the error for a name that is no
// trigger (the admin API's POST /api/triggers/NAME/... answers it with
// 404) quotes at most the start of the name, however long it was.
func TestUnknownTriggerErrorCutsTheName(t *testing.T) {
	r := &Runner{}
	for _, tc := range []struct {
		name, want string
	}{
		{"nope", `unknown trigger "nope"`},
		{strings.Repeat("x", 100000), `unknown trigger "` + strings.Repeat("x", 200) + `"… (100000 bytes)`},
	} {
		_, err := r.slotsOf(tc.name)
		if !errors.Is(err, ErrUnknownTrigger) || err.Error() != tc.want {
			t.Errorf("slotsOf(%.20q…) = %.300v, want %.300s", tc.name, err, tc.want)
		}
	}
}
