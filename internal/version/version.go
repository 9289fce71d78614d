// Package version is the one home of changehook's version string and the
// User-Agent built from it.
package version

import (
	"runtime/debug"
	"sync"
)

// Dev is the version of a build that carries no version: neither set with
// -ldflags at build time nor recorded as a module version.
const Dev = "dev"

// module is the main module's version from the binary's build information,
// "" when none is recorded (a plain `go build` or `go run` in the
// repository reports "(devel)"). The build information is read once.
var module = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return ""
})

// Resolve returns v when it names a version; when v is "" or Dev it returns
// the module version recorded in the binary (`go install ...@v1.2.3`), or
// Dev when none is recorded.
func Resolve(v string) string {
	if v != "" && v != Dev {
		return v
	}
	if m := module(); m != "" {
		return m
	}
	return Dev
}

// UserAgent returns the User-Agent of webhook requests for version v:
// "changehook/" + Resolve(v).
func UserAgent(v string) string { return "changehook/" + Resolve(v) }
