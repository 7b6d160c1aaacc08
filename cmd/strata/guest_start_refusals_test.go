package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// A volume whose image was replaced behind strata's back (by a symlink
// to any host file, or by another file) is not booted: QEMU would write
// whatever the path leads to. Refused as every other command refuses it
// (exit 7), the file the link leads to untouched.
func TestStartRefusesAVolumeImageSwappedBehindItsBack(t *testing.T) {
	home := shortHome(t)
	disk := bootSectorGuest(t, home, "sw", "STRATA-SW", boottest.PowerOff)
	victim := filepath.Join(t.TempDir(), "victim.img")
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(victim)
	if err := os.Rename(disk, disk+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, disk); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 7, []string{`volume "sw"`, "symbolic link"}, "guest", "start", "sw")
	if s := statusOf(t, home, "sw"); s.State != "stopped" || s.LastStop != nil {
		t.Fatalf("a guest on a swapped image was started: %+v", s)
	}
	if now, _ := os.Stat(victim); !now.ModTime().Equal(st.ModTime()) {
		t.Fatal("the file the symlink leads to was written")
	}

	// A different regular file put in its place.
	os.Remove(disk)
	if err := os.WriteFile(disk, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(disk, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 7, []string{`volume "sw"`, "no longer the file registered"}, "guest", "start", "sw")

	os.Remove(disk)
	if err := os.Rename(disk+".away", disk); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "start", "sw", "--wait-serial", "STRATA-SW")
}

// A definition QEMU refuses: its own message, the guest named once, and
// the guest left stopped.
func TestStartRefusedByQEMUSaysWhyOnce(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "cpu", "STRATA-CPU", boottest.PowerOff)
	ok(t, home, "guest", "set", "cpu", "vcpus=500", "maxvcpus=500")
	r := runIn(t, home, nil, "guest", "start", "cpu")
	if r.code == 0 || !strings.Contains(r.stderr, "Invalid SMP CPUs") || strings.Count(r.stderr, `guest "cpu"`) != 1 {
		t.Fatalf("start refused by QEMU: exit %d: %s", r.code, r.stderr)
	}
	if s := statusOf(t, home, "cpu"); s.State != "stopped" || s.LastStop != nil {
		t.Fatalf("after a start QEMU refused: %+v", s)
	}
}
