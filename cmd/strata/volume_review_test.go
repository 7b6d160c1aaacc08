package main_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"
)

// Tests from a review of volumes and pools: each failed before its fix.

// A pool reached through a symlink to another pool's directory is refused:
// doctor used to see the first pool's images a second time, as nobody's,
// and --repair deleted them.
func TestPoolAliasRefusedAndDoctorKeepsImages(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "keep", "--size", "16M")
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(filepath.Join(home, "pools", "default"), alias); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 4, []string{"is already pool \"default\""}, "pool", "add", "alias", "--path", alias)
	ok(t, home, "doctor", "--repair")
	if _, err := os.Stat(v.Path); err != nil {
		t.Fatalf("doctor --repair deleted the image of volume keep: %v", err)
	}
}

// A raw volume stays raw whatever its guest writes at its start: a qcow2
// header naming a host file as its backing file must not make strata open
// the disk as qcow2 (and the host file as its base).
func TestRawVolumeStaysRaw(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "g", "--size", "64M")
	hdr := filepath.Join(t.TempDir(), "hdr.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", hdr, "1G")
	head, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(v.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(head, 0); err != nil { // what the guest writes to its disk
		t.Fatal(err)
	}
	f.Close()
	var got volumeJSON
	jsonOf(t, home, &got, "volume", "info", "g")
	if got.Format != "raw" || got.Backing != nil || got.VirtualSize != 64<<20 {
		t.Errorf("raw volume now reported as %s of %d bytes, backing %v", got.Format, got.VirtualSize, got.Backing)
	}
	ok(t, home, "volume", "resize", "g", "--size", "128M")
	if st, err := os.Stat(v.Path); err != nil || st.Size() != 128<<20 {
		t.Errorf("resize to 128M left the raw image at %v bytes (%v)", st.Size(), err)
	}
}

// An in-place import is refused for strata's own files however the path
// is spelled (here: the state home is reached through a symlink).
func TestImportRefusesStrataFilesThroughSymlink(t *testing.T) {
	real := t.TempDir()
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Symlink(real, home); err != nil {
		t.Fatal(err)
	}
	var a volumeJSON
	jsonOf(t, home, &a, "volume", "create", "a", "--size", "16M")
	resolved, err := filepath.EvalSymlinks(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotState(t, home)
	fails(t, home, 2, []string{"--copy"}, "volume", "import", resolved, "--name", "dup")
	fails(t, home, 2, []string{"state home"}, "volume", "import", filepath.Join(real, "catalog.db"), "--name", "cat")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused import changed the state")
	}
}

// An overlay whose backing name is spelled another way ("a/../b") still
// keeps its base volume from deletion.
func TestBackingSpelledDifferentlyProtectsBase(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var base volumeJSON
	jsonOf(t, home, &base, "volume", "create", "base", "--size", "16M", "--format", "qcow2")
	alt := filepath.Dir(base.Path) + "/../default/" + filepath.Base(base.Path) // not cleaned
	ov := filepath.Join(t.TempDir(), "ov.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", alt, "-F", "qcow2", ov)
	ok(t, home, "volume", "import", ov)
	fails(t, home, 5, []string{"backing file of"}, "volume", "delete", "base")
	fails(t, home, 5, []string{"backing file of"}, "volume", "resize", "base", "--size", "8M", "--shrink")
}

// Shrinking a GPT disk would cut off the backup table: refused, even when
// every partition would fit.
func TestShrinkKeepsGPT(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "g", "--size", "64M", "--partition", "gpt")
	end := v.Partitions[0].Start + v.Partitions[0].Size
	fails(t, home, 7, []string{"GPT partition table", "backup"}, "volume", "resize", "g", "--size", strconv.FormatInt(end, 10), "--shrink")
	if out := storagetest.Cmd(t, "sfdisk", "-d", v.Path); !strings.Contains(out, "label: gpt") {
		t.Errorf("the GPT is gone:\n%s", out)
	}
}

// A FAT32 filesystem too small to be FAT32 (under 65,525 clusters) is
// refused before any file is made; the smallest accepted size is readable.
func TestSmallFAT32Refused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "list")
	before := snapshotState(t, home)
	for _, size := range []string{"1M", "16M", "32M"} {
		fails(t, home, 2, []string{"65,525 clusters", "--size 40M"}, "volume", "create", "f", "--size", size, "--fs", "fat32")
	}
	fails(t, home, 2, []string{"65,525 clusters"}, "volume", "create", "f", "--size", "34M", "--fs", "fat32", "--partition", "gpt")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused layout changed the state")
	}
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "f", "--size", "40M", "--fs", "fat32", "--partition", "mbr")
	img := v.Path + "@@1M"
	if out, err := exec.Command("mdir", "-i", img, "::").CombinedOutput(); err != nil {
		t.Errorf("a 40M FAT32 disk is unreadable: %v\n%s", err, out)
	}
}

// A full pool is still listed (with no capability claimed), and a pool on
// a read-only filesystem is refused before it is recorded.
func TestFullAndReadOnlyPools(t *testing.T) {
	storagetest.NeedRoot(t)
	mnt := t.TempDir()
	storagetest.Cmd(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "full", "--path", filepath.Join(mnt, "p"))
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(mnt, "fill"), "bs=4k").Run()
	for _, args := range [][]string{{"pool", "list"}, {"pool", "info", "full"}} {
		if r := runIn(t, home, nil, args...); r.code != 0 {
			t.Errorf("%v on a full pool: exit %d: %s", args, r.code, r.stderr)
		}
	}
	ro := t.TempDir()
	storagetest.Cmd(t, "mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro)
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	home2 := filepath.Join(t.TempDir(), "home")
	ok(t, home2, "pool", "list")
	before := snapshotState(t, home2)
	fails(t, home2, 7, []string{"not writable"}, "pool", "add", "ro", "--path", ro)
	if after := snapshotState(t, home2); after != before {
		t.Errorf("a refused pool add changed the state")
	}
}

// Importing a FIFO is refused at once (opening it used to block forever,
// holding the operation lock).
func TestImportFIFORefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, strataBinary(t), "--home", home, "volume", "import", fifo).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("import of a FIFO still blocked after 10s")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "neither a regular file nor a block device") {
		t.Errorf("import of a FIFO: %v %s, want exit 2 saying what it is", err, out)
	}
}

// Sizes the filesystem cannot hold are refused alike by create and resize
// (exit 2), and a --label with nothing to label is refused.
func TestResizeTooLargeAndStrayLabel(t *testing.T) {
	mnt := storagetest.LoopFS(t, "ext4", 64<<20) // ext4: files up to 16 TiB
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "e4", "--path", mnt)
	ok(t, home, "volume", "create", "v", "--size", "16M", "--pool", "e4")
	before := snapshotState(t, home)
	fails(t, home, 2, []string{"larger than the pool's filesystem allows"}, "volume", "resize", "v", "--size", "17T")
	fails(t, home, 2, []string{"--label", "add --fs fat32"}, "volume", "create", "w", "--size", "16M", "--label", "DATA")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refusal changed the state")
	}
}
