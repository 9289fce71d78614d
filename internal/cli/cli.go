// Package cli implements the changehook subcommands: run, dev, devdb,
// validate, test, dlq, checkpoints and version.
//
// Every subcommand is a function of its arguments and an Env (output streams,
// environment lookup, version), so that it can be tested without a process.
// cmd/changehook only installs the signal handling and exits with the code
// Run returns.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/internal/version"
	"github.com/changehook/changehook/triggers"
)

// Exit codes returned by Run.
const (
	// ExitOK: the command succeeded.
	ExitOK = 0
	// ExitFailure: the command failed, or validate found problems.
	ExitFailure = 1
	// ExitUsage: the command line was wrong (unknown command or flag,
	// missing argument).
	ExitUsage = 2
)

// DefaultConfigFile is the configuration file used when -c is not given.
const DefaultConfigFile = "triggers.yaml"

// Env is the process environment a command runs in.
type Env struct {
	// Stdin is read by commands given "-" as a file (default: empty).
	Stdin io.Reader
	// Stdout receives the command's results.
	Stdout io.Writer
	// Stderr receives logs, warnings and error messages.
	Stderr io.Writer
	// LookupEnv resolves ${VAR} in configuration files (os.LookupEnv in
	// production; nil means no variable is set).
	LookupEnv triggers.LookupEnv
	// Version is the changehook version ("dev" when empty).
	Version string
	// RuntimeDir holds the file in which a running dev records its devdb
	// (default: $XDG_RUNTIME_DIR, else changehook-<uid> in the system's
	// temporary directory). It must be writable by this user only.
	RuntimeDir string
	// WatchReload, when set, subscribes run and dev to reload requests
	// (SIGHUP in OSEnv) while they serve: the channel receives one value
	// per request until stop is called. nil: no reload requests.
	WatchReload func() (requests <-chan struct{}, stop func())
}

// OSEnv returns the Env of the current process: os.Stdin, os.Stdout, os.Stderr,
// os.LookupEnv, ver resolved by version.Resolve (the module version
// recorded in the binary when ver is "" or "dev") and SIGHUP as the reload
// request.
func OSEnv(ver string) Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, LookupEnv: os.LookupEnv, Version: version.Resolve(ver),
		WatchReload: osWatchReload}
}

func (e Env) stdin() io.Reader {
	if e.Stdin == nil {
		return strings.NewReader("")
	}
	return e.Stdin
}

func (e Env) withDefaults() Env {
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	if e.LookupEnv == nil {
		e.LookupEnv = func(string) (string, bool) { return "", false }
	}
	if e.Version == "" {
		e.Version = version.Dev
	}
	return e
}

// commandFunc runs a (sub)command with its arguments and returns the exit
// code.
type commandFunc func(ctx context.Context, args []string, env Env) int

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     commandFunc
}

// runSubcommand runs the subcommand of "changehook cmd" named by args[0]
// with the rest of args, and returns its exit code. With no argument it
// prints usage on stderr (ExitUsage); with -h, -help, --help or help, on
// stdout (ExitOK). An unknown name is reported on stderr, followed by usage
// (ExitUsage).
func runSubcommand(ctx context.Context, cmd, usage string, subs map[string]commandFunc, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	}
	if run, ok := subs[args[0]]; ok {
		return run(ctx, args[1:], env)
	}
	fmt.Fprintf(env.Stderr, "changehook %s: unknown subcommand %q%s\n\n%s", cmd, args[0], didYouMean(args[0], slices.Collect(maps.Keys(subs))), usage)
	return ExitUsage
}

func commands() []command {
	return []command{
		{"run", "run every enabled trigger against a MongoDB deployment", runCommand},
		{"dev", "run the triggers against an embedded devdb (--demo: the inventory demo)", devCommand},
		{"devdb", "run the embedded MongoDB-compatible devdb server in the foreground", devdbCommand},
		{"init", "write a commented starter triggers.yaml (never overwrites)", initCommand},
		{"validate", "check a configuration file and report every problem", validateCommand},
		{"test", "show what a trigger would do with an event (match, payload, headers)", testCommand},
		{"capture", "record a trigger's real change events as Extended JSON lines (never delivers)", captureCommand},
		{"dlq", "list, show, replay or purge dead letters", dlqCommand},
		{"history", "show the delivery history: every attempt, filtered by trigger, document, webhook-id, time", historyCommand},
		{"checkpoints", "list checkpoints, or reset one (the way out of history lost)", checkpointsCommand},
		{"cluster", "show the members of a cluster of run processes and who holds which trigger", clusterCommand},
		{"pause", "hold a trigger without losing events (applied by the running changehook)", pauseCommand},
		{"resume", "resume a paused trigger from its checkpoint, now or a time", resumeCommand},
		{"skip", "dead-letter the event a stuck trigger is holding on", skipCommand},
		{"redeliver", "rewind a running trigger to a time and deliver everything since again", redeliverCommand},
		{"version", "print the changehook version", versionCommand},
	}
}

// Run runs the changehook command line args (without the program name) and
// returns the process exit code: ExitOK, ExitFailure or ExitUsage. ctx is
// canceled on SIGINT/SIGTERM by the caller; long-running commands (run, dev,
// devdb) then shut down gracefully and return ExitOK.
func Run(ctx context.Context, args []string, env Env) int {
	env = env.withDefaults()
	if len(args) == 0 {
		mainUsage(env.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		mainUsage(env.Stdout)
		return ExitOK
	case "-v", "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], env)
		}
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	fmt.Fprintf(env.Stderr, "changehook: unknown command %q%s\n\n", name, didYouMean(name, names))
	mainUsage(env.Stderr)
	return ExitUsage
}

func mainUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("changehook: webhook triggers for MongoDB change streams.\n\n")
	b.WriteString("Usage:\n  changehook <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nExamples:\n")
	b.WriteString("  changehook dev --demo                 # try it: embedded database, demo receiver and writer\n")
	b.WriteString("  changehook validate -c triggers.yaml\n")
	b.WriteString("  changehook run -c triggers.yaml\n")
	b.WriteString("\nRun 'changehook <command> --help' for the flags of a command.\n")
	io.WriteString(w, b.String())
}

// newFlagSet returns a FlagSet for a subcommand whose --help prints usage,
// the flags and the examples on stdout.
func newFlagSet(env Env, name, usage string, examples ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("changehook "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  changehook %s\n", usage)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
		if len(examples) > 0 {
			fmt.Fprintln(w, "\nExamples:")
			for _, e := range examples {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
	}
	return fs
}

// parseFlags parses args with fs. It returns done=true with the exit code
// when the command must stop: ExitOK after --help (usage printed on stdout),
// ExitUsage on a bad flag (message and usage on stderr).
func parseFlags(fs *flag.FlagSet, args []string, env Env) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(env.Stdout)
			fs.Usage()
			return ExitOK, true
		}
	}
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, true
		}
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			var flags []string
			fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
			if s := triggers.Suggest(name, flags); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", flagName(s))
			}
		}
		fmt.Fprintf(env.Stderr, "%s: %s\n", fs.Name(), msg)
		fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", fs.Name())
		return ExitUsage, true
	}
	return 0, false
}

// didYouMean is " (did you mean "x"?)" when triggers.Suggest finds name's
// likely intended one among names, or "".
func didYouMean(name string, names []string) string {
	slices.Sort(names)
	if s := triggers.Suggest(name, names); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// flagName is how the usage text spells flag name: -c, --config.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// usageError prints a usage problem and the short usage line of fs.
func usageError(env Env, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(env.Stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", fs.Name())
	return ExitUsage
}

// fail prints an error for a person and returns ExitFailure.
func fail(env Env, cmd string, err error) int {
	// An error may quote a server's or an endpoint's text.
	fmt.Fprintf(env.Stderr, "changehook %s: %s\n", cmd, textcut.Terminal(err.Error()))
	return ExitFailure
}

// configFlag registers -c and --config on fs.
func configFlag(fs *flag.FlagSet) *string {
	p := new(string)
	fs.StringVar(p, "c", DefaultConfigFile, "configuration `file`")
	fs.StringVar(p, "config", DefaultConfigFile, "configuration `file` (same as -c)")
	return p
}

// loadConfig loads and validates the configuration file.
func loadConfig(path string, env Env) (*triggers.Config, error) {
	cfg, err := triggers.Load(path, env.LookupEnv)
	if err != nil {
		return nil, configError(path, err)
	}
	return cfg, nil
}

// devOptions are the options dev reads its configuration with: it replaces
// mongodb.uri with its devdb's, so the file's is not read (its ${VAR}s need
// not be set). test, which never connects, reads the file with them too.
var devOptions = triggers.Options{IgnoreMongoURI: true}

// configError explains an error of triggers.Load(path): a missing file
// with the ways to get one, an invalid one with the command that lists
// every problem.
func configError(path string, err error) error {
	var ve *triggers.ValidationError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("invalid configuration (run 'changehook validate -c %s'):\n%w", path, err)
	case errors.Is(err, os.ErrNotExist):
		return missingConfig(path, false)
	}
	return err // os.ReadFile's error names the file
}

// missingConfig is the error for a configuration file that does not exist:
// it says where it was looked for and what to do. noDev adds that no
// 'changehook dev' is running, for a command that would have used one's.
func missingConfig(path string, noDev bool) error {
	where := path
	if abs, err := filepath.Abs(path); err == nil {
		where = abs
	}
	dev := ""
	if noDev {
		dev = ", and no 'changehook dev' is running (whose configuration this command uses when there is no file)"
	}
	starter := "'changehook init'"
	if path != DefaultConfigFile {
		starter = "'changehook init -c " + path + "'"
	}
	return fmt.Errorf("configuration file %s does not exist%s: give yours with -c FILE, write a commented starter file with %s, or try 'changehook dev --demo' (it needs no file)", where, dev, starter)
}

func versionCommand(_ context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "version", "version", "changehook version")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, "unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintf(env.Stdout, "changehook %s\n", env.Version)
	return ExitOK
}
