package cli

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
)

func TestDeliveryPrinter(t *testing.T) {
	var out bytes.Buffer
	p := &deliveryPrinter{w: &out, now: func() time.Time { return time.Date(2026, 1, 2, 15, 4, 5, 123e6, time.UTC) }}
	obs := p.observer("low_stock")
	obs(dispatcher.Attempt{WebhookID: "msg_a", Number: 1, Status: 204, Latency: 12 * time.Millisecond})
	obs(dispatcher.Attempt{WebhookID: "msg_b", Number: 2, Status: 503, Reason: dispatcher.ReasonServerError, Err: errors.New("HTTP 503"), Latency: 3 * time.Millisecond})
	obs(dispatcher.Attempt{WebhookID: "msg_c", Number: 1, Reason: dispatcher.ReasonConnection, Err: errors.New("refused")})
	obs(dispatcher.Attempt{WebhookID: "msg_d", Number: 1, Reason: dispatcher.ReasonCanceled})
	obs(dispatcher.Attempt{WebhookID: "msg_e", Number: 1, Status: 204, Latency: 420 * time.Microsecond})
	obs(dispatcher.Attempt{WebhookID: "msg_f", Number: 1, Status: 204, Latency: 1534 * time.Millisecond})
	want := "15:04:05.123  low_stock            204     12ms  msg_a\n" +
		"15:04:05.123  low_stock            503      3ms  msg_b  attempt 2  server_error\n" +
		"15:04:05.123  low_stock            ---    0.0ms  msg_c  connection\n" +
		"15:04:05.123  low_stock            204    0.4ms  msg_e\n" +
		"15:04:05.123  low_stock            204   1.534s  msg_f\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
}
