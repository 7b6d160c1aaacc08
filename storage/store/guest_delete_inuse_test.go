package store_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// guest delete --with-disks removes the guest's images as volume delete
// does, so it refuses as volume delete does when a process writes one (a
// QEMU started by hand, a tool): nothing is deleted, guest nor disks.
func TestGuestDeleteWithDisksRefusesADiskOpenForWriting(t *testing.T) {
	st, _ := openTestStore(t)
	ctx := context.Background()
	disks := []storage.VolumeInfo{rawVolume(t, st, "sys"), rawVolume(t, st, "data")}
	if err := st.Catalog.Update(func(tx *catalog.Tx) error {
		return tx.PutGuest(storage.Guest{ID: "00000000000000aa", Name: "web", Disks: []string{disks[0].ID, disks[1].ID}, Created: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	storagetest.Writer(t, disks[1].Path)

	if err := st.DeleteVolume(ctx, "data", false); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("volume delete of the written disk: %v, want in use", err) // the guest uses it too
	}
	err := st.DeleteGuest(ctx, "web", []string{"sys", "data"})
	if !errors.Is(err, storage.ErrInUse) {
		t.Errorf("guest delete with a disk open for writing: %v, want in use", err)
	}
	for _, v := range disks {
		if _, err := os.Stat(v.Path); err != nil {
			t.Errorf("disk %s: %v", v.Name, err)
		}
	}
	if err := st.Catalog.View(func(tx *catalog.Tx) error { _, err := tx.Guest("web"); return err }); err != nil {
		t.Errorf("the guest: %v", err)
	}
}

// DeleteGuestThen runs then only once nothing strata checks refuses the
// delete (a guest a restore point holds is refused before it), a failure
// of then deletes nothing, and a commit refused after then returns its
// error with the guest still there (the caller says what to do).
func TestGuestDeleteThenRunsOnlyOnceTheChecksPass(t *testing.T) {
	st, _ := openTestStore(t)
	ctx := context.Background()
	sys := rawVolume(t, st, "sys")
	const id = "00000000000000aa"
	if err := st.Catalog.Update(func(tx *catalog.Tx) error {
		return tx.PutGuest(storage.Guest{ID: id, Name: "web", Disks: []string{sys.ID}, Created: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	hold := func(put bool) {
		t.Helper()
		if err := st.Catalog.Update(func(tx *catalog.Tx) error {
			if put {
				return tx.PutHold(catalog.HeldGuest, id, "point:g-"+id+"/1", catalog.Hold{Holder: catalog.HolderPoint, TargetKind: catalog.KindGuest, TargetID: id, Point: 1})
			}
			return tx.DeleteHold(catalog.HeldGuest, id, "point:g-"+id+"/1")
		}); err != nil {
			t.Fatal(err)
		}
	}
	exists := func() bool {
		return st.Catalog.View(func(tx *catalog.Tx) error { _, err := tx.Guest("web"); return err }) == nil
	}
	ran := 0
	then := func() error { ran++; return nil }

	hold(true)
	if err := st.DeleteGuestThen(ctx, "web", nil, then); !errors.Is(err, storage.ErrInUse) || ran != 0 || !exists() {
		t.Fatalf("delete of a guest a point holds: %v, then ran %d times, guest there %v", err, ran, exists())
	}
	hold(false)
	boom := errors.New("undefine failed")
	if err := st.DeleteGuestThen(ctx, "web", nil, func() error { return boom }); !errors.Is(err, boom) || !exists() {
		t.Fatalf("delete whose then fails: %v, guest there %v", err, exists())
	}
	// Something the locks do not keep out changes between the checks
	// and the commit: the commit refuses, after then.
	if err := st.DeleteGuestThen(ctx, "web", nil, func() error { ran++; hold(true); return nil }); !errors.Is(err, storage.ErrInUse) || ran != 1 || !exists() {
		t.Fatalf("delete refused at its commit: %v, then ran %d times, guest there %v", err, ran, exists())
	}
	hold(false)
	if err := st.DeleteGuestThen(ctx, "web", []string{"sys"}, then); err != nil || ran != 2 || exists() {
		t.Fatalf("delete: %v, then ran %d times, guest there %v", err, ran, exists())
	}
	if _, err := os.Stat(sys.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the deleted disk's image: %v", err)
	}
}
