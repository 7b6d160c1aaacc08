// Package storagetest holds helpers for strata's tests that need real
// filesystems and tools: loop-mounted XFS, btrfs and ext4, and a check that
// a tool is installed. Tests skip, with the reason, where the machine
// cannot provide them (not root, no loop devices).
package storagetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount)")
	}
}

// NeedTool fails the test when tool is missing: make test installs every
// tool the tests use, so a missing one is a broken set-up, not a skip.
func NeedTool(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is not installed: run 'make test-deps' (or make test) first", tool)
	}
	return p
}

// Cmd runs argv and fails the test on error, returning stdout.
func Cmd(t testing.TB, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr)
	}
	return string(out)
}

// LoopFS makes a filesystem of the given type ("xfs" with reflink=1,
// "btrfs", "ext4") on a sparse file of size bytes attached to a loop
// device, mounts it under a temp dir and returns the mount point. Cleanup
// unmounts and detaches.
func LoopFS(t testing.TB, fstype string, size int64) string {
	t.Helper()
	NeedRoot(t)
	dir := t.TempDir()
	img := filepath.Join(dir, fstype+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	switch fstype {
	case "xfs":
		NeedTool(t, "mkfs.xfs")
		Cmd(t, "mkfs.xfs", "-q", "-m", "reflink=1", img)
	case "btrfs":
		NeedTool(t, "mkfs.btrfs")
		Cmd(t, "mkfs.btrfs", "-q", img)
	case "ext4":
		Cmd(t, "mkfs.ext4", "-q", "-F", img)
	default:
		t.Fatalf("LoopFS: unknown filesystem %q", fstype)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount %s here: %v: %s", fstype, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// Loop attaches a file to a loop device and returns the device path.
func Loop(t testing.TB, file string) string {
	t.Helper()
	NeedRoot(t)
	dev := strings.TrimSpace(Cmd(t, "losetup", "-f", "--show", file))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// Writer starts a process that holds the file at path open for writing
// and does nothing else (a tool, or a guest, writing a disk without a
// lock), ended with the test; the caller may kill it sooner.
func Writer(t testing.TB, path string) *exec.Cmd {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "1000")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}
