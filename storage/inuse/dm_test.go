package inuse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/dm"
	"github.com/strata-vm/strata/storage/inuse"
)

// The host has no device-mapper (../shared/TESTING.md): these tests run
// the DeviceMapper source on real loop devices, with the loop major in
// the place of device-mapper's and the kernel's open count given by
// Info, the one thing faked. strata's own opens, the links, sysfs and
// the checker are real. TestRealLVMInAGuest (storage/lvm) runs it on
// real LVs.

// loopDevice attaches a fresh image to a loop device.
func loopDevice(t *testing.T) string {
	t.Helper()
	need(t, "losetup")
	out, err := exec.Command("losetup", "-f", "--show", image(t)).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func rdev(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(st.Sys().(*syscall.Stat_t).Rdev)
}

// counted is a DeviceMapper that takes loop devices for dm devices and
// reads their open count from *count.
func counted(count *int, asked *int) inuse.DeviceMapper {
	return inuse.DeviceMapper{Major: 7, Settle: time.Millisecond, Info: func(q dm.Query) (dm.Device, error) {
		*asked++
		return dm.Device{Dev: q.Dev, OpenCount: *count}, nil
	}}
}

func holdersOf(t *testing.T, c *inuse.Checker, path string) []inuse.Holder {
	t.Helper()
	hs, err := c.Holders(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// An open the kernel counts beyond strata's own is a holder strata cannot
// name; strata's own opens (its hold, a dup of it) are not, nor is an
// O_PATH descriptor, which opens no device.
func TestOpenCountBeyondStrataOwnIsAHolder(t *testing.T) {
	dev := loopDevice(t)
	count, asked := 0, 0
	c := &inuse.Checker{First: []inuse.Source{counted(&count, &asked)}}
	if hs := holdersOf(t, c, dev); len(hs) != 0 {
		t.Fatalf("a device nobody opens: %v", hs)
	}
	count = 1
	hs := holdersOf(t, c, dev)
	if len(hs) != 1 || hs[0].PID != 0 || !strings.Contains(hs[0].String(), "device-mapper counts 1 open of the device that strata cannot name") {
		t.Fatalf("one open strata does not make: %v", hs)
	}
	// strata's own: two opens, one dup'd, and an O_PATH descriptor.
	var fds []int
	for _, flags := range []int{unix.O_RDONLY, unix.O_RDONLY, unix.O_PATH} {
		fd, err := unix.Open(dev, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	dup, err := unix.Dup(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	fds = append(fds, dup)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	count = 2
	if hs := holdersOf(t, c, dev); len(hs) != 0 {
		t.Fatalf("strata's own two opens (one dup'd, and an O_PATH descriptor) counted as a holder: %v", hs)
	}
	count = 4
	if hs := holdersOf(t, c, dev); len(hs) != 1 || !strings.Contains(hs[0].How, "counts 2 opens") {
		t.Fatalf("two opens beyond strata's two: %v", hs)
	}
	// Under strata's hold the hold's own open is strata's too.
	count = 3
	_, release, err := c.HoldAll(context.Background(), []inuse.Image{{What: "x", Path: dev}})
	if err != nil {
		t.Fatalf("strata's hold and two opens of its own, counted 3: %v", err)
	}
	release()
}

// An open that lasts milliseconds (udev's blkid, an lvs scan) is waited
// out; one that stays is reported.
func TestBriefOpenIsWaitedOut(t *testing.T) {
	dev := loopDevice(t)
	asked := 0
	s := inuse.DeviceMapper{Major: 7, Settle: time.Millisecond, Info: func(q dm.Query) (dm.Device, error) {
		asked++
		if asked == 1 {
			return dm.Device{Dev: q.Dev, OpenCount: 1}, nil
		}
		return dm.Device{Dev: q.Dev}, nil
	}}
	if hs := holdersOf(t, &inuse.Checker{First: []inuse.Source{s}}, dev); len(hs) != 0 || asked != 2 {
		t.Fatalf("an open gone on the second look: %v (asked %d times)", hs, asked)
	}
}

// /dev/VG/LV is a link: followed to its device (and only by this
// source), while a link to a file and a plain file cost no question to
// the kernel.
func TestLinkToTheDeviceIsFollowed(t *testing.T) {
	dev := loopDevice(t)
	dir := t.TempDir()
	link := filepath.Join(dir, "lv")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	count, asked := 1, 0
	c := &inuse.Checker{First: []inuse.Source{counted(&count, &asked)}}
	if hs := holdersOf(t, c, link); len(hs) != 1 || asked == 0 {
		t.Fatalf("a link to a device opened once: %v", hs)
	}
	file := image(t)
	fileLink := filepath.Join(dir, "file")
	if err := os.Symlink(file, fileLink); err != nil {
		t.Fatal(err)
	}
	asked = 0
	for _, p := range []string{file, fileLink, dir, "/dev/null", filepath.Join(dir, "missing")} {
		if hs := holdersOf(t, c, p); len(hs) != 0 {
			t.Fatalf("%s: %v", p, hs)
		}
	}
	if asked != 0 {
		t.Fatalf("device-mapper was asked %d times about files", asked)
	}
}

// The dm devices stacked on the device (a kpartx map, dm-crypt) are part
// of its open count and are named.
func TestStackedDevicesAreNamed(t *testing.T) {
	dev := loopDevice(t)
	num := rdev(t, dev)
	sys := t.TempDir()
	holder := filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(num), unix.Minor(num)), "holders", "dm-5", "dm")
	if err := os.MkdirAll(holder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(holder, "name"), []byte("vg-lvp1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	count, asked := 1, 0
	s := counted(&count, &asked)
	s.Sys = sys
	hs := holdersOf(t, &inuse.Checker{First: []inuse.Source{s}}, dev)
	if len(hs) != 1 || !strings.HasPrefix(hs[0].String(), `device-mapper device vg-lvp1: stacked`) {
		t.Fatalf("a kpartx map on the device: %v", hs)
	}
	// Another open besides: the named holder says what to stop first.
	count = 2
	if hs := holdersOf(t, &inuse.Checker{First: []inuse.Source{s}}, dev); len(hs) != 1 || hs[0].Domain != "vg-lvp1" {
		t.Fatalf("a stacked device and another open: %v", hs)
	}
}

// When another source names a holder (here a mount, which BlockClaim
// finds), the count of opens strata cannot name is left out: the error
// names what to stop.
func TestNamedHolderReplacesTheCount(t *testing.T) {
	need(t, "mkfs.ext4")
	dev := loopDevice(t)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	count, asked := 1, 0
	c := &inuse.Checker{First: []inuse.Source{counted(&count, &asked)}, Sources: []inuse.Source{inuse.BlockClaim{}}}
	err := c.Check(context.Background(), `volume "lv"`, dev)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "claimed") || strings.Contains(err.Error(), "device-mapper counts") {
		t.Fatalf("a mounted device: %v", err)
	}
	// An LV is checked at its /dev/VG/LV link (where only the count is
	// seen) and at its device node: the refusal names the mount.
	link := filepath.Join(t.TempDir(), "lv")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	err = c.CheckAll(context.Background(), []inuse.Image{{What: `volume "lv"`, Path: link}, {What: `volume "lv"`, Path: dev}})
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "("+dev+")") || !strings.Contains(err.Error(), "claimed") {
		t.Fatalf("a mounted device checked at a link to it and at its node: %v", err)
	}
	if err := c.CheckAll(context.Background(), []inuse.Image{{What: `volume "lv"`, Path: link}}); !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "device-mapper counts 1 open") {
		t.Fatalf("a mounted device checked at a link to it: %v", err)
	}
}

// A loop device over a block device (losetup on an LV) holds it, named.
func TestLoopDeviceOverABlockDeviceHoldsIt(t *testing.T) {
	lower := loopDevice(t)
	out, err := exec.Command("losetup", "-f", "--show", lower).Output()
	if err != nil {
		t.Skipf("no second loop device here: %v", err)
	}
	upper := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", upper).Run()
	err = inuse.Default().Check(context.Background(), "x", lower)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "loop device "+upper) {
		t.Fatalf("%s backing %s: %v", lower, upper, err)
	}
}

// Without device-mapper (this host), a block device is answered "not a
// dm device" from its major number: no question to the kernel.
func TestNoDeviceMapperAnswersAtOnce(t *testing.T) {
	dev := loopDevice(t)
	if _, err := os.Stat(dm.Control); err == nil {
		t.Skip("this host has device-mapper")
	}
	asked := 0
	s := inuse.DeviceMapper{Info: func(dm.Query) (dm.Device, error) { asked++; return dm.Device{OpenCount: 9}, nil }}
	if hs := holdersOf(t, &inuse.Checker{First: []inuse.Source{s}}, dev); len(hs) != 0 || asked != 0 {
		t.Fatalf("a loop device on a host without device-mapper: %v, asked %d times", hs, asked)
	}
}

// The check is on every command's path: on a plain file the source adds
// nothing but a look at the mode the checker's Lstat already read.
func BenchmarkDeviceMapperOnAFile(b *testing.B) {
	p := filepath.Join(b.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		c    *inuse.Checker
	}{
		{"no-source", &inuse.Checker{}},
		{"without", &inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}},
		{"with", &inuse.Checker{First: []inuse.Source{inuse.DeviceMapper{}}, Sources: []inuse.Source{inuse.Processes{}}}},
		{"source-alone", &inuse.Checker{First: []inuse.Source{inuse.DeviceMapper{}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.c.Holders(context.Background(), p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
