package libvirt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/libvirt"
	"github.com/strata-vm/strata/storage"
)

// libvirt's save and restore of a guest's memory, against the real
// libvirtd: a save that cannot finish within its deadline is aborted and
// the guest runs on; a save ends the domain and leaves the file root's
// (0600) with libvirt's complete header; another guest is never started
// from it (the save carries the guest's marker); the guest is, and it
// continues without a boot (its serial log, emptied at the restore, gets
// no new boot line).
func TestLibvirtSavesAndRestoresAGuestsMemory(t *testing.T) {
	e := newEnv(t)
	g := e.guest()
	c := ctx(t)
	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, g)
	dir := filepath.Join(e.dir, "points")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "g.state")

	// A small guest's save can end before the abort reaches it (the
	// guest is then saved, and the caller fails the point by the pause
	// it measured): it is restored and asked again.
	for try := 1; ; try++ {
		short, cancel := context.WithTimeout(c, time.Millisecond)
		err := e.d.SaveState(short, g, state)
		cancel()
		if errors.Is(err, boot.ErrPauseTooLong) {
			break
		}
		if err != nil || try == 5 {
			t.Fatalf("a save past its deadline: %v (want pause too long), try %d", err, try)
		}
		if _, err := e.d.Start(c, g, boot.StartOptions{FromState: state}); err != nil {
			t.Fatal(err)
		}
		os.Remove(state)
	}
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Running {
		t.Fatalf("the guest after an aborted save: %+v %v", st, err)
	}

	if err := e.d.SaveState(c, g, state); err != nil {
		t.Fatal(err)
	}
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Stopped {
		t.Fatalf("the guest after its save: %+v %v", st, err)
	}
	fi, err := os.Lstat(state)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("the state file: %v %v", fi, err)
	}
	if err := boot.CheckState(boot.Libvirt, state, fi.Size()); err != nil {
		t.Fatal(err)
	}

	other := e.guest()
	if _, err := e.d.Start(c, other, boot.StartOptions{FromState: state}); !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "not of guest") {
		t.Fatalf("another guest started from the state: %v", err)
	}
	if _, err := e.d.Start(c, g, boot.StartOptions{FromState: state}); err != nil {
		t.Fatal(err)
	}
	if st, err := e.d.Status(c, g); err != nil || st.State != boot.Running || st.PID == 0 {
		t.Fatalf("the guest after its restore: %+v %v", st, err)
	}
	time.Sleep(300 * time.Millisecond)
	if b, _ := os.ReadFile(g.Run.Path(libvirt.SerialLog)); strings.Contains(string(b), serialMarker) {
		t.Fatalf("the restored guest booted again: serial log %q", b)
	}
	if err := e.d.Kill(c, g); err != nil {
		t.Fatal(err)
	}
}

// waitSerial waits for the boot sector's line in the guest's serial log.
func waitSerial(t *testing.T, g *boot.Guest) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(g.Run.Path(libvirt.SerialLog)); strings.Contains(string(b), serialMarker) {
			return
		}
	}
	t.Fatal("the guest printed no serial line")
}
