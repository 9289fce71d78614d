package demo

import _ "embed"

// Config is the demo configuration, the repository's commented
// triggers.yaml (a test keeps the two identical), embedded so that
// `changehook dev --demo` works from any directory.
//
//go:embed triggers.yaml
var Config []byte

// ConfigName is the name the embedded Config is reported under in
// messages (validation errors, dev's banner).
const ConfigName = "(built-in demo triggers.yaml)"
