package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/changehook/changehook/dispatcher"
)

// deliveryPrinter prints one line per delivery attempt for `dev`: time,
// trigger, HTTP status (or the failure reason when there was no response),
// latency and webhook-id, and for a failure the attempt number and reason.
// Lines of concurrent attempts never interleave.
type deliveryPrinter struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// observer returns the dispatcher observer printing trigger's attempts.
func (p *deliveryPrinter) observer(trigger string) func(dispatcher.Attempt) {
	return func(at dispatcher.Attempt) {
		if at.Reason == dispatcher.ReasonCanceled {
			return // shutdown, not an outcome
		}
		status := "---"
		if at.Status != 0 {
			status = fmt.Sprint(at.Status)
		}
		line := fmt.Sprintf("%s  %-20s %s %8s  %s", p.now().Format("15:04:05.000"), trigger, status,
			latencyText(at.Latency), at.WebhookID)
		if at.Number > 1 {
			line += fmt.Sprintf("  attempt %d", at.Number)
		}
		if at.Reason != "" {
			line += "  " + at.Reason
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		fmt.Fprintln(p.w, line)
	}
}

// latencyText is d in milliseconds or longer units, rounded to the
// millisecond, and below a millisecond to a tenth of one ("0.4ms", where
// rounding said "0s" of a delivery to a local receiver).
func latencyText(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}
