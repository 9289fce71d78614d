package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/changehook/changehook/triggers"
)

func validateCommand(_ context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "validate", "validate [-c FILE] [--events FILE]",
		"changehook validate                     # checks ./triggers.yaml",
		"changehook validate -c prod.yaml        # exit 1 and FILE:LINE:COL: message for every problem",
		"changehook validate --events events.jsonl   # also run every trigger on recorded events (changehook capture)",
		"",
		"With --events, each line of the file (a change event in Extended JSON) goes through every",
		"trigger's namespace, match, project and payload; one line per event and trigger says whether it",
		"matched and whether its payload was built. Exit 1 when a payload (or pipeline) fails on one, or",
		"when a line is not a change event (an operationType and an _id, its resume token: not the document).",
		"",
		"Without -c and without ./triggers.yaml, the configuration of a running 'changehook dev' is checked.")
	path := configFlag(fs)
	events := fs.String("events", "", "recorded change events `file`, one Extended JSON document a line (\"-\": standard input)")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, "unexpected argument %q (the file goes after -c)", fs.Arg(0))
	}
	source := *path
	var cfg *triggers.Config
	var err error
	rt, useDev, devWanted := fileConfigDev(fs, *path, env)
	if useDev {
		source = rt.Config
		cfg, err = fileConfigOfDev(rt, *path, env, triggers.Options{})
	} else {
		cfg, err = triggers.Load(*path, env.LookupEnv)
	}
	if err != nil {
		var ve *triggers.ValidationError
		if !errors.As(err, &ve) {
			if devWanted && !useDev && errors.Is(err, os.ErrNotExist) {
				return fail(env, "validate", missingConfig(*path, true))
			}
			return fail(env, "validate", configError(source, err))
		}
		for _, p := range ve.Problems {
			fmt.Fprintln(env.Stdout, p.String())
		}
		fmt.Fprintf(env.Stderr, "%s: %s\n", source, plural(len(ve.Problems), "problem"))
		return ExitFailure
	}
	writeSummary(env, cfg)
	if *events != "" {
		return validateEvents(cfg, *events, env)
	}
	return ExitOK
}

// writeSummary prints a valid configuration's triggers, secrets masked,
// and every warning as "warning: FILE:LINE:COL: message": those about the
// file under its first line, those about one trigger under the trigger.
func writeSummary(env Env, cfg *triggers.Config) {
	enabled := 0
	for _, t := range cfg.Triggers {
		if t.Enabled {
			enabled++
		}
	}
	fmt.Fprintf(env.Stdout, "%s is valid: %s (%d enabled)\n", cfg.Path, plural(len(cfg.Triggers), "trigger"), enabled)
	for _, w := range cfg.Warnings {
		if w.Trigger == "" {
			fmt.Fprintf(env.Stdout, "  warning: %s\n", w)
		}
	}
	for _, t := range cfg.Triggers {
		ns := t.Namespace()
		if ns == "" {
			ns = "whole deployment"
		}
		state := ""
		if !t.Enabled {
			state = " (disabled)"
		}
		fmt.Fprintf(env.Stdout, "  %s%s: %s [%s] -> %s %s, ordering %s\n", t.Name, state, ns,
			strings.Join(t.Operations, ", "), t.Webhook.Method, t.Webhook.RedactedURL(), t.Ordering)
		for _, w := range cfg.Warnings {
			if w.Trigger == t.Name {
				fmt.Fprintf(env.Stdout, "    warning: %s\n", w)
			}
		}
		if ops := t.UnevaluatedMatchOperators(); len(ops) > 0 {
			fmt.Fprintf(env.Stdout, "    note: match uses %s, which MongoDB evaluates but changehook's local evaluator does not: "+
				"test and validate --events cannot tell whether an event matches, and dev (devdb) cannot run this trigger\n", strings.Join(ops, ", "))
		}
		if t.StartAt.After(time.Now()) {
			fmt.Fprintf(env.Stdout, "    note: start_at %s is in the future: without a checkpoint the trigger shows waiting and reads nothing until the server's clock reaches it\n",
				t.StartAt.Time.UTC().Format(time.RFC3339))
		}
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
