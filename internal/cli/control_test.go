package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// TestSkipOfPartitionedTriggerRefusedBeforeStoring: `skip NAME` naming a
// partitioned trigger (the stuck event is one partition's) is refused
// before anything is recorded, so a request still pending on the trigger
// (a redeliver no running changehook applied yet) is not replaced.
func TestSkipOfPartitionedTriggerRefusedBeforeStoring(t *testing.T) {
	_, st, cfg := devdbConfig(t, `
triggers:
  - name: parts
    database: shop
    collection: parts
    ordering: per_document
    partitions: 2
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	ctx := t.Context()
	pending, err := st.RequestControl(ctx, "parts", "", store.ControlRequest{Kind: store.RequestRedeliver, Since: time.Now().Add(-time.Hour).UTC(), By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "", "skip", "-c", cfg, "parts")
	const want = "skip parts: it has 2 partitions, each holding its own events: name one of them (parts/p0of2 … parts/p1of2)"
	if code != ExitUsage || !strings.Contains(errOut, want) {
		t.Fatalf("skip of a partitioned trigger's name: code %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, ExitUsage, want)
	}
	c, ok, err := st.LoadControl(ctx, "parts")
	if err != nil || !ok || c.Request == nil || c.Request.ID != pending || c.Request.Kind != store.RequestRedeliver {
		t.Fatalf("control after the refused skip = %+v, %v, %v; want the pending redeliver %s kept", c.Request, ok, err, pending)
	}
}
