package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logFlags are the --log-format and --log-level flags; empty values take the
// configuration's log section.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "", "log format: text or json (default: the config's log.format, else text)")
	fs.StringVar(&l.level, "log-level", "", "log level: debug, info, warn or error (default: the config's log.level, else info)")
}

// registerNoConfig registers the flags for a command that reads no
// configuration (devdb): empty values mean text and level.
func (l *logFlags) registerNoConfig(fs *flag.FlagSet, level string) {
	fs.StringVar(&l.format, "log-format", "", "log format: text or json (default: text)")
	fs.StringVar(&l.level, "log-level", "", "log level: debug, info, warn or error (default: "+level+")")
}

// newLogger returns a slog logger writing to w. Empty values mean text and
// info.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		lv = slog.LevelInfo
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("unknown log format %q (want text or json)", format)
	}
}

// pick returns the first non-empty value.
func pick(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
