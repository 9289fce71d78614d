// Package metrics holds the one Prometheus registration helper that the
// product's metric sets (the dispatcher's and the watch loop's) share.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns the collector to use: the one
// already registered when reg holds an equal collector of the same type (a
// second metric set created on the same registry), otherwise c. It never
// panics; a collector that cannot be registered for another reason is
// returned usable but unexported. reg must not be nil.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
