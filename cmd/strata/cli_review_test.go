package main_test

// Tests from a review of the CLI plumbing: each failed before its fix.

import (
	"os/exec"
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

// An unknown command is an invalid argument (2), not an internal error (1).
func TestUnknownCommandExit2(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"nosuchcmd"}, {"volume", "nosuchsub"}} {
		if r := runIn(t, home, nil, args...); r.code != 2 {
			t.Errorf("strata %v: exit %d, want 2; stderr %q", args, r.code, r.stderr)
		}
	}
}

// Global flags may be written between a command and its subcommand.
func TestGlobalFlagBetweenCommandAndSubcommand(t *testing.T) {
	home := t.TempDir()
	if r := runIn(t, home, nil, "volume", "-o", "json", "list"); r.code != 0 || !strings.HasPrefix(r.stdout, "[") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}
