package inuse_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/storagetest"
)

// A qemu-img that has not opened its image yet (stopped between its exec
// and its open) holds no lock and no open file, but it is about to change
// the image: the processes whose command line names the image (as given,
// through a link, or relative to the tool's working directory) are what
// Wait waits for too; the check before a change is not refused by them,
// and a process that names another image is nobody's holder.
func TestWaitWaitsForAToolNamingTheImageBeforeItOpensIt(t *testing.T) {
	qimg := storagetest.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	other := filepath.Join(dir, "other.qcow2")
	for _, p := range []string{img, other} {
		storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", p, "1M")
	}
	link := filepath.Join(t.TempDir(), "link.qcow2")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	// A qemu-img that stops itself before it runs (its command line is
	// the one it will run with).
	wrap := filepath.Join(t.TempDir(), "qemu-img")
	if err := os.WriteFile(wrap, []byte("#!/bin/sh\nkill -STOP $$\nexec "+qimg+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	stopped := func(t *testing.T, cwd string, args ...string) *exec.Cmd {
		cmd := exec.Command(wrap, args...)
		cmd.Dir = cwd
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'T' {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatal("the wrapped qemu-img did not stop")
			}
		}
	}
	c := &inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}
	for _, tc := range []struct {
		name, cwd string
		args      []string
	}{
		{"absolute", "/", []string{"snapshot", "-q", "-c", "strata-1", img}},
		{"through a link", "/", []string{"snapshot", "-q", "-c", "strata-2", link}},
		{"relative", dir, []string{"resize", "-q", "disk.qcow2", "2M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := stopped(t, tc.cwd, tc.args...)
			if err := c.Check(context.Background(), "volume \"disk\"", img); err != nil {
				t.Errorf("the check before a change refused a tool that has not opened the image: %v", err)
			}
			start := time.Now()
			err := c.Wait(context.Background(), "volume \"disk\"", img, 300*time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d (qemu-img", cmd.Process.Pid)) || time.Since(start) < 300*time.Millisecond {
				t.Fatalf("Wait with a stopped qemu-img naming the image: %v after %s, want in use naming pid %d after the timeout", err, time.Since(start), cmd.Process.Pid)
			}
			// Let go, it runs and exits: Wait returns at once.
			done := make(chan error, 1)
			go func() { done <- c.Wait(context.Background(), "volume \"disk\"", img, time.Minute) }()
			if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("qemu-img %v: %v", tc.args, err)
			}
			if err := <-done; err != nil {
				t.Errorf("Wait after the tool exited: %v", err)
			}
		})
	}
	// A tool naming another image is no holder of this one.
	stopped(t, "/", "snapshot", "-q", "-a", "strata-1", other)
	if err := c.Wait(context.Background(), "volume \"disk\"", img, time.Second); err != nil {
		t.Errorf("Wait with a qemu-img naming another image: %v", err)
	}
}
