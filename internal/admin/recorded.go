package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/triggers"
)

// UnknownTriggerError is RecordedTrigger's answer to a trigger name that
// is neither in the configuration nor named by any stored record, most
// often a typo. The CLI answers it as a usage error, the admin API with
// 404.
type UnknownTriggerError struct {
	// Name is the name that was given.
	Name string
	// Suggestion is the configured trigger Name was most likely meant to
	// be (triggers.Suggest), or "".
	Suggestion string
	msg        string
}

// Error names the trigger, says where it was looked for, and lists the
// configured triggers with the suggestion as "did you mean".
func (e *UnknownTriggerError) Error() string { return e.msg }

// RecordedTrigger checks the trigger name given to a listing of, or an
// operation on, stored records (what: "dead letters", "history records"),
// by the one rule of the dlq and history commands and of the admin API: a
// trigger of cfg (known reports whether cfg has it) is fine, and so is one
// the records still name (a trigger removed from the configuration keeps
// its dead letters and history until they are purged or expire), for
// which it returns a note saying it is not configured. A name that is
// neither is an *UnknownTriggerError naming cfg's triggers, with the
// closest as "did you mean". where names the configuration in both
// messages (its file for the CLI). hasRecords is called only for a name
// that is not configured; its error is returned as it is.
func RecordedTrigger(cfg *triggers.Config, where, name, what string, known bool, hasRecords func() (bool, error)) (note string, err error) {
	if known {
		return "", nil
	}
	found, err := hasRecords()
	if err != nil {
		return "", err
	}
	if found {
		return fmt.Sprintf("note: trigger %s is not in %s (removed?), but it still has %s", textcut.Quote(name), where, what), nil
	}
	names := make([]string, len(cfg.Triggers))
	for i, t := range cfg.Triggers {
		names[i] = t.Name
	}
	list := strings.Join(names, ", ")
	slices.Sort(names)
	e := &UnknownTriggerError{Name: name, Suggestion: triggers.Suggest(name, names)}
	hint := ""
	if e.Suggestion != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", e.Suggestion)
	}
	e.msg = fmt.Sprintf("unknown trigger %s: it is not in %s, and no %s name it%s; triggers: %s", textcut.Quote(name), where, what, hint, list)
	return "", e
}

// configuredTrigger reports whether name is a trigger of cfg or, with
// partitions, one partition's key NAME/p<i>of<N> of a trigger of cfg that
// has N partitions (what history records name).
func configuredTrigger(cfg *triggers.Config, name string, partitions bool) bool {
	trigger, _, n, ok := triggers.ParsePartitionKey(name)
	if !partitions || !ok || n == 1 {
		trigger, n = name, 0
	}
	for _, t := range cfg.Triggers {
		if t.Name == trigger {
			return n == 0 || t.Partitions == n
		}
	}
	return false
}

// apiConfiguration is how the API's answers name the configuration (not
// its path: the GET endpoints answer without a token).
const apiConfiguration = "the configuration"

// recordedTriggerAnswered checks the trigger name given to an API call
// over stored records (what, hasRecords: as RecordedTrigger; partitions:
// a partition's key is a configured name too) against config's
// configuration and reports whether the call may go on. When not, it has
// answered: 404 with {"error"} naming the unknown trigger and the closest
// configured one, or 503 when the records cannot be read. An empty name
// (every trigger), a nil config or a nil configuration need no check.
func recordedTriggerAnswered(w http.ResponseWriter, config func() *triggers.Config, name, what string, partitions bool, hasRecords func() (bool, error)) bool {
	if name == "" || config == nil {
		return true
	}
	cfg := config()
	if cfg == nil {
		return true
	}
	_, err := RecordedTrigger(cfg, apiConfiguration, name, what, configuredTrigger(cfg, name, partitions), hasRecords)
	var ue *UnknownTriggerError
	switch {
	case errors.As(err, &ue):
		writeError(w, http.StatusNotFound, err.Error())
		return false
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return false
	}
	return true
}
