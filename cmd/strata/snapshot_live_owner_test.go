package main_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A live full copy of a disk whose image another user owns (an imported
// file, or libvirt's QEMU user) is written by QEMU through a descriptor
// strata passes it: the point's file is strata's own (0600) and its
// directory root-only from the moment it exists, also while QEMU writes
// it (strata killed during the pause shows the file as it is then), so
// the image's owner can never hold a descriptor of the point and alter
// it afterwards.
func TestLiveCopyPointFileIsNeverHandedToTheImageOwner(t *testing.T) {
	home := shortHome(t)
	_, raw := liveGuest(t, home, "ow", "STRATA-OW")
	if err := os.Chown(raw, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(raw), ".strata-points")
	check := func(when string) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) == 0 {
			t.Fatalf("%s: no point file in %s (%v): the test needs one", when, dir, err)
		}
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %s is %v (%v), want 0700", when, dir, st.Mode().Perm(), err)
		}
		for _, e := range ents {
			st, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if sys := st.Sys().(*syscall.Stat_t); sys.Uid != uint32(os.Geteuid()) || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: point file %s is owned by uid %d, mode %v: handed to the image's owner", when, e.Name(), sys.Uid, st.Mode().Perm())
			}
		}
	}
	r := runIn(t, home, []string{"STRATA_CRASH_AT=create:live-paused"}, "snapshot", "create", "ow", "--name", "torn")
	if r.code == 0 {
		t.Fatalf("the killed point exited 0: %s", r.stderr)
	}
	check("while QEMU writes the copy")

	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "ow", "--name", "whole")
	check("after the point")
	want, _ := os.ReadFile(raw)
	got, err := os.ReadFile(p.Disks[1].Ref)
	if err != nil || string(got) != string(want) {
		t.Fatalf("the copy passed as a descriptor differs from the disk (%v)", err)
	}
}
