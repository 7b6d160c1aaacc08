package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Deleting an imported block device (a loop device here; an LV in real
// use) forgets it and says its device is kept, without the hint to use
// --purge, which strata refuses for a block device (exit 8).
func TestVolumeDeleteOfABlockDeviceSaysItIsKeptWithoutAPurgeHint(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	back := filepath.Join(t.TempDir(), "back.img")
	if err := os.WriteFile(back, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(sh(t, "losetup", "-f", "--show", back))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	ok(t, h, "volume", "import", dev, "--name", "blk")
	if r := runIn(t, h, nil, "volume", "delete", "blk", "--purge"); r.code != 8 {
		t.Fatalf("delete --purge of a block device: exit %d, stderr %q; want 8", r.code, r.stderr)
	}
	r := runIn(t, h, nil, "volume", "delete", "blk")
	if r.code != 0 || !strings.Contains(r.stderr, "block device is kept") || strings.Contains(r.stderr, "--purge") {
		t.Errorf("delete of a block device: exit %d, stderr %q; want it kept, with no --purge hint", r.code, r.stderr)
	}
	if _, err := os.Stat(dev); err != nil {
		t.Errorf("the device: %v", err)
	}
}
