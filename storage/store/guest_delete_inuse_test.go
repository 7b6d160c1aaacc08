package store_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/store"
)

// guest delete --with-disks removes the guest's images as volume delete
// does, so it refuses as volume delete does when a process writes one (a
// QEMU started by hand, a tool): nothing is deleted, guest nor disks.
func TestGuestDeleteWithDisksRefusesADiskOpenForWriting(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.Open(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var disks []storage.VolumeInfo
	for _, n := range []string{"sys", "data"} {
		v, err := st.CreateVolume(ctx, store.CreateOptions{Name: n, Size: 1 << 20, Format: storage.FormatRaw})
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, v)
	}
	if err := st.Catalog.Update(func(tx *catalog.Tx) error {
		return tx.PutGuest(storage.Guest{ID: "00000000000000aa", Name: "web", Disks: []string{disks[0].ID, disks[1].ID}, Created: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disks[1].Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	writer := exec.Command("sleep", "30")
	writer.ExtraFiles = []*os.File{f}
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { writer.Process.Kill(); writer.Wait() })

	if err := st.DeleteVolume(ctx, "data", false); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("volume delete of the written disk: %v, want in use", err) // the guest uses it too
	}
	err = st.DeleteGuest(ctx, "web", []string{"sys", "data"})
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
