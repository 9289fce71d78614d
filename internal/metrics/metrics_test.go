package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	newVec := func() *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"l"})
	}
	first := Register(reg, newVec())
	second := Register(reg, newVec())
	if first != second {
		t.Fatal("a second registration of an equal collector did not return the registered one")
	}
	second.WithLabelValues("a").Inc()
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("gathered %v, %v; want x_total = 1", mfs, err)
	}
	// A clashing collector (same name, other labels) is returned unexported
	// instead of panicking.
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"m"})
	if got := Register(reg, other); got != other {
		t.Fatal("a clashing collector was not returned as is")
	}
}
