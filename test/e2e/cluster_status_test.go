package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// clusterStatusJSON is the part of GET /api/cluster's body and of
// `changehook cluster status --json`'s output these tests read. Presence
// is kept for the fields that may be left out.
type clusterStatusJSON struct {
	InstanceID *string  `json:"instance_id"`
	LeaseTTL   string   `json:"lease_ttl"`
	RenewEvery string   `json:"renew_every"`
	ConfigHash string   `json:"config_hash"`
	Drift      []string `json:"drift"`
	Members    []struct {
		ID         string `json:"id"`
		ConfigHash string `json:"config_hash"`
	} `json:"members"`
	Leases []struct {
		Key   string `json:"key"`
		Owner string `json:"owner"`
	} `json:"leases"`
}

// TestClusterStatusJSON: `changehook cluster status --json`, which is no
// member, describes the cluster as its configuration file sees it. Run on
// the file a member runs, it prints that member's instance_id, lease_ttl,
// renew_every and config_hash, as the member's GET /api/cluster does, with
// the same members and leases. Run on a file that leaves instance_id out
// and defines a trigger otherwise, it omits instance_id, prints the
// settings' defaults and the file's own config hash, and lists that
// trigger as drifted: a member run with the file would not run it.
func TestClusterStatusJSON(t *testing.T) {
	srv, _ := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	dir := t.TempDir()
	const triggersYAML = `
  - name: orders
    database: shop
    collection: orders
  - name: audit
    database: shop
    collection: audit
`
	member := writeFile(t, dir, "member.yaml", strings.Replace(baseConfig(srv.URI(), rc.URL()), "state: { database: chstate }",
		"state: { database: chstate }\ncluster: { instance_id: status-a, lease_ttl: 3s, renew_every: 500ms }", 1)+triggersYAML)
	other := writeFile(t, dir, "other.yaml", baseConfig(srv.URI(), rc.URL())+
		strings.Replace(triggersYAML, "collection: audit", "collection: audit_v2", 1))
	r := startRunner(t, runArgs(member)...)
	body := r.waitAdmin("/api/cluster", func(code int, b []byte) bool {
		var st clusterStatusJSON
		return code == http.StatusOK && json.Unmarshal(b, &st) == nil && len(st.Members) == 1 && len(st.Leases) == 2 &&
			st.Leases[0].Owner == "status-a" && st.Leases[1].Owner == "status-a"
	})
	var api clusterStatusJSON
	if err := json.Unmarshal(body, &api); err != nil {
		t.Fatal(err)
	}
	if api.InstanceID == nil || *api.InstanceID != "status-a" || api.LeaseTTL != "3s" || api.RenewEvery != "500ms" ||
		api.ConfigHash == "" || api.ConfigHash != api.Members[0].ConfigHash || len(api.Drift) != 0 {
		t.Fatalf("GET /api/cluster: %s", body)
	}

	for _, tc := range []struct {
		name, cfg  string
		instanceID *string
		leaseTTL   string
		renewEvery string
		sameHash   bool
		drift      []string
	}{
		{name: "the member's file", cfg: member, instanceID: api.InstanceID, leaseTTL: "3s", renewEvery: "500ms", sameHash: true, drift: []string{}},
		{name: "another file", cfg: other, leaseTTL: "10s", renewEvery: "3.333333333s", drift: []string{"audit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "cluster", "status", "--json", "-c", tc.cfg)
			if code != 0 {
				t.Fatalf("cluster status --json: code %d, stdout %q, stderr %q", code, out, errOut)
			}
			var got clusterStatusJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("cluster status --json printed no JSON: %v\n%s", err, out)
			}
			switch {
			case (got.InstanceID == nil) != (tc.instanceID == nil) || got.InstanceID != nil && *got.InstanceID != *tc.instanceID:
				t.Errorf("instance_id %v, want %v:\n%s", deref(got.InstanceID), deref(tc.instanceID), out)
			case got.LeaseTTL != tc.leaseTTL || got.RenewEvery != tc.renewEvery:
				t.Errorf("lease_ttl %q, renew_every %q; want %q, %q:\n%s", got.LeaseTTL, got.RenewEvery, tc.leaseTTL, tc.renewEvery, out)
			case got.ConfigHash == "" || (got.ConfigHash == api.ConfigHash) != tc.sameHash:
				t.Errorf("config_hash %q, the member's %q; want them equal: %v:\n%s", got.ConfigHash, api.ConfigHash, tc.sameHash, out)
			case !slices.Equal(got.Drift, tc.drift) || got.Drift == nil:
				t.Errorf("drift %v, want %v:\n%s", got.Drift, tc.drift, out)
			case len(got.Members) != 1 || got.Members[0].ID != "status-a" || got.Members[0].ConfigHash != api.ConfigHash:
				t.Errorf("members %+v, want the member status-a with config_hash %s:\n%s", got.Members, api.ConfigHash, out)
			case len(got.Leases) != len(api.Leases):
				t.Errorf("leases %+v, want those of GET /api/cluster, %+v", got.Leases, api.Leases)
			}
		})
	}
}

// deref shows a string that may be absent.
func deref(s *string) string {
	if s == nil {
		return "(absent)"
	}
	return *s
}
