package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// fullHome returns a state home on a small tmpfs of its own and a
// function that fills that filesystem to the last byte.
func fullHome(t *testing.T) (home string, fill func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sf")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	home = filepath.Join(dir, "h")
	t.Cleanup(func() {
		for _, id := range runDirs(home) {
			if b, err := os.ReadFile(filepath.Join(home, "run", id, "qemu.pid")); err == nil {
				_ = killPID(strings.TrimSpace(string(b)))
			}
		}
		exec.Command("umount", "-l", dir).Run()
		os.Remove(dir)
	})
	return home, func() {
		f, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			return
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
		for i := 0; ; i++ { // the last blocks, a byte at a time
			if _, err := f.Write(buf[:1]); err != nil {
				break
			}
		}
	}
}

// A full disk does not keep a guest from being stopped or killed: the
// stop's records are what a full disk cannot take, not the guest.
func TestFullDiskDoesNotKeepAGuestRunning(t *testing.T) {
	home, fill := fullHome(t)
	bootSectorGuest(t, home, "fd", "STRATA-FD", boottest.PowerButton)
	ok(t, home, "guest", "start", "fd", "--wait-serial", "STRATA-FD")
	fill()
	ok(t, home, "guest", "stop", "fd", "--timeout", "30s")
	if s := statusOf(t, home, "fd"); s.State != "stopped" {
		t.Fatalf("after a stop on a full disk: %+v", s)
	}
	os.Remove(filepath.Join(filepath.Dir(home), "filler"))

	ok(t, home, "guest", "start", "fd", "--wait-serial", "STRATA-FD")
	fill()
	ok(t, home, "guest", "kill", "fd")
	if s := statusOf(t, home, "fd"); s.State != "stopped" {
		t.Fatalf("after a kill on a full disk: %+v", s)
	}
}
