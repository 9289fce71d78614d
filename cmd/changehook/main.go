// Command changehook runs webhook triggers for MongoDB change streams.
//
// All logic lives in package cli; main only runs it as the process (see
// cli.Main: the first SIGINT/SIGTERM stops gracefully, a second one exits at
// once after removing what must not outlive the process) and exits with its
// code.
package main

import (
	"os"

	"github.com/changehook/changehook/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.OSEnv(version)))
}
