package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage/storagetest"
)

// Defects found in review, each shown fixed through the binary.

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

// Passwords stay out of prune output and of error messages.
func TestPasswordNotInPruneOrErrors(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("S3cretPW"), 0o600)
	ok(t, home, "guest", "define", "g1", "--disk", "sys", "--vnc", "--vncpasswd-file", pw)
	ok(t, home, "snapshot", "create", "g1")
	r := runIn(t, home, nil, "-o", "json", "snapshot", "prune", "g1", "--keep-last", "10", "--dry-run")
	r2 := runIn(t, home, nil, "guest", "set", "g1", "vncpasswd=An0therPW", "memory=abc")
	cfg := filepath.Join(t.TempDir(), "x.cfg")
	os.WriteFile(cfg, []byte("name = 'x'\nbuilder = 'hvm'\nmemory = 256\nvncpasswd=TopSecret3\n"), 0o600)
	r3 := runIn(t, home, nil, "guest", "import", cfg)
	for _, out := range []string{r.stdout + r.stderr, r2.stdout + r2.stderr, r3.stdout + r3.stderr} {
		for _, secret := range []string{"S3cretPW", "An0therPW", "TopSecret3"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows a password:\n%s", out)
			}
		}
	}
	if r2.code != 2 || r3.code != 2 {
		t.Errorf("exit codes %d %d, want 2 2", r2.code, r3.code)
	}
}

func TestSnapshotRunOnVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "frag", "qcow2", "")
	ok(t, home, "snapshot", "run", "--volume", "frag", "--", "true")
	if got := ids(points(t, home, "--volume", "frag")); got != "1,2" {
		t.Errorf("points %s", got)
	}
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

// guest delete --with-disks changes nothing if one disk cannot go.
func TestGuestDeleteWithDisksAllOrNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d1 := newDisk(t, home, "d1", "raw", "")
	newDisk(t, home, "d2", "qcow2", "")
	ok(t, home, "guest", "define", "gx", "--disk", "d1", "--disk", "d2")
	ok(t, home, "guest", "set", "gx", "disks.1.access=ro") // d2 read-only: no restore point writes it...
	ok(t, home, "snapshot", "create", "--volume", "d2")    // ...but a volume point holds it
	before := snapshotState(t, home)
	fails(t, home, 5, []string{"guest \"gx\" was not deleted", "restore point"}, "guest", "delete", "gx", "--with-disks")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused delete changed the state")
	}
	if _, err := os.Stat(d1.path); err != nil {
		t.Errorf("d1 gone: %v", err)
	}
	// A read-only disk is still a use: its volume cannot be deleted.
	fails(t, home, 5, []string{`disk of guest "gx"`}, "volume", "delete", "d2")
}

// --adopt-disks reuses a volume already registered through a symlink.
func TestAdoptDisksThroughSymlink(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	img := filepath.Join(dir, "real.img")
	sparseFile(t, img, 1<<20, nil)
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "volume", "import", img, "--name", "known")
	cfg := filepath.Join(dir, "g.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'sym'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'file:%s,hda,w' ]\n", link)), 0o600)
	var g guestJSON
	jsonOf(t, home, &g, "guest", "import", cfg, "--adopt-disks")
	if g.Disks[0].Volume != "known" {
		t.Errorf("disk %+v: want the volume already registered", g.Disks[0])
	}
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
