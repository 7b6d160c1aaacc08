package store_test

// volume create makes an image by a tool (qemu-img) while it checks and
// puts the volume's records, in one catalog transaction. On a shared
// catalog that transaction runs again when another process changed what
// it read: the image must be made once, recorded with its identity, and
// removed when the second run refuses the record.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/storagetest"
	"github.com/strata-vm/strata/storage/store"
)

// meddlingDir is the dir driver, which lets another process change the
// catalog while it makes an image (the first time only).
type meddlingDir struct {
	dir.Driver
	creates atomic.Int32
	meddle  func() error
	meddled error
}

func (d *meddlingDir) Create(ctx context.Context, p storage.Pool, path string, f storage.Format, size int64) error {
	if d.creates.Add(1) == 1 && d.meddle != nil {
		d.meddled = d.meddle()
	}
	return d.Driver.Create(ctx, p, path, f, size)
}

// sharedStores are two processes' stores on one etcd catalog; the first
// makes images through a meddlingDir.
func sharedStores(t *testing.T) (st, other *store.Store, pool string, d *meddlingDir) {
	t.Helper()
	url := storagetest.Etcd(t)
	home := filepath.Join(t.TempDir(), "home")
	open := func() *store.Store {
		s, err := store.OpenWith(home, 5*time.Second, catalog.Options{URL: url, Host: "a"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Catalog.Close() })
		return s
	}
	st, other = open(), open()
	d = &meddlingDir{}
	st.AddDriver(dir.Name, d)
	return st, other, filepath.Join(home, "pools", catalog.DefaultPool), d
}

func poolFiles(t *testing.T, d string) []string {
	t.Helper()
	es, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if !e.IsDir() && e.Name()[0] != '.' {
			out = append(out, e.Name())
		}
	}
	return out
}

// A conflict makes the transaction run again: the image is made once and
// recorded with its identity, as volume create says it.
func TestCreateOnASharedCatalogMakesTheImageOnce(t *testing.T) {
	st, other, pool, d := sharedStores(t)
	d.meddle = func() error {
		// Every create's transaction reads the pool's record.
		return other.Catalog.Update(func(tx *catalog.Tx) error {
			p, err := tx.Pool(catalog.DefaultPool)
			if err != nil {
				return err
			}
			return tx.Put("pools", p.Name, p)
		})
	}
	vi, err := st.CreateVolume(context.Background(), store.CreateOptions{Name: "v", Size: 1 << 20, Format: storage.FormatQcow2})
	if err != nil || d.meddled != nil {
		t.Fatalf("create: %v (meddling: %v)", err, d.meddled)
	}
	if n := d.creates.Load(); n != 1 {
		t.Errorf("the image was made %d times, want once", n)
	}
	var v storage.Volume
	if err := other.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.Volume("v"); return err }); err != nil {
		t.Fatal(err)
	}
	if v.File == nil || vi.File == nil || *v.File != *vi.File || v.Path != vi.Path {
		t.Errorf("recorded %+v (file %v), said %+v (file %v): want the image's identity in both", v, v.File, vi.Volume, vi.File)
	}
	if got := poolFiles(t, pool); !slices.Equal(got, []string{filepath.Base(v.Path)}) {
		t.Errorf("pool files %v, want the volume's only", got)
	}
}

// Another process takes the name while the image is made: the second run
// refuses the record, and the image goes.
func TestCreateWhoseNameIsTakenMeanwhileLeavesNoImage(t *testing.T) {
	st, other, pool, d := sharedStores(t)
	d.meddle = func() error {
		_, err := other.CreateVolume(context.Background(), store.CreateOptions{Name: "v", Size: 1 << 20, Format: storage.FormatRaw})
		return err
	}
	_, err := st.CreateVolume(context.Background(), store.CreateOptions{Name: "v", Size: 1 << 20, Format: storage.FormatQcow2})
	if d.meddled != nil {
		t.Fatal(d.meddled)
	}
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("create of a name taken meanwhile: %v, want already exists", err)
	}
	var v storage.Volume
	if err := other.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.Volume("v"); return err }); err != nil {
		t.Fatal(err)
	}
	if got := poolFiles(t, pool); !slices.Equal(got, []string{filepath.Base(v.Path)}) {
		t.Errorf("pool files %v, want the other's volume only (%s)", got, filepath.Base(v.Path))
	}
}
