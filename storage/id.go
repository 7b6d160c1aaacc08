package storage

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a fresh stable ID (16 hex digits) for a volume, guest,
// golden image or medium: files and devices are named by it, never by
// the name users give.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes instead)
	return hex.EncodeToString(b)
}
