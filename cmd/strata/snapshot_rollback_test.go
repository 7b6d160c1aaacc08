package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
	"golang.org/x/sys/unix"
)

// A rollback never writes a volume that has become another guest's disk,
// and two guests never both write one volume.
func TestRollbackRespectsOtherGuests(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys3", "raw", "")
	data3 := newDisk(t, home, "data3", "raw", "")
	newDisk(t, home, "other3", "raw", "")
	newDisk(t, home, "sys4", "raw", "")
	ok(t, home, "guest", "define", "g3", "--disk", "sys3", "--disk", "data3")
	ok(t, home, "snapshot", "create", "g3")
	fails(t, home, 5, []string{`volume "data3" is already a writable disk of guest "g3"`}, "guest", "define", "g4", "--disk", "sys4", "--disk", "data3")
	ok(t, home, "guest", "set", "g3", "disks.1.volume=other3")
	ok(t, home, "guest", "define", "g4", "--disk", "sys4", "--disk", "data3")
	data3.write(t, 0x44)
	fails(t, home, 5, []string{`is now a disk of guest "g4"`}, "snapshot", "rollback", "g3", "1")
	data3.expect(t, 0x44, "g4's disk after a refused rollback of g3")
}

// A guest with a writable disk that is not a volume gets no restore point
// that would silently leave that disk out.
func TestRestorePointRefusesHostPathDisks(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	img := filepath.Join(t.TempDir(), "host.img")
	sparseFile(t, img, 1<<20, nil)
	cfg := filepath.Join(t.TempDir(), "g.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'hp'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'file:%s,hda,w' ]\n", img)), 0o600)
	ok(t, home, "guest", "import", cfg)
	fails(t, home, 7, []string{"not a strata volume", "--adopt-disks"}, "snapshot", "create", "hp")
	fails(t, home, 7, []string{"not a strata volume"}, "golden", "create", "hpg", "--from", "hp")
}

// A volume that backs an overlay is not rolled back or shrunk under it.
func TestBackingVolumeNotRolledBack(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var base volumeJSON
	jsonOf(t, home, &base, "volume", "create", "base", "--size", "32M", "--format", "qcow2")
	ok(t, home, "snapshot", "create", "--volume", "base")
	ov := filepath.Join(t.TempDir(), "ov.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base.Path, "-F", "qcow2", ov)
	ok(t, home, "volume", "import", ov)
	fails(t, home, 5, []string{`volume "base" is the backing file of "ov"`}, "snapshot", "rollback", "--volume", "base", "1")
	fails(t, home, 5, []string{`backing file of "ov"`}, "volume", "resize", "base", "--size", "16M", "--shrink")
}

// A rollback of a file-copy point keeps the image's owner, mode and xattrs.
func TestRollbackKeepsOwnerModeAndXattrs(t *testing.T) {
	storagetest.NeedRoot(t)
	home := filepath.Join(t.TempDir(), "home")
	img := filepath.Join(t.TempDir(), "web.img")
	sparseFile(t, img, 8<<20, map[int64][]byte{0: []byte("first")})
	ok(t, home, "volume", "import", img)
	if err := os.Chown(img, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	os.Chmod(img, 0o664)
	if err := unix.Setxattr(img, "user.strata-test", []byte("label"), 0); err != nil {
		t.Fatalf("setxattr (the test filesystem must support user xattrs): %v", err)
	}
	ok(t, home, "snapshot", "create", "--volume", "web")
	ok(t, home, "snapshot", "rollback", "--volume", "web", "1")
	expectIdentity(t, img, 65534, 0o664, "after rollback")
}

// expectIdentity checks that path kept the owner id (as uid and gid), the
// mode and the user.strata-test extended attribute ("label") a test gave
// it.
func expectIdentity(t *testing.T, path string, id uint32, mode os.FileMode, when string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != id || sys.Gid != id || st.Mode().Perm() != mode {
		t.Errorf("%s: uid %d gid %d mode %v", when, sys.Uid, sys.Gid, st.Mode().Perm())
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(path, "user.strata-test", buf); err != nil || string(buf[:n]) != "label" {
		t.Errorf("xattr %s: %q, %v", when, buf[:max(n, 0)], err)
	}
}

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

// A rollback that changes the guest's definition says what changed, in
// the table and in JSON.
func TestRollbackSaysWhatChangedInTheDefinition(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "create", "v", "--size", "16M", "--format", "qcow2")
	ok(t, h, "guest", "define", "g", "--disk", "v", "--memory", "512")
	ok(t, h, "snapshot", "create", "g", "--name", "small")
	ok(t, h, "guest", "set", "g", "memory=768")
	if out := ok(t, h, "snapshot", "rollback", "g", "small"); !strings.Contains(out, "memory") || !strings.Contains(out, "768 → 512") {
		t.Fatalf("rollback output does not say memory went from 768 to 512:\n%s", out)
	}
	var res struct {
		Changes []struct{ Key, Old, New string } `json:"definition_changes"`
	}
	jsonOf(t, h, &res, "snapshot", "rollback", "g", "2") // back to 768: the pre-rollback point
	if len(res.Changes) != 1 || res.Changes[0].Key != "memory" || res.Changes[0].Old != "512" || res.Changes[0].New != "768" {
		t.Fatalf("definition_changes: %+v", res.Changes)
	}
	ok(t, h, "snapshot", "create", "g", "--name", "same")
	jsonOf(t, h, &res, "snapshot", "rollback", "g", "same") // the definition it has
	if res.Changes == nil || len(res.Changes) != 0 {
		t.Fatalf("a rollback that changes nothing in the definition: %+v", res.Changes)
	}
}
