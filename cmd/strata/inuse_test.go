package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"
)

// A guest started outside strata (a QEMU strata did not start) holds its
// disks: every operation that would write, replace, truncate or remove
// one is refused with the holder named, and nothing changes; once the
// guest is gone, the same operations work.
func TestDisksInUseAreNeverChanged(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	sys := newDisk(t, home, "sys", "raw", "")
	data := newDisk(t, home, "data", "qcow2", "")
	spare := newDisk(t, home, "spare", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "data")
	sys.write(t, 0x01)
	data.write(t, 0x01)
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "golden", "create", "base", "--volume", "spare")
	var clone volumeJSON
	jsonOf(t, home, &clone, "clone", "base", "scratch")
	jsonOf(t, home, &clone, "volume", "info", "scratch")
	sys.write(t, 0x02)
	data.write(t, 0x02)

	q := storagetest.RunningQEMU(t, "guest=web", drive(sys), drive(data), drive(spare), storagetest.Drive{Path: clone.Path, Format: "qcow2"})
	before := snapshotState(t, home)
	pointsBefore := ids(points(t, home, "web"))
	for _, args := range [][]string{
		{"snapshot", "rollback", "web", "1"},
		{"snapshot", "create", "web"},
		{"snapshot", "delete", "web", "1"},
		{"volume", "resize", "sys", "--size", "64M"},
		{"volume", "resize", "data", "--size", "64M"},
		{"volume", "delete", "spare"},
		{"golden", "create", "now", "--from", "web"},
		{"volume", "flatten", "scratch"},
	} {
		r := fails(t, home, 5, []string{"in use by pid", "qemu-system", `guest "web"`, "shut the guest down"}, args...)
		if strings.Contains(r.stderr, "-qmp") {
			t.Errorf("%v: the error shows QEMU's command line (it may hold secrets): %s", args, r.stderr)
		}
	}
	if after := snapshotState(t, home); after != before {
		t.Errorf("refused operations changed the state:\nbefore %s\nafter %s", before, after)
	}
	if got := ids(points(t, home, "web")); got != pointsBefore {
		t.Errorf("points %s, want %s", got, pointsBefore)
	}
	_ = q.Process.Kill()
	_ = q.Wait()
	sys.expect(t, 0x02, "raw disk after the running guest")
	data.expect(t, 0x02, "qcow2 disk after the running guest")
	ok(t, home, "snapshot", "rollback", "web", "1")
	sys.expect(t, 0x01, "rollback once the guest is gone")
	data.expect(t, 0x01, "rollback once the guest is gone")
	ok(t, home, "volume", "resize", "sys", "--size", "64M")
	ok(t, home, "volume", "flatten", "scratch")
}

// A process that opened a raw image for writing without any lock (QEMU
// with locking=off, dd) holds it too.
func TestWriterWithoutLockHoldsAVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "d", "raw", "")
	ok(t, home, "snapshot", "create", "--volume", "d")
	cmd := exec.Command("qemu-io", "-c", "write -P 7 0 1M", "-c", "sleep 10000", "--image-opts", "driver=file,filename="+d.path+",locking=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFor(t, func() bool { return d.hasRange(t, 7, "0 1M") })
	fails(t, home, 5, []string{"in use by pid", "qemu-io", "open for writing"}, "snapshot", "rollback", "--volume", "d", "1")
	// A point refused because the disk is in use leaves no record and no
	// gap in the numbers.
	fails(t, home, 5, []string{"in use by pid", "qemu-io"}, "snapshot", "create", "--volume", "d")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	var p struct{ ID int }
	if jsonOf(t, home, &p, "snapshot", "create", "--volume", "d"); p.ID != 2 {
		t.Errorf("the point after a refused one is number %d, want 2", p.ID)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not met within 10 s")
}

func drive(d disk) storagetest.Drive { return storagetest.Drive{Path: d.path, Format: d.format} }

// A logical volume's /dev/VG/LV is a link strata keeps as the volume's
// path (LVM's stable name; the dm-N behind it changes). The in-use check
// never follows links, so it asks about the device node the link names
// too: a process writing the device holds the volume. (A loop device
// behind a link laid out like an LV's stands in for the LV: the host has
// no device-mapper.)
func TestLVLinkHeldThroughItsDeviceIsInUse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and a link under /dev")
	}
	img := filepath.Join(t.TempDir(), "lv.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := storagetest.Loop(t, img)
	vg := fmt.Sprintf("/dev/stratatest%d", os.Getpid())
	if err := os.Mkdir(vg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(vg) })
	link := filepath.Join(vg, "guest")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "import", link, "--name", "lv")
	cmd := storagetest.Writer(t, dev)
	fails(t, home, 5, []string{"in use by pid", "sleep", "open for writing"}, "volume", "delete", "lv")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	ok(t, home, "volume", "delete", "lv")
}

// A strata killed after recording a point as creating but before the
// in-use check beside it was done (and so before any take) leaves a
// record that names no data: the next command forgets it at once instead
// of waiting --lock-timeout for the writer the check would have found,
// and refuses (in use) as it would have anyway.
func TestPointKilledBesideItsInUseCheckIsForgottenWithoutWaiting(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "q", "qcow2", "")
	cmd := exec.Command("qemu-io", "-c", "write -P 7 0 1M", "-c", "sleep 600000", "--image-opts", "driver=qcow2,file.driver=file,file.filename="+d.path+",file.locking=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFor(t, func() bool { return d.hasRange(t, 7, "0 1M") })
	r := runIn(t, home, []string{"STRATA_CRASH_AT=create:recorded-beside-hold"}, "snapshot", "create", "--volume", "q")
	if r.code != -1 && r.code != 137 {
		t.Fatalf("snapshot create with STRATA_CRASH_AT=create:recorded-beside-hold: exit %d, want killed\n%s", r.code, r.stderr)
	}
	start := time.Now()
	r = runIn(t, home, []string{"STRATA_LOCK_TIMEOUT=20s"}, "snapshot", "create", "--volume", "q")
	if r.code != 5 || !strings.Contains(r.stderr, "in use by pid") {
		t.Fatalf("the next create while the writer runs: exit %d, want 5 (in use)\n%s", r.code, r.stderr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the next create took %s: it waited for the writer before forgetting a point that holds nothing", took)
	}
	if ps := points(t, home, "--volume", "q"); len(ps) != 0 {
		t.Fatalf("points after the interrupted create: %+v, want none", ps)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	ok(t, home, "doctor")
	ok(t, home, "snapshot", "create", "--volume", "q")
}
