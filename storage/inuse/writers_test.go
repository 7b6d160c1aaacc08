package inuse

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The kernel's answer to "is this file open for writing anywhere" (a read
// lease it refuses while a writer exists), which lets the in-use check
// skip the scan of every process's files.
func TestNoWritersFollowsTheFilesWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ro)
	if !noWriters(ro) {
		t.Skip("this kernel or filesystem gives no read leases: the check falls back to the scan")
	}
	// A reader does not count; a writer does, until it closes.
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !noWriters(ro) {
		t.Error("a reader counted as a writer")
	}
	r.Close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if noWriters(ro) {
		t.Error("a file open for writing was reported unwritten")
	}
	locked, unwritten, err := lockHeld(path, -1, true)
	if err != nil || locked || unwritten {
		t.Errorf("lockHeld with a writer: locked %v unwritten %v err %v", locked, unwritten, err)
	}
	w.Close()
	if !noWriters(ro) {
		t.Error("the writer closed, still reported")
	}
	// The lease is given back: a writer opening now does not wait.
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Errorf("a writer after the check: %v (a lease left behind?)", err)
	}
}
