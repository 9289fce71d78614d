package triggers

import (
	"time"
)

// Defaults of the payload_errors and circuit sections.
const (
	// DefaultPayloadMaxConsecutive is payload_errors.max_consecutive when
	// omitted.
	DefaultPayloadMaxConsecutive = 10
	// MaxPayloadMaxConsecutive bounds payload_errors.max_consecutive.
	MaxPayloadMaxConsecutive = 1000000
	// DefaultCircuitFailures is circuit.failures when omitted.
	DefaultCircuitFailures = 5
	// MaxCircuitFailures bounds circuit.failures.
	MaxCircuitFailures = 1000000
	// DefaultCircuitMaxProbeInterval is circuit.max_probe_interval when
	// omitted.
	DefaultCircuitMaxProbeInterval = 5 * time.Minute
	// MinCircuitProbeInterval is the smallest circuit.max_probe_interval
	// accepted.
	MinCircuitProbeInterval = time.Second
)

// DefaultCircuitOpenOn returns circuit.open_on when omitted: 410 Gone.
func DefaultCircuitOpenOn() StatusRules { return StatusRules{"410"} }

// PayloadErrorPolicy is a trigger's payload_errors section: what happens when
// the webhook payload cannot be built from an event (webhook.payload
// evaluates to an error or to something other than a document). That is a
// problem of the trigger's configuration, not of the endpoint, so it pauses
// the trigger instead of dead-lettering every event.
type PayloadErrorPolicy struct {
	// MaxConsecutive is the number of consecutive events whose payload
	// cannot be built after which the trigger pauses (Runner.Pause, by
	// "payload_errors"). With dead letters, the events before it are
	// dead-lettered with reason payload_error and the one that reaches it is
	// held (not dead-lettered, not checkpointed) so that resuming after the
	// configuration is fixed delivers it. Without dead letters the first
	// payload error pauses the trigger (its event could never be skipped
	// anyway). 0 never pauses: every payload error is dead-lettered (or,
	// without dead letters, retried every retry.max_backoff). Parse sets
	// DefaultPayloadMaxConsecutive when omitted; a hand-built Trigger's zero
	// value never pauses.
	MaxConsecutive int `json:"max_consecutive"`
}

// CircuitPolicy is a trigger's circuit section: the circuit breaker of its
// endpoint. After Failures consecutive failed deliveries, or at once on a
// status in OpenOn, the circuit opens: the trigger stops starting
// deliveries (backpressure reaches the change stream, nothing is skipped or
// dead-lettered), and the delivery that opened it is retried alone as a
// probe at doubling intervals, from retry.initial_backoff up to
// MaxProbeInterval; the first successful probe closes the circuit.
type CircuitPolicy struct {
	// Failures is the number of consecutive failed deliveries (with dead
	// letters: deliveries given up on; without: rounds of
	// retry.max_attempts attempts) that opens the circuit. 0 disables the
	// count (OpenOn still applies). Parse sets DefaultCircuitFailures when
	// omitted.
	Failures int `json:"failures"`
	// OpenOn lists the statuses (codes or classes) that open the circuit
	// at once, whatever the count (default DefaultCircuitOpenOn: 410 Gone).
	// Empty: none.
	OpenOn StatusRules `json:"open_on"`
	// MaxProbeInterval caps the interval between probes (default
	// DefaultCircuitMaxProbeInterval).
	MaxProbeInterval time.Duration `json:"max_probe_interval"`
}

// Enabled reports whether the circuit can open at all.
func (c CircuitPolicy) Enabled() bool { return c.Failures > 0 || len(c.OpenOn) > 0 }

// MarshalJSON writes max_probe_interval as a Go duration string ("5m0s").
func (c CircuitPolicy) MarshalJSON() ([]byte, error) {
	open := c.OpenOn
	if open == nil {
		open = StatusRules{}
	}
	return marshalJSON(struct {
		Failures         int         `json:"failures"`
		OpenOn           StatusRules `json:"open_on"`
		MaxProbeInterval string      `json:"max_probe_interval"`
	}{c.Failures, open, c.MaxProbeInterval.String()})
}

// payloadErrors decodes the payload_errors section (the trigger's fields
// over the defaults section's).
func (d *decoder) payloadErrors(own, def entry) PayloadErrorPolicy {
	f := d.mergedFields(own, def, "payload_errors", []string{"max_consecutive"})
	return PayloadErrorPolicy{
		MaxConsecutive: d.integer(f["max_consecutive"], "payload_errors.max_consecutive", DefaultPayloadMaxConsecutive, 0, MaxPayloadMaxConsecutive),
	}
}

// circuit decodes the circuit section (the trigger's fields over the
// defaults section's).
func (d *decoder) circuit(own, def entry) CircuitPolicy {
	f := d.mergedFields(own, def, "circuit", []string{"failures", "open_on", "max_probe_interval"})
	c := CircuitPolicy{
		Failures:         d.integer(f["failures"], "circuit.failures", DefaultCircuitFailures, 0, MaxCircuitFailures),
		OpenOn:           d.statusRules(f["open_on"], "circuit.open_on", DefaultCircuitOpenOn(), false),
		MaxProbeInterval: d.duration(f["max_probe_interval"], "circuit.max_probe_interval", DefaultCircuitMaxProbeInterval),
	}
	if e := f["max_probe_interval"]; e.set() && c.MaxProbeInterval > 0 && c.MaxProbeInterval < MinCircuitProbeInterval {
		d.errorf(deref(e.val), "circuit.max_probe_interval: must be at least %s, got %s", MinCircuitProbeInterval, c.MaxProbeInterval)
		c.MaxProbeInterval = DefaultCircuitMaxProbeInterval
	}
	return c
}

// mergedFields collects a section's fields from the defaults section, then
// from the trigger (the trigger's win field by field).
func (d *decoder) mergedFields(own, def entry, section string, known []string) map[string]entry {
	f := map[string]entry{}
	for _, e := range []entry{def, own} {
		if !e.set() {
			continue
		}
		for k, v := range d.fields(e.val, section, known) {
			f[k] = v
		}
	}
	return f
}
