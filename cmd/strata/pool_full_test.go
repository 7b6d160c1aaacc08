package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// A pool that is full gives the same exit code (7, failed precondition)
// for every command that writes data into it, whether the free-space check
// refuses up front or the write runs out of room (the check disabled by a
// test-only switch): a full filesystem (ENOSPC) and a full quota (EDQUOT)
// alike. Nothing is registered or left behind.
func TestFullPoolSameExitCodeForEveryCommand(t *testing.T) {
	t.Run("full filesystem", func(t *testing.T) {
		fullPoolCommands(t, storagetest.LoopFS(t, "ext4", 24<<20))
	})
	t.Run("full XFS project quota", func(t *testing.T) {
		fullPoolCommands(t, xfsQuotaDir(t, 20<<20))
	})
}

// xfsQuotaDir is a directory on XFS with a project quota of limit bytes.
func xfsQuotaDir(t *testing.T, limit int64) string {
	storagetest.NeedRoot(t)
	storagetest.NeedTool(t, "mkfs.xfs")
	storagetest.NeedTool(t, "xfs_quota")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	storagetest.Cmd(t, "truncate", "-s", "300M", img)
	// No reflink: a restore point is then a full copy that needs room.
	storagetest.Cmd(t, "mkfs.xfs", "-q", "-m", "reflink=0", img)
	os.Mkdir(mnt, 0o700)
	if out, err := exec.Command("mount", "-o", "loop,prjquota", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount XFS with project quotas here (a kernel without quota support): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	pool := filepath.Join(mnt, "pool")
	os.Mkdir(pool, 0o755)
	storagetest.Cmd(t, "xfs_quota", "-x", "-c", "project -s -p "+pool+" 17", "-c", fmt.Sprintf("limit -p bhard=%d 17", limit), mnt)
	return pool
}

func fullPoolCommands(t *testing.T, poolDir string) {
	storagetest.NeedTool(t, "qemu-io")
	storagetest.NeedTool(t, "xorriso")
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "small", "--path", poolDir)
	// 14 MiB of data in a pool of 24 MiB (or a quota of 20): a second copy
	// cannot fit.
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "big", "--size", "16M", "--pool", "small")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x55 0 14M", v.Path)
	src := t.TempDir()
	outside := filepath.Join(src, "data.img")
	storagetest.Cmd(t, "truncate", "-s", "20M", outside)
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x66 0 20M", outside)
	tree := filepath.Join(src, "tree")
	os.Mkdir(tree, 0o755)
	storagetest.Cmd(t, "cp", outside, filepath.Join(tree, "data.bin"))
	iso := filepath.Join(src, "data.iso")
	storagetest.Cmd(t, "xorriso", "-as", "mkisofs", "-quiet", "-o", iso, tree)

	commands := [][]string{
		{"snapshot", "create", "--volume", "big"},
		{"volume", "import", outside, "--name", "copied", "--copy", "--pool", "small"},
		{"iso", "import", iso, "--name", "data", "--pool", "small"},
	}
	for _, env := range [][]string{nil, {"STRATA_TEST_SKIP_SPACE_CHECK=1"}} {
		for _, args := range commands {
			r := runIn(t, home, env, args...)
			if r.code != 7 {
				t.Errorf("%v %s: exit %d, want 7: %s", env, strings.Join(args, " "), r.code, r.stderr)
			}
		}
	}
	if out := ok(t, home, "volume", "list"); strings.Contains(out, "copied") {
		t.Errorf("a volume was registered: %s", out)
	}
	if out := ok(t, home, "iso", "list"); strings.Contains(out, "data") {
		t.Errorf("an iso was registered: %s", out)
	}
	ents, _ := os.ReadDir(poolDir)
	for _, e := range ents {
		if n := e.Name(); n != "lost+found" && n != ".strata-pool" && n != filepath.Base(v.Path) && n != ".strata-points" {
			t.Errorf("left in the pool: %s", n)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(poolDir, ".strata-points", "*")); len(left) > 0 {
		t.Errorf("partial points left: %v", left)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor: %s %s", r.stdout, r.stderr)
	}
}
