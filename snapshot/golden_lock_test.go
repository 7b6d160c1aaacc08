package snapshot

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/store"
)

// A golden operation waits for the golden's lock with the golden it looked
// up by name. If another golden took that name meanwhile (the first was
// deleted, a new one is being created, its creator holding its lock), the
// operation must not run on the new one without its lock.
func TestGoldenDeleteRefusesAGoldenReplacedWhileWaitingForItsLock(t *testing.T) {
	home, _, m, old := newGoldenBase(t)
	ctx := context.Background()
	l, err := lockTarget(home, goldenTarget(old), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Another process changes the catalog (a handle of its own: a Catalog
	// is one process's, not shared by goroutines).
	other, err := store.Open(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.DeleteGolden(ctx, "base") }()
	time.Sleep(300 * time.Millisecond) // the delete has looked "base" up and waits for its lock

	// "base" is now another golden, whose creator holds its lock.
	nu := old
	nu.ID = storage.NewID()
	if err := other.Catalog.Update(func(tx *catalog.Tx) error {
		if err := tx.Delete(bGoldens, old.ID); err != nil {
			return err
		}
		if err := tx.Put(bGoldens, nu.ID, nu); err != nil {
			return err
		}
		return tx.Put(bGoldenNames, nu.Name, nu.ID)
	}); err != nil {
		t.Fatal(err)
	}
	ln, err := lockTarget(home, goldenTarget(nu), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.unlock()
	l.unlock()

	if err := <-done; !errors.Is(err, storage.ErrBusy) {
		t.Errorf("delete of a golden replaced while it waited: %v, want busy", err)
	}
	var now goldenRecord
	if err := other.Catalog.View(func(tx *catalog.Tx) (err error) { now, err = goldenByName(tx, "base"); return err }); err != nil || now.ID != nu.ID || now.State != nu.State {
		t.Errorf("the new golden after the delete: %+v, %v", now, err)
	}
}

// A clone waits for the golden's lock with the golden it looked up by
// name, and plans under the lock: a golden replaced meanwhile is refused
// (no plan of the new one made without its lock, no image made), and a
// golden deleted meanwhile is not found.
func TestCloneRefusesAGoldenReplacedOrDeletedWhileWaitingForItsLock(t *testing.T) {
	for _, replace := range []bool{true, false} {
		home, _, m, old := newGoldenBase(t)
		ctx := context.Background()
		pool := filepath.Join(home, "pools", catalog.DefaultPool)
		before, _ := filepath.Glob(filepath.Join(pool, "*"))
		l, err := lockTarget(home, goldenTarget(old), 0)
		if err != nil {
			t.Fatal(err)
		}
		// Another process changes the catalog (a handle of its own: a
		// Catalog is one process's, not shared by goroutines).
		other, err := store.Open(home, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := m.Clone(ctx, CloneOptions{Golden: "base", Name: "c"}); done <- err }()
		time.Sleep(300 * time.Millisecond) // the clone has looked "base" up and waits for its lock

		if err := other.Catalog.Update(func(tx *catalog.Tx) error {
			if err := tx.Delete(bGoldens, old.ID); err != nil {
				return err
			}
			if !replace {
				return tx.Delete(bGoldenNames, old.Name)
			}
			nu := old
			nu.ID = storage.NewID()
			if err := tx.Put(bGoldens, nu.ID, nu); err != nil {
				return err
			}
			return tx.Put(bGoldenNames, nu.Name, nu.ID)
		}); err != nil {
			t.Fatal(err)
		}
		l.unlock()

		want := storage.ErrBusy
		if !replace {
			want = storage.ErrNotFound
		}
		if err := <-done; !errors.Is(err, want) {
			t.Errorf("clone of a golden replaced (%v) or deleted while it waited: %v, want %v", replace, err, want)
		}
		if after, _ := filepath.Glob(filepath.Join(pool, "*")); len(after) != len(before) {
			t.Errorf("the refused clone left files: %v, before %v", after, before)
		}
		if err := other.Catalog.View(func(tx *catalog.Tx) error {
			if _, err := tx.Volume("c"); err == nil {
				return errors.New("volume c recorded")
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
}

// newGoldenBase is a home holding golden image "base" of a 1 MiB qcow2
// volume "v": its store, manager and the golden's record.
func newGoldenBase(t *testing.T) (string, *store.Store, *Manager, goldenRecord) {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.Open(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := New(st, 5*time.Second)
	ctx := context.Background()
	if _, err := st.CreateVolume(ctx, store.CreateOptions{Name: "v", Size: 1 << 20, Format: storage.FormatQcow2}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateGolden(ctx, GoldenOptions{Name: "base", Source: TargetRef{Name: "v", Volume: true}}); err != nil {
		t.Fatal(err)
	}
	var g goldenRecord
	if err := st.Catalog.View(func(tx *catalog.Tx) (err error) { g, err = goldenByName(tx, "base"); return err }); err != nil {
		t.Fatal(err)
	}
	return home, st, m, g
}
