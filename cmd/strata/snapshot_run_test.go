package main_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An argv that itself contains "--" must reach the command untouched in
// the --volume form too (the guest form already works).
func TestSnapshotRunVolumeArgvWithDoubleDash(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	out := ok(t, home, "snapshot", "run", "--volume", "v", "--", "/bin/echo", "a", "--", "b")
	if strings.TrimSpace(out) != "a -- b" {
		t.Fatalf("stdout %q, want %q", out, "a -- b")
	}
}

// A command killed by signal N: strata exits 128+N, like a shell.
func TestSnapshotRunSignalExitCode(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	r := runIn(t, home, nil, "snapshot", "run", "--volume", "v", "--", "/bin/sh", "-c", "kill -TERM $$")
	if r.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %d, want %d", r.code, 128+int(syscall.SIGTERM))
	}
}

// SIGTERM to strata reaches the command as SIGTERM (it can clean up), not SIGKILL.
func TestSnapshotRunForwardsSIGTERM(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	cmd := exec.Command(strataBinary(t), "--home", home, "snapshot", "run", "--volume", "v", "--",
		"/bin/sh", "-c", "trap 'exit 42' TERM; sleep 10 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 42 {
		t.Fatalf("exit %d, want 42 (the command's own TERM handler)", code)
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

// snapshot run of a raw volume on a pool without reflink takes three
// full-copy points (pre, post, pre-rollback) but warns about the method
// once.
func TestSnapshotRunWarnsAboutFullCopiesOnce(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "plain", "raw", "")
	r := runIn(t, home, nil, "snapshot", "run", "--volume", "plain", "--rollback-on-failure", "--", "false")
	if got := ids(points(t, home, "--volume", "plain")); got != "1,2,3" {
		t.Fatalf("points %s, want pre, post and pre-rollback", got)
	}
	if n := strings.Count(r.stderr, "are full copies"); n != 1 {
		t.Fatalf("the full-copy warning came %d times:\n%s", n, r.stderr)
	}
}
