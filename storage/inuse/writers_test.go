package inuse

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	locked, ws, err := lockHeld(path, -1, true)
	if err != nil || locked || ws != writersSome {
		t.Errorf("lockHeld with a writer: locked %v writers %v err %v", locked, ws, err)
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

// helperEnv makes the test binary a process that writes the image
// without a descriptor strata can see (see TestWriterHelperProcess).
const helperEnv = "STRATA_INUSE_TEST_WRITER"

// A process that keeps writing access to the image with no descriptor
// open on it: "mmap" maps it shared and writable, "flight" leaves a
// descriptor in flight on a unix socket; both close their descriptor.
// It says so on stdout and waits to be killed.
func TestWriterHelperProcess(t *testing.T) {
	how, path, ok := strings.Cut(os.Getenv(helperEnv), ":")
	if !ok {
		t.Skip("only a helper process for the tests that start it")
	}
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		os.Exit(1)
	}
	switch how {
	case "mmap":
		if _, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			os.Exit(1)
		}
	case "flight":
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil || unix.Sendmsg(sp[0], []byte{0}, unix.UnixRights(fd), nil, 0) != nil {
			os.Exit(1)
		}
	}
	unix.Close(fd)
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}

func startWriter(t *testing.T, how, path string) int {
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriterHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+how+":"+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("the writer did not start: %q %v", line, err)
	}
	return cmd.Process.Pid
}

// A writer the kernel counts is never skipped because its descriptor is
// closed: a shared writable mapping is found by the process's maps, and
// a writer nobody can name (a descriptor in flight) is still reported.
func TestWritersWithoutADescriptorAreHolders(t *testing.T) {
	dir := t.TempDir()
	mapped, flight := filepath.Join(dir, "mapped"), filepath.Join(dir, "flight")
	for _, p := range []string{mapped, flight} {
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := unix.Open(mapped, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ro)
	if !noWriters(ro) {
		t.Skip("this kernel or filesystem gives no read leases")
	}
	pid := startWriter(t, "mmap", mapped)
	startWriter(t, "flight", flight)
	c := &Checker{Sources: []Source{Processes{}}}
	hs, err := c.HoldersAll(context.Background(), []Image{{Path: mapped}, {Path: flight}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs[0]) != 1 || hs[0][0].PID != pid || hs[0][0].How != "has the image mapped for writing" {
		t.Errorf("a shared writable mapping of the image: holders %v, want pid %d mapping it", hs[0], pid)
	}
	if len(hs[1]) != 1 || hs[1][0].PID != 0 || !strings.Contains(hs[1][0].How, "writer of the image that strata cannot see") {
		t.Errorf("a descriptor in flight: holders %v, want one writer without a name", hs[1])
	}
	// strata's own writing is not a holder.
	own := filepath.Join(dir, "own")
	if err := os.WriteFile(own, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(own, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if hs, err := c.Holders(context.Background(), own); err != nil || len(hs) != 0 {
		t.Errorf("strata's own writer: holders %v, err %v", hs, err)
	}
}

// A loop device writes its backing file as the kernel: named once, as
// the loop device, not also as a writer strata cannot see.
func TestLoopDeviceIsTheOneNamedWriterOfItsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", path).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	c := &Checker{Sources: []Source{Processes{}, LoopDevices{}}}
	hs, err := c.Holders(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Domain != dev {
		t.Errorf("holders of a loop device's file: %v, want the loop device %s alone", hs, dev)
	}
}
