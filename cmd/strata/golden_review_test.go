package main_test

// Tests from a review of golden images and clones: each failed before its fix.

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage/storagetest"
)

// An overlay on a golden image whose backing is spelled through another
// path (a pool added through a symlink; import records the real path)
// must still keep the golden from being deleted.
func TestGoldenDeleteSeesOverlaySpelledDifferently(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "pool", "add", "p", "--path", filepath.Join(link, "pool"))
	src := newDisk(t, home, "src", "raw", "p")
	src.write(t, 0x11)
	ok(t, home, "golden", "create", "g", "--volume", "src", "--pool", "p")
	var c cloneJSON
	jsonOf(t, home, &c, "clone", "g", "c")
	var cc volumeJSON
	jsonOf(t, home, &cc, "volume", "import", c.Disks[0].Path, "--copy", "--name", "cc")
	ok(t, home, "volume", "delete", "c")
	fails(t, home, 5, []string{`golden image "g"`, `volume "cc"`}, "golden", "delete", "g")
	(disk{cc.Path, "qcow2"}).expect(t, 0x11, "overlay after golden delete was tried")
}

// A clone names its golden's read-only volumes: they must not be
// deletable while the clone exists.
func TestCloneProtectsReadOnlyVolumeItNames(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "raw", "")
	newDisk(t, home, "shared", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "shared")
	ok(t, home, "guest", "set", "web", "disks.1.access=ro")
	ok(t, home, "golden", "create", "base", "--from", "web")
	ok(t, home, "clone", "base", "c")
	ok(t, home, "guest", "delete", "web")
	fails(t, home, 5, []string{`volume "shared"`, `"c"`}, "volume", "delete", "shared")
	ok(t, home, "guest", "render", "c", "--format", "xl")
}

// Flatten replaces the disk by a new file: it must keep the image's
// owner, mode and extended attributes, as rollback does.
func TestFlattenKeepsOwnerModeAndXattrs(t *testing.T) {
	storagetest.NeedRoot(t)
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "src", "raw", "")
	ok(t, home, "golden", "create", "g", "--volume", "src")
	var c cloneJSON
	jsonOf(t, home, &c, "clone", "g", "c")
	img := c.Disks[0].Path
	if err := os.Chown(img, 64055, 64055); err != nil {
		t.Fatal(err)
	}
	os.Chmod(img, 0o660)
	if err := unix.Setxattr(img, "user.strata-test", []byte("label"), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	ok(t, home, "volume", "flatten", "c")
	expectIdentity(t, img, 64055, 0o660, "after flatten")
}

// golden create checks each disk's space alone; two disks that do not
// fit together must be refused before any is copied, in golden terms.
func TestGoldenSpaceCheckSumsDisks(t *testing.T) {
	storagetest.NeedRoot(t)
	mnt := t.TempDir()
	storagetest.Cmd(t, "mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt)
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "small", "--path", filepath.Join(mnt, "p"))
	for _, n := range []string{"a", "b"} {
		d := newDisk(t, home, n, "raw", "")
		storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 2M", d.path)
	}
	ok(t, home, "guest", "define", "w", "--disk", "a", "--disk", "b")
	r := fails(t, home, 7, []string{"golden image", "not enough space"}, "golden", "create", "g", "--from", "w", "--pool", "small")
	if strings.Contains(r.stderr, "restore points") || strings.Contains(r.stderr, `volume "b"`) {
		t.Errorf("refused only after copying disk 1, with restore-point advice: %s", r.stderr)
	}
}

// An empty name is a bad name (exit 2), not a missing object (exit 3).
func TestGoldenEmptyNamesAreBadInput(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	webGuest(t, home)
	ok(t, home, "golden", "create", "base", "--from", "web")
	before := snapshotState(t, home)
	for _, args := range [][]string{
		{"golden", "create", "g", "--from", "@1"},
		{"golden", "create", "g", "--volume", "@1"},
		{"clone", "", "x"},
		{"golden", "delete", ""},
	} {
		r := fails(t, home, 2, nil, args...)
		if !strings.Contains(r.stderr, `""`) && !strings.Contains(r.stderr, `"@1"`) {
			t.Errorf("strata %q: the error does not quote the input: %s", args, r.stderr)
		}
	}
	if snapshotState(t, home) != before {
		t.Errorf("state changed")
	}
}
