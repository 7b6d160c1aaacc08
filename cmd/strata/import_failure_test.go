package main_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// patchQcow2 makes a real qcow2 image with data (qemu-img, qemu-io), then
// writes a big-endian value into it at off (or, with l1, at the first L1
// table entry).
func patchQcow2(t *testing.T, path string, off int64, l1 bool, val uint64, width int) {
	t.Helper()
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", path, "16M")
	storagetest.Cmd(t, "qemu-io", "-c", "write -P 0x55 0 64k", path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if l1 {
		b := make([]byte, 8)
		f.ReadAt(b, 40)
		off = int64(binary.BigEndian.Uint64(b))
	}
	b := make([]byte, width)
	if width == 8 {
		binary.BigEndian.PutUint64(b, val)
	} else {
		binary.BigEndian.PutUint32(b, uint32(val))
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func volumeCount(t *testing.T, home string) int {
	t.Helper()
	var vols []volumeJSON
	jsonOf(t, home, &vols, "volume", "list")
	return len(vols)
}

// A qcow2 image qemu-img cannot read (an L2 table offset that is not
// cluster aligned: "Image is corrupt") is refused, in place or copied,
// and leaves no volume registered.
func TestCorruptQcow2ImportLeavesNoVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	img := filepath.Join(t.TempDir(), "corrupt.qcow2")
	patchQcow2(t, img, 0, true, 1<<63|0x10200, 8)
	for _, extra := range [][]string{nil, {"--copy"}} {
		fails(t, home, 7, []string{"was not imported", "corrupt"}, append([]string{"volume", "import", img}, extra...)...)
	}
	if n := volumeCount(t, home); n != 0 {
		t.Fatalf("%d volumes registered by failed imports", n)
	}
	left, _ := filepath.Glob(filepath.Join(home, "pools", "default", "*"))
	left = slices.DeleteFunc(left, func(p string) bool { return filepath.Base(p) == ".strata-pool" }) // the pool's marker
	if len(left) != 0 {
		t.Errorf("a failed copy left files: %v", left)
	}
}

// qcow2 headers whose tables or backing name lie past the end of the file
// get a clear error (exit 7), not an internal one.
func TestQcow2HeaderPastEndIsRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	for i, c := range []struct {
		off        int64
		val        uint64
		width      int
		what       string
		backingLen bool
	}{
		{8, 1 << 40, 8, "backing file name", true},
		{40, 1 << 40, 8, "L1 table", false},
		{48, 1 << 40, 8, "refcount table", false},
	} {
		img := filepath.Join(dir, fmt.Sprintf("past%d.qcow2", i))
		patchQcow2(t, img, c.off, false, c.val, c.width)
		if c.backingLen {
			f, _ := os.OpenFile(img, os.O_RDWR, 0)
			f.WriteAt([]byte{0, 0, 0, 10}, 16)
			f.Close()
		}
		fails(t, home, 7, []string{"damaged qcow2 image", c.what, "past the end of the file"}, "volume", "import", img)
	}
	if n := volumeCount(t, home); n != 0 {
		t.Fatalf("%d volumes registered by failed imports", n)
	}
}

// Files of /proc and /sys are not disk images: a clear refusal (exit 2).
func TestKernelFileImportIsRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	for _, p := range []string{"/proc/self/status", "/proc/cmdline", "/sys/kernel/mm/transparent_hugepage/enabled"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		fails(t, home, 2, []string{"kernel's", "not a disk image"}, "volume", "import", p, "--name", "k")
		fails(t, home, 2, []string{"not a disk image"}, "volume", "import", p, "--name", "k", "--copy")
	}
}

// A guest import with --adopt-disks that fails on its second disk (a
// corrupt qcow2 image) unregisters the first and registers nothing else.
func TestFailedAdoptUnregistersDisks(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.img")
	sparseFile(t, good, 1<<20, nil)
	bad := filepath.Join(dir, "bad.qcow2")
	patchQcow2(t, bad, 0, true, 1<<63|0x10200, 8)
	cfg := filepath.Join(dir, "g.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'g'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'format=raw,vdev=hda,access=w,target=%s', 'format=qcow2,vdev=hdb,access=w,target=%s' ]\n", good, bad)), 0o600)
	r := fails(t, home, 7, []string{"hdb", "corrupt"}, "guest", "import", cfg, "--adopt-disks")
	if n := volumeCount(t, home); n != 0 {
		t.Fatalf("%d volumes left registered by a failed adopt\n%s", n, r.stderr)
	}
	if out := ok(t, home, "guest", "list"); strings.Contains(out, "g ") {
		t.Errorf("guest left: %s", out)
	}
}
