//go:build !unix

package cli

import "os"

// openDescriptorPath reports false: paths such as /dev/stdout are unix's.
func openDescriptorPath(string) (*os.File, bool, error) { return nil, false, nil }
