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
