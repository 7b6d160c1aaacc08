package lvm_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/store"
)

// A second pool on a VG's thick volumes, or on a thin pool another pool
// has, is refused naming the first; thick and thin pools side by side
// on one VG are not. Through the store, against the LVM recorded in the
// test guest (the VG tvg and its thin pool "pool").
func TestSecondPoolOnTheSameLVsIsRefusedNamingTheFirst(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "home"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Catalog.Close()
	s.AddDriver(lvm.Name, lvm.Driver{Client: replay(t, map[string]string{"tvg": "vgs", "tvg/pool": "lvs-thin-pool"})})
	ctx := context.Background()
	add := func(name, thin string) error {
		_, err := s.AddPool(ctx, storage.Pool{Name: name, Driver: lvm.Name, LVM: &storage.LVMPool{VG: "tvg", ThinPool: thin}})
		return err
	}
	if err := add("thick", ""); err != nil {
		t.Fatal(err)
	}
	if err := add("fast", "pool"); err != nil {
		t.Fatalf("a thin pool beside a thick one on the same VG: %v", err)
	}
	for _, c := range []struct{ name, thin, first string }{{"thick2", "", "thick"}, {"fast2", "pool", "fast"}} {
		err := add(c.name, c.thin)
		if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), `pool "`+c.first+`"`) {
			t.Fatalf("pool %s on the LVs of pool %s: %v", c.name, c.first, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
	var names []string
	pools, err := s.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		names = append(names, p.Pool.Name)
	}
	if slices.Sort(names); !slices.Equal(names, []string{"default", "fast", "thick"}) {
		t.Fatalf("pools after the refusals: %v", names)
	}
	// Another VG's pool, or the same names elsewhere, do not overlap.
	if err := (lvm.Driver{}).Overlap(storage.Pool{Name: "a", LVM: &storage.LVMPool{VG: "vg1"}}, storage.Pool{Name: "b", LVM: &storage.LVMPool{VG: "vg2"}}); err != nil {
		t.Fatal(err)
	}
	if err := (lvm.Driver{}).Overlap(storage.Pool{Name: "a", LVM: &storage.LVMPool{VG: "vg1", ThinPool: "t1"}}, storage.Pool{Name: "b", LVM: &storage.LVMPool{VG: "vg1", ThinPool: "t2"}}); err != nil {
		t.Fatal(err)
	}
}
