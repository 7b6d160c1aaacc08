package main_test

import (
	"fmt"
	"github.com/strata-vm/strata/storage/storagetest"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A copy or reflink point of a qcow2 volume would be put back over the
// image by a rollback, and with it every internal snapshot taken since:
// those methods are refused for qcow2 volumes, before anything is written.
func TestRollbackCopyMethodRefusedForQcow2(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	q := newDisk(t, home, "data", "qcow2", "")
	q.write(t, 0x01)
	ok(t, home, "snapshot", "create", "--volume", "data")
	before := snapshotState(t, home)
	for _, m := range []string{"copy", "reflink"} {
		fails(t, home, 2, []string{"method " + m + " does not apply to qcow2 volume \"data\"", "leave --method out"}, "snapshot", "create", "--volume", "data", "--method", m)
	}
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused --method changed the state")
	}
	q.write(t, 0x02)
	ok(t, home, "snapshot", "rollback", "--volume", "data", "1")
	q.expect(t, 0x01, "rollback after the refusals")
}

// After a guest rename, a rollback brings back the old name inside the
// definition: show/render use it, and the next 'guest set' renames the
// guest back (or fails if the old name is taken).
func TestRollbackAfterRenameKeepsName(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "guest", "set", "web", "name=web2")
	ok(t, home, "snapshot", "rollback", "web2", "1")
	var g struct{ Name string }
	jsonOf(t, home, &g, "guest", "show", "web2")
	if g.Name != "web2" {
		t.Errorf("guest show web2 after rollback: name %q, want web2", g.Name)
	}
	if out := ok(t, home, "guest", "render", "web2", "--format", "xl"); !strings.Contains(out, `name = "web2"`) && !strings.Contains(out, `name = 'web2'`) {
		t.Errorf("render of web2 names another domain:\n%s", out)
	}
	newDisk(t, home, "sys2", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys2") // the old name, reused
	if r := runIn(t, home, nil, "guest", "set", "web2", "memory=1024"); r.code != 0 {
		t.Errorf("guest set web2 after rollback: exit %d %s", r.code, r.stderr)
	}
}

// A rollback restores the definition and writable disks but not Uses
// (the volumes the definition names read-only): such a volume can then be
// deleted under the guest that names it.
func TestRollbackRestoresUses(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	newDisk(t, home, "tools", "raw", "")
	y := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(y, []byte("api_version: strata/v1\nname: web\nmemory: 512\ndisks:\n  - {volume: sys, vdev: hda}\n  - {volume: tools, vdev: hdb, access: ro}\n"), 0o600)
	ok(t, home, "guest", "define", "web", "-f", y)
	ok(t, home, "snapshot", "create", "web") // 1: names tools read-only
	ok(t, home, "guest", "set", "web", "disks.1=")
	ok(t, home, "snapshot", "rollback", "web", "1") // the definition names tools again
	if r := runIn(t, home, nil, "volume", "delete", "tools"); r.code == 0 {
		t.Errorf("volume tools deleted while guest web's definition names it")
	}
	ok(t, home, "guest", "render", "web", "--format", "xl")
}

// --older-than overflows time.Duration: 213504d (585 years) wraps to
// about 25 minutes, and prune deletes every point older than that.
func TestPruneOlderThanOverflow(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "qcow2", "")
	for day := 1; day <= 3; day++ {
		if r := runIn(t, home, []string{fmt.Sprintf("STRATA_TEST_NOW=2026-11-%02dT12:00:00Z", day)}, "snapshot", "create", "--volume", "v"); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	r := runIn(t, home, []string{"STRATA_TEST_NOW=2026-11-04T12:00:00Z"}, "snapshot", "prune", "--volume", "v", "--older-than", "213504d")
	if r.code != 2 {
		t.Errorf("--older-than 213504d: exit %d, want 2 (refused)", r.code)
	}
	if got := ids(points(t, home, "--volume", "v")); got != "1,2,3" {
		t.Errorf("points %q after prune --older-than 213504d, want 1,2,3 (all younger than 585 years)", got)
	}
}

// A copy rollback that would not fit is refused before anything changes
// (it used to fail halfway, its undo too, and wedge the target); the
// point can then be deleted and doctor finds nothing to repair.
func TestRollbackNoSpaceRefusedUpFront(t *testing.T) {
	mnt := storagetest.LoopFS(t, "ext4", 64<<20)
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "small", "--path", mnt)
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "big", "--size", "40M", "--pool", "small")
	d := disk{v.Path, "raw"}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 20M", v.Path)
	ok(t, home, "snapshot", "create", "--volume", "big") // 1: a 20M copy
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 1M", v.Path)
	before := snapshotState(t, home)
	fails(t, home, 7, []string{"not enough space"}, "snapshot", "rollback", "--volume", "big", "1")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a rollback refused for space changed the state")
	}
	if !d.hasRange(t, 0x22, "0 1M") {
		t.Fatalf("live disk changed by a failed rollback")
	}
	r := runIn(t, home, nil, "snapshot", "delete", "--volume", "big", "1")
	if r.code != 0 {
		t.Errorf("delete of point 1 to free space after a failed rollback: exit %d %s", r.code, r.stderr)
	}
	if r := runIn(t, home, nil, "doctor", "--repair"); r.code != 0 {
		t.Errorf("doctor --repair: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// A guest's disks cannot change under an operation that waits for the
// guest's lock: guest set takes that lock too (it used to change the disks
// while snapshot create waited, and the create then wrote the new disk
// without its lock). The create, once the lock is free, takes its point of
// the disk the guest had.
func TestGuestLockCoversDiskAddedWhileWaiting(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "volume", "create", "c", "--size", "32M", "--format", "qcow2")
	var g struct{ ID string }
	jsonOf(t, home, &g, "guest", "define", "web", "--disk", "sys")
	release := holdLock(t, home, "g-"+g.ID)
	done := make(chan result)
	go func() { done <- runIn(t, home, nil, "snapshot", "create", "web") }()
	time.Sleep(500 * time.Millisecond) // the create waits for g-web
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "guest", "set", "web", "disks.0.volume=c")
	release()
	if r := <-done; r.code != 0 {
		t.Fatalf("snapshot create web: exit %d %s", r.code, r.stderr)
	}
	var ps []struct {
		Disks []struct{ Volume string } `json:"disks"`
	}
	jsonOf(t, home, &ps, "snapshot", "list", "web")
	if len(ps) != 1 || len(ps[0].Disks) != 1 || ps[0].Disks[0].Volume != "sys" {
		t.Errorf("points of web: %+v, want one point of sys", ps)
	}
}

// The hints strata prints for a volume target leave out --volume: run
// as printed they act on the guest of the same name.
func TestVolumeHintsSayVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "web", "qcow2", "")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "--volume", "web")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "snapshot", "create", "web")
	out := ok(t, home, "snapshot", "rollback", "--volume", "web", "1")
	if !strings.Contains(out, "strata snapshot rollback --volume web 2") {
		t.Errorf("undo hint of a volume rollback: %q (run as printed, it rolls guest web back to its point 2)", out)
	}
	ok(t, home, "snapshot", "pin", "--volume", "web", "1")
	r := fails(t, home, 7, nil, "snapshot", "delete", "--volume", "web", "1")
	if !strings.Contains(r.stderr, "unpin --volume web 1") {
		t.Errorf("pinned hint: %q (run as printed, it unpins guest web's point 1)", r.stderr)
	}
}

// The restored definition's MAC may now be another guest's: two
// guests share one MAC, and neither can be changed any more.
func TestRollbackRefusesTakenMAC(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "s", "qcow2", "")
	newDisk(t, home, "s2", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "s", "--nic", "bridge=xenbr0,mac=00:16:3e:00:00:01")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "guest", "set", "web", "nics.0.mac=00:16:3e:00:00:02")
	ok(t, home, "guest", "define", "g2", "--disk", "s2", "--nic", "bridge=xenbr0,mac=00:16:3e:00:00:01")
	before := snapshotState(t, home)
	fails(t, home, 4, []string{"cannot bring its definition back", "MAC 00:16:3e:00:00:01 is already used by another guest"}, "snapshot", "rollback", "web", "1")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused rollback changed the state")
	}
	ok(t, home, "guest", "set", "g2", "memory=600")
	ok(t, home, "guest", "set", "web", "memory=600")
}

// Flag combinations that cannot mean what they say are refused (exit 2)
// and change nothing.
func TestSnapshotFlagCombinationsRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "qcow2", "")
	ok(t, home, "snapshot", "create", "--volume", "v", "--pre")
	ok(t, home, "snapshot", "policy", "--volume", "v", "--keep-last", "5")
	before := snapshotState(t, home)
	fails(t, home, 2, []string{"invalid --post 0"}, "snapshot", "create", "--volume", "v", "--post", "0")
	fails(t, home, 2, []string{"invalid --post -3"}, "snapshot", "create", "--volume", "v", "--post=-3")
	fails(t, home, 2, []string{"no --empty-pairs"}, "snapshot", "prune", "--all", "--empty-pairs")
	fails(t, home, 2, []string{"--clear removes the stored policy"}, "snapshot", "policy", "--volume", "v", "--clear", "--keep-last", "3")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused command changed the state")
	}
}

// volume resize and delete wait for the lock a restore point operation
// holds on the volume (a resize during a rollback went into the
// pre-rollback point's hard-linked file, not the volume), and give up with
// "busy" after --lock-timeout, changing nothing.
func TestResizeAndDeleteWaitForPointOperation(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "sys", "--size", "32M")
	ok(t, home, "snapshot", "create", "--volume", "sys")
	ok(t, home, "snapshot", "delete", "--volume", "sys", "1")
	f, err := os.OpenFile(filepath.Join(home, "locks", "v-"+v.ID+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	before := snapshotState(t, home)
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "volume", "resize", "sys", "--size", "64M")
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "volume", "delete", "sys")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a busy resize or delete changed the state")
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	ok(t, home, "volume", "resize", "sys", "--size", "64M")
	ok(t, home, "volume", "delete", "sys")
}

// holdLock takes HOME/locks/KEY.lock as a running operation would.
func holdLock(t *testing.T, home, key string) func() {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(home, "locks", key+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }
}

// guest delete (--with-disks) and guest set wait for the locks a restore
// point operation holds on the guest and its disks: the delete used to
// remove a disk's image under a running copy, and a set was lost to the
// rollback's record.
func TestGuestDeleteAndSetWaitForPointOperation(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "sys", "--size", "32M")
	ok(t, home, "volume", "create", "other", "--size", "32M")
	var g struct{ ID string }
	jsonOf(t, home, &g, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "snapshot", "delete", "web", "1")
	releaseV := holdLock(t, home, "v-"+v.ID)
	releaseG := holdLock(t, home, "g-"+g.ID)
	before := snapshotState(t, home)
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "guest", "delete", "web", "--with-disks")
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "guest", "set", "web", "disks.0.volume=other")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a busy guest delete or set changed the state")
	}
	if _, err := os.Stat(v.Path); err != nil {
		t.Errorf("the disk's image was removed under the point operation: %v", err)
	}
	releaseG()
	releaseV()
	ok(t, home, "guest", "set", "web", "disks.0.volume=other")
	ok(t, home, "guest", "delete", "web", "--with-disks")
}
