package runner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
)

const twoEndpointsYAML = `
endpoints:
  - { name: crm, url_prefix: "${HOOK_URL}/held", rate_limit: { per_second: 100 } }
  - { name: erp, url_prefix: "${HOOK_URL}/other", rate_limit: { per_second: 100 } }
triggers:
  - name: held
    database: shop
    collection: a
    webhook: { url: "${HOOK_URL}/held" }
  - name: other
    database: shop
    collection: b
    webhook: { url: "${HOOK_URL}/other" }
`

// TestReloadDropsRemovedEndpointLimiters: a reload that removes an endpoint
// drops its shared rate limiter (the name, asked for again, gets a new
// one), and leaves the limiter of an endpoint it keeps as it is.
func TestReloadDropsRemovedEndpointLimiters(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, twoEndpointsYAML, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "runner ready", r.Ready)
	lims := r.EndpointLimiters()
	crm, erp := cfg.Endpoints[0], cfg.Endpoints[1]
	heldCRM, heldERP := lims.For(crm), lims.For(erp)

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	withoutERP := strings.Replace(twoEndpointsYAML, "  - { name: erp,", "  # - { name: erp,", 1)
	if _, err := r.Reload(ctx, parseTrigger(t, withoutERP, recv.srv.URL)); err != nil {
		t.Fatal(err)
	}
	if lims.For(crm) != heldCRM {
		t.Error("crm is still configured, yet after the reload it got a new limiter")
	}
	if lims.For(erp) == heldERP {
		t.Error("erp was removed, yet after the reload its limiter was kept")
	}
}
