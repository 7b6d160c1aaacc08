package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/boot/qemu"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
)

// qemuPIDsFor lists the QEMU processes whose command line names dir.
func qemuPIDsFor(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "qemu-system") || !strings.Contains(string(b), dir+"/") {
			continue
		}
		if st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); strings.Contains(string(st), ") Z ") {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// A start that failed while a QEMU of its own is up (here: the
// emulator's launcher leaves QEMU running in the background and exits 1,
// as a start interrupted at that moment leaves it) leaves no QEMU behind:
// it would hold the guest's disks with nothing naming it.
func TestFailedStartLeavesNoQEMUBehind(t *testing.T) {
	e := newEnv(t)
	real, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip(err)
	}
	wrapper := filepath.Join(t.TempDir(), "qemu-then-fail")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n"+real+" \"$@\" &\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.d = qemu.New(qemu.Config{Home: e.home, Binary: wrapper, Network: qemuargv.NetNone, WatcherArgv: watcherArgv})
	g := e.guest("fails", boottest.Halt, nil)
	if _, err := e.d.Start(context.Background(), g, boot.StartOptions{}); err == nil {
		t.Fatal("the start succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(qemuPIDsFor(t, g.Run.Dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a failed start left QEMU %v running", qemuPIDsFor(t, g.Run.Dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := e.status(g); s.State != boot.Stopped {
		t.Fatalf("status after a failed start: %+v", s)
	}
}
