package store_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
	"github.com/strata-vm/strata/storage/store"
)

// A volume delete waits for the volume's lock with the volume it looked up
// by name before waiting. If that volume was deleted and another created
// under the same name meanwhile, the delete must not remove the new one:
// its lock was never taken and its image never checked for a writer (here
// a process has it open for writing, as a guest would).
func TestDeleteVolumeRefusesAVolumeReplacedWhileWaitingForItsLock(t *testing.T) {
	var st *store.Store
	nu, err := replacedWhileWaiting(t,
		func(s *store.Store) error { st = s; return s.DeleteVolume(context.Background(), "data", false) },
		func(_ string, nu storage.VolumeInfo) { storagetest.Writer(t, nu.Path) })
	if !errors.Is(err, storage.ErrBusy) {
		t.Errorf("delete of a volume replaced while it waited: %v, want busy", err)
	}
	if _, err := os.Stat(nu.Path); err != nil {
		t.Errorf("the new volume's image (open for writing) was removed: %v", err)
	}
	if err := st.Catalog.View(func(tx *catalog.Tx) error { _, err := tx.Volume("data"); return err }); err != nil {
		t.Errorf("the new volume's record was removed: %v", err)
	}
}

// The same for a resize: a volume made again under the name while the
// resize waited is not resized without its lock (here held, as a restore
// point being taken of it would hold it).
func TestResizeVolumeRefusesAVolumeReplacedWhileWaitingForItsLock(t *testing.T) {
	nu, err := replacedWhileWaiting(t,
		func(s *store.Store) error {
			_, err := s.ResizeVolume(context.Background(), "data", 2<<20, false)
			return err
		},
		func(home string, nu storage.VolumeInfo) {
			releaseNew, err := store.LockKey(home, catalog.VolumeKey(nu.ID).String(), "volume:data", 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(releaseNew)
		})
	if !errors.Is(err, storage.ErrBusy) {
		t.Errorf("resize of a volume replaced while it waited: %v, want busy", err)
	}
	if fi, err := os.Stat(nu.Path); err != nil || fi.Size() != 1<<20 {
		t.Errorf("the new volume (whose lock is held) was resized: %v %v", fi.Size(), err)
	}
}
