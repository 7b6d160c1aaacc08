package snapshot

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// A memory point's state file goes beside the guest's first disk that is
// a file in a directory: never into /dev/VG (an LV's directory, in
// memory) nor to a path relative to where strata runs (an RBD image has
// no directory); a guest with no such disk is refused, saying what to do.
func TestMemoryStateGoesBesideAFileDisk(t *testing.T) {
	g := Target{Key: catalog.GuestKey("g1"), Name: "web"}
	live := &liveGuest{driver: "qemu"}
	lv := storage.Volume{ID: "lv1", Path: "/dev/vg0/strata-v-lv1", Device: true}
	inactive := storage.Volume{ID: "lv2", Path: "/dev/vg0/strata-v-lv2"} // not a device while inactive
	rbd := storage.Volume{ID: "rb1", Path: "rbd:pool/strata-rb1"}
	file := storage.Volume{ID: "f1", Path: "/srv/pool/f1.qcow2"}
	p := &Point{UID: "u1"}
	if err := planMemory(g, live, []storage.Volume{lv, inactive, rbd, file}, p); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("/srv/pool", pointsDir, "f1-u1.state"); p.Memory == nil || p.Memory.Path != want {
		t.Fatalf("state file %+v, want %s", p.Memory, want)
	}
	p = &Point{UID: "u2"}
	err := planMemory(g, live, []storage.Volume{lv, inactive, rbd}, p)
	if !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "directory pool") || p.Memory != nil {
		t.Fatalf("a guest on an LV and an RBD image: %v (%+v)", err, p.Memory)
	}
}
