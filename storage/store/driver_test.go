package store_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/store"
)

func open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A method recorded with a point finds the driver that records it; an
// unknown one is refused with every method the drivers offer.
func TestPointDriverIsFoundByTheRecordedMethod(t *testing.T) {
	s := open(t)
	for _, m := range []string{dir.MethodQcow2, dir.MethodReflink, dir.MethodCopy} {
		d, pm, err := s.PointDriver(m)
		if err != nil || pm.Name != m {
			t.Fatalf("PointDriver(%s): %v %+v", m, err, pm)
		}
		if _, ok := d.(dir.Driver); !ok {
			t.Fatalf("PointDriver(%s) is %T", m, d)
		}
	}
	_, _, err := s.PointDriver("snapshot-by-magic")
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "use qcow2-internal, reflink or copy") {
		t.Fatalf("unknown method: %v", err)
	}
}

// A volume of a pool is served by the pool's driver with the pool's
// record; a volume imported in place (no pool) by the dir driver, with
// its image's folder as the pool.
func TestVolumeDriverOfPoolAndInPlaceVolumes(t *testing.T) {
	s := open(t)
	_, p, err := s.VolumeDriver(storage.Volume{Pool: catalog.DefaultPool, Path: "/somewhere/x.img"})
	if err != nil || p.Name != catalog.DefaultPool || p.Driver != dir.Name {
		t.Fatalf("volume of the default pool: %+v %v", p, err)
	}
	d, p, err := s.VolumeDriver(storage.Volume{Path: "/srv/images/disk.img"})
	if err != nil || p.Path != filepath.Clean("/srv/images") || p.Driver != dir.Name {
		t.Fatalf("in-place volume: %+v %v", p, err)
	}
	if _, ok := d.(dir.Driver); !ok {
		t.Fatalf("in-place volume served by %T", d)
	}
}
