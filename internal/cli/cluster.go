package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/changehook/changehook/cluster"
)

func clusterCommand(ctx context.Context, args []string, env Env) int {
	const usage = `Usage:
  changehook cluster status [-c FILE] [--json]

Several "changehook run" processes on the same configuration and state
database form a cluster: each registers in <state.database>.members and runs
a trigger only while it holds the trigger's lease in <state.database>.leases.
"cluster status" shows the live members (id, host, pid, version, config hash,
heartbeat age) and every lease (owner, epoch, time left by the state
database's clock). Members whose config hash differs from the others run
different trigger definitions: finish the rolling update. With --json the
instance's fields (instance_id, lease_ttl, renew_every, config_hash, drift)
are those of a member run with this configuration, so a config_hash unlike
the members' says this file is not what they run.

Examples:
  changehook cluster status
  changehook cluster status --json
`
	return runSubcommand(ctx, "cluster", usage, map[string]commandFunc{
		"status": clusterStatus,
	}, args, env)
}

func clusterStatus(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "cluster status", "cluster status [-c FILE] [--json]", "changehook cluster status")
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON (the shape of GET /api/cluster, as a member run with this configuration would answer it)")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	sc, err := openStateToSend(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "cluster status", err)
	}
	defer sc.close(ctx)
	// No member: the instance's fields are those of a member run with
	// this configuration.
	st, err := cluster.ReadConfigStatus(ctx, sc.store, sc.cfg)
	if err != nil {
		return fail(env, "cluster status", err)
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fail(env, "cluster status", err)
		}
		return ExitOK
	}
	hashes := map[string]int{}
	for _, m := range st.Members {
		hashes[m.ConfigHash]++
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBER\tHOST\tPID\tVERSION\tCONFIG\tEXPIRES IN\tNOTE\n")
	for _, m := range st.Members {
		note := ""
		if len(hashes) > 1 {
			note = "config differs between members"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.ID, m.Host, m.PID, m.Version, m.ConfigHash, msText(m.RemainingMS), note)
	}
	if len(st.Members) == 0 {
		fmt.Fprintf(tw, "(no live member)\t\t\t\t\t\t\n")
	}
	_ = tw.Flush()
	if st.Note != "" {
		fmt.Fprintf(env.Stdout, "note: %s\n", st.Note)
	}
	fmt.Fprintln(env.Stdout)
	tw = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "LEASE\tOWNER\tEPOCH\tEXPIRES IN\n")
	for _, l := range st.Leases {
		owner := l.Owner
		if owner == "" {
			owner = "(released)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.Key, owner, l.Epoch, msText(l.RemainingMS))
	}
	if len(st.Leases) == 0 {
		fmt.Fprintf(tw, "(no lease)\t\t\t\n")
	}
	_ = tw.Flush()
	return ExitOK
}

// msText shows a remaining time in milliseconds ("expired" when not
// positive).
func msText(ms int64) string {
	if ms <= 0 {
		return "expired"
	}
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}
