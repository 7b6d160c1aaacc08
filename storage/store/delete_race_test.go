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

// A volume delete waits for the volume's lock with the volume it looked up
// by name before waiting. If that volume was deleted and another created
// under the same name meanwhile, the delete must not remove the new one:
// its lock was never taken and its image never checked for a writer (here
// a process has it open for writing, as a guest would).
func TestDeleteVolumeRefusesAVolumeReplacedWhileWaitingForItsLock(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.Open(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, err := st.CreateVolume(ctx, store.CreateOptions{Name: "data", Size: 1 << 20, Format: storage.FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	release, err := store.LockKey(home, catalog.VolumeKey(old.ID).String(), "volume:data", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- st.DeleteVolume(ctx, "data", false) }()
	time.Sleep(300 * time.Millisecond) // the delete has looked "data" up and waits for its lock

	// Meanwhile "data" is forgotten and made again, and a writer opens it.
	if err := st.Catalog.Update(func(tx *catalog.Tx) error { return tx.RemoveVolume(old.Volume) }); err != nil {
		t.Fatal(err)
	}
	nu, err := st.CreateVolume(ctx, store.CreateOptions{Name: "data", Size: 1 << 20, Format: storage.FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(nu.Path, os.O_RDWR, 0)
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
	release()

	err = <-done
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
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.Open(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, err := st.CreateVolume(ctx, store.CreateOptions{Name: "data", Size: 1 << 20, Format: storage.FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	release, err := store.LockKey(home, catalog.VolumeKey(old.ID).String(), "volume:data", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := st.ResizeVolume(ctx, "data", 2<<20, false); done <- err }()
	time.Sleep(300 * time.Millisecond) // the resize has looked "data" up and waits for its lock

	if err := st.Catalog.Update(func(tx *catalog.Tx) error { return tx.RemoveVolume(old.Volume) }); err != nil {
		t.Fatal(err)
	}
	nu, err := st.CreateVolume(ctx, store.CreateOptions{Name: "data", Size: 1 << 20, Format: storage.FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	releaseNew, err := store.LockKey(home, catalog.VolumeKey(nu.ID).String(), "volume:data", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseNew()
	release()

	err = <-done
	if !errors.Is(err, storage.ErrBusy) {
		t.Errorf("resize of a volume replaced while it waited: %v, want busy", err)
	}
	if fi, err := os.Stat(nu.Path); err != nil || fi.Size() != 1<<20 {
		t.Errorf("the new volume (whose lock is held) was resized: %v %v", fi.Size(), err)
	}
}
