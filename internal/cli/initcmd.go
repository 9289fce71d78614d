package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/changehook/changehook/internal/demo"
)

// initCommand writes a commented starter configuration: the demo's
// triggers.yaml, every field explained. It never overwrites a file.
func initCommand(_ context.Context, args []string, env Env) int {
	fset := newFlagSet(env, "init", "init [-c FILE]",
		"changehook init                      # writes ./triggers.yaml",
		"changehook init -c shop.yaml         # writes shop.yaml",
		"",
		"The file is the commented demo configuration: run it with 'changehook dev -c FILE --demo',",
		"then edit the trigger (database, collection, match, webhook.url) for your own data and set",
		"CHANGEHOOK_DEMO_SECRET to a signing key of your own (the file's fallback key is public).")
	path := configFlag(fset)
	if code, done := parseFlags(fset, args, env); done {
		return code
	}
	if fset.NArg() > 0 {
		return usageError(env, fset, "unexpected argument %q (the file goes after -c)", fset.Arg(0))
	}
	f, err := os.OpenFile(*path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fail(env, "init", fmt.Errorf("%s already exists; not overwriting it (choose another file with -c)", *path))
	}
	if err != nil {
		return fail(env, "init", createError(*path, err))
	}
	if _, err := f.Write(demo.Config); err != nil {
		f.Close()
		return fail(env, "init", fmt.Errorf("write %s: %w", *path, err))
	}
	if err := f.Close(); err != nil {
		return fail(env, "init", fmt.Errorf("write %s: %w", *path, err))
	}
	fmt.Fprintf(env.Stdout, "wrote %s: a commented starter configuration with one trigger (low_stock).\n", *path)
	fmt.Fprintf(env.Stdout, "Next: changehook validate -c %s, then changehook dev -c %s --demo\n", *path, *path)
	fmt.Fprintf(env.Stdout, "For real use: set CHANGEHOOK_DEMO_SECRET to a signing key of your own (echo whsec_$(openssl rand -base64 32)); the file's fallback key is public.\n")
	return ExitOK
}

// createError explains why the file path could not be created (err,
// os.OpenFile's): a missing directory is named as such, and the path is
// said once, not again by the *fs.PathError.
func createError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &missingDirError{path: path, dir: filepath.Dir(path), err: err}
	}
	return fmt.Errorf("create %s: %w", path, err)
}

// missingDirError says that a file cannot be created because its
// directory does not exist; it wraps the system's error.
type missingDirError struct {
	path, dir string
	err       error
}

func (e *missingDirError) Error() string {
	return fmt.Sprintf("create %s: directory %s does not exist; create it first (mkdir -p %s) or choose another file with -c", e.path, e.dir, e.dir)
}

func (e *missingDirError) Unwrap() error { return e.err }
