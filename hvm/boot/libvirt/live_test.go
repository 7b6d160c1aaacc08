package libvirt_test

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage/storagetest"
)

// A live full copy through libvirt gets its target as a descriptor
// (add-fd through virsh --pass-fds, libvirt 8.2+): QEMU, running as
// libvirt-qemu, writes the point-in-time copy into a root-only file in a
// root-only directory it could never open by path, and the file is never
// chowned to it.
func TestLibvirtLiveCopyTargetIsPassedAsADescriptor(t *testing.T) {
	e := newEnv(t)
	storagetest.NeedTool(t, "virsh")
	g := e.guest()
	c := ctx(t)
	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	mon, err := e.d.Monitor(c, g)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	if _, ok := mon.(boot.FileMonitor); !ok {
		t.Fatal("the monitor of libvirt 8.2+ with virsh installed does not pass descriptors")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "copy.raw")
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(bootSector()))); err != nil {
		t.Fatal(err)
	}
	img := g.Def.Disks[0].Path
	res, err := boot.TakeLive(c, mon, boot.LiveRequest{ID: "fdcopy", Disks: []boot.LiveDisk{{Path: img, Method: boot.LiveBackup, Target: target, File: f}}})
	f.Close()
	if err != nil {
		t.Fatalf("a live copy through a passed descriptor: %v", err)
	}
	t.Logf("pause %s", res.Pause)
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, bootSector()) {
		t.Fatalf("the copy differs from the guest's disk (%v)", err)
	}
	if uid, mode := owner(t, target); uid != 0 || mode != 0o600 {
		t.Fatalf("the copy is uid %d mode %o, want root 0600", uid, mode)
	}
	if _, mode := owner(t, dir); mode != 0o700 {
		t.Fatalf("the copy's directory is mode %o, want 0700", mode)
	}
	qu, err := user.Lookup(storagetest.LibvirtQEMUUser)
	if err != nil {
		t.Fatal(err)
	}
	if err := asUser(t, qu, "cat", target); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("libvirt-qemu reaches the copy by path: %v", err)
	}
	// Nothing of the point is left in QEMU: its descriptor set is gone.
	raw, err := mon.Execute(c, "query-fdsets", nil)
	if err != nil || strings.Contains(string(raw), "strata-bk-fdcopy") {
		t.Fatalf("fd sets after the point: %s %v", raw, err)
	}
}
