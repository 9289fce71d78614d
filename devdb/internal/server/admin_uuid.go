package server

import (
	"crypto/rand"
	"fmt"
)

// admNewUUID returns a random (version 4) UUID.
func admNewUUID() ([]byte, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate UUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b, nil
}
