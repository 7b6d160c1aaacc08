package main_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage/inuse"
)

// holdQemuLock opens a qcow2 image with qemu-io, which holds QEMU's image
// locks (as a running guest or a writing qemu-img does) until released.
func holdQemuLock(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", "qcow2", "-c", "sleep 60000", path)
	var out bytes.Buffer
	cmd.Stderr, cmd.Stdout = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the lock is held, asking as strata's in-use check does
	// (F_OFD_GETLK: it takes no lock; a qemu-img info would, and qemu-io
	// opening at that moment would fail to get its write lock).
	locks := &inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}
	for i := 0; ; i++ {
		if locks.Check(context.Background(), "image", path) != nil {
			break
		}
		if i > 200 {
			t.Fatalf("qemu-io never took the image lock: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := false
	release = func() {
		if !done {
			done = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	return release
}

// volume list and info read qcow2 images with -U: an image QEMU holds
// (a running guest, a restore point being taken) is listed, not an error.
func TestReadOnlyCommandsIgnoreQemuLock(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "q", "--size", "16M", "--format", "qcow2", "--partition", "gpt")
	holdQemuLock(t, v.Path)
	r := runIn(t, home, nil, "volume", "list")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("volume list with the image held: exit %d\n%s", r.code, r.stderr)
	}
	jsonOf(t, home, &v, "volume", "info", "q")
	if v.PartitionTable != "gpt" {
		t.Errorf("partition table read under QEMU's lock: %q", v.PartitionTable)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor with the image held: exit %d\n%s", r.code, r.stderr)
	}
}

// volume resize waits for the volume's lock (a restore point operation
// holds it, and its qemu-img holds QEMU's lock on the image) instead of
// failing on qemu-img's lock as it reads the image first.
func TestResizeWaitsForVolumeLock(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "q", "--size", "16M", "--format", "qcow2")
	os.MkdirAll(filepath.Join(home, "locks"), 0o700)
	lf, err := os.OpenFile(filepath.Join(home, "locks", "v-"+v.ID+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	release := holdQemuLock(t, v.Path)
	done := make(chan result, 1)
	go func() { done <- runIn(t, home, nil, "--output", "json", "volume", "resize", "q", "--size", "32M") }()
	select {
	case r := <-done:
		t.Fatalf("resize did not wait for the volume's lock: exit %d\n%s", r.code, r.stderr)
	case <-time.After(time.Second):
	}
	release()
	unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	if r := <-done; r.code != 0 {
		t.Fatalf("resize after the lock was released: exit %d\n%s", r.code, r.stderr)
	}
	jsonOf(t, home, &v, "volume", "info", "q")
	if v.VirtualSize != 32<<20 {
		t.Errorf("size %d after resize", v.VirtualSize)
	}
}

// A volume list loop never makes a restore point operation on a qcow2
// volume fail (its qemu-img dd without -U held a shared lock that
// qemu-img snapshot could not get past).
func TestPointOperationsSurviveVolumeListLoop(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "create", "q", "--size", "16M", "--format", "qcow2", "--partition", "gpt")
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			default:
				runIn(t, home, nil, "volume", "list")
			}
		}
	}()
	failed := 0
	for i := 0; i < 30; i++ {
		if r := runIn(t, home, nil, "snapshot", "create", "--volume", "q"); r.code != 0 {
			failed++
			t.Logf("snapshot create: exit %d: %s", r.code, r.stderr)
		}
	}
	close(stop)
	<-loopDone
	if failed > 0 {
		t.Errorf("%d of 30 restore point operations failed beside a volume list loop", failed)
	}
}
