package inuse

import (
	"os"
	"path/filepath"
	"testing"
)

// /proc/devices as a Debian 12 kernel with dm-mod loaded prints it:
// device-mapper's major is the block device's, not a character device's.
func TestDeviceMapperMajorIsReadFromProcDevices(t *testing.T) {
	const devices = "Character devices:\n  1 mem\n  4 /dev/vc/0\n 10 misc\n254 device-mapper\n\nBlock devices:\n  7 loop\n  8 sd\n  9 md\n253 device-mapper\n254 mdp\n259 blkext\n"
	p := filepath.Join(t.TempDir(), "devices")
	if err := os.WriteFile(p, []byte(devices), 0o644); err != nil {
		t.Fatal(err)
	}
	if m := readDMMajor(p); m != 253 {
		t.Fatalf("device-mapper's block major read as %d", m)
	}
	without := "Character devices:\n  1 mem\n\nBlock devices:\n  7 loop\n  8 sd\n"
	if err := os.WriteFile(p, []byte(without), 0o644); err != nil {
		t.Fatal(err)
	}
	if m := readDMMajor(p); m != 0 {
		t.Fatalf("no device-mapper read as major %d", m)
	}
}
