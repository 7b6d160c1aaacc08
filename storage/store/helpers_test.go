package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/store"
)

// openTestStore opens a store in a new state home.
func openTestStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.Open(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return st, home
}

// rawVolume creates a 1 MiB raw volume.
func rawVolume(t *testing.T, st *store.Store, name string) storage.VolumeInfo {
	t.Helper()
	v, err := st.CreateVolume(context.Background(), store.CreateOptions{Name: name, Size: 1 << 20, Format: storage.FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// replacedWhileWaiting runs op on volume "data" while its lock is held,
// and meanwhile forgets "data" and makes it again; it returns the new
// volume, then (once replace has run on it) lets op take the old lock and
// returns op's error.
func replacedWhileWaiting(t *testing.T, op func(st *store.Store) error, replace func(home string, nu storage.VolumeInfo)) (storage.VolumeInfo, error) {
	t.Helper()
	st, home := openTestStore(t)
	old := rawVolume(t, st, "data")
	release, err := store.LockKey(home, catalog.VolumeKey(old.ID).String(), "volume:data", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- op(st) }()
	time.Sleep(300 * time.Millisecond) // op has looked "data" up and waits for its lock
	if err := st.Catalog.Update(func(tx *catalog.Tx) error { return tx.RemoveVolume(old.Volume) }); err != nil {
		t.Fatal(err)
	}
	nu := rawVolume(t, st, "data")
	replace(home, nu)
	release()
	return nu, <-done
}
