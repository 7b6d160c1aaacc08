package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// guest delete --with-points --with-disks of a guest one of whose disks a
// process writes (a QEMU started by hand, here a process holding it open
// for writing) refuses before anything goes: its restore points (full
// copies of raw disks, which a delete never needs the disk for), the
// guest and its disks all stay.
func TestGuestDeleteWithPointsAndDisksInUseDeletesNothing(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	ok(t, h, "volume", "create", "a", "--size", "1M")
	ok(t, h, "volume", "create", "b", "--size", "1M")
	ok(t, h, "guest", "define", "g", "--vnc=false", "--disk", "a", "--disk", "b")
	ok(t, h, "snapshot", "create", "g", "--name", "keep")
	var vols []struct{ Name, Path string }
	if err := json.Unmarshal([]byte(ok(t, h, "-o", "json", "volume", "list")), &vols); err != nil {
		t.Fatal(err)
	}
	var b string
	for _, v := range vols {
		if v.Name == "b" {
			b = v.Path
		}
	}
	storagetest.Writer(t, b)

	if r := runIn(t, h, nil, "guest", "delete", "g", "--with-points", "--with-disks"); r.code != 5 {
		t.Fatalf("guest delete with a disk in use: exit %d, stderr %q; want 5", r.code, r.stderr)
	}
	var points []struct{ Name string }
	if err := json.Unmarshal([]byte(ok(t, h, "-o", "json", "snapshot", "list", "g")), &points); err != nil || len(points) != 1 {
		t.Errorf("the guest's points after a refused delete: %v %v", points, err)
	}
	ok(t, h, "guest", "show", "g")
	for _, v := range vols {
		if _, err := os.Stat(v.Path); err != nil {
			t.Errorf("disk %s: %v", v.Name, err)
		}
	}
}
