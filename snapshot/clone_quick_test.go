package snapshot

// One linked clone in a directory pool is made inside the catalog
// transaction that records it (makeQuickClone). On a shared catalog that
// transaction runs again when another process changed what it read: the
// images must be made once, recorded once, and removed when the second
// run refuses the records.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/storagetest"
	"github.com/strata-vm/strata/storage/store"
)

// meddlingDir is the dir driver, which lets another process change the
// catalog while it makes a clone's image (the first time only).
type meddlingDir struct {
	dir.Driver
	clones  atomic.Int32
	meddle  func() error
	meddled error
}

func (d *meddlingDir) Clone(ctx context.Context, p storage.Pool, golden storage.Image, dst storage.Volume, plan storage.ClonePlan, prog storage.Progress) error {
	if d.clones.Add(1) == 1 && d.meddle != nil {
		d.meddled = d.meddle()
	}
	return d.Driver.Clone(ctx, p, golden, dst, plan, prog)
}

// sharedGolden is a golden image "base" of a qcow2 volume, on a catalog
// in etcd, and a second handle on that catalog (another process).
func sharedGolden(t *testing.T) (m *Manager, other *store.Store, pool string, d *meddlingDir) {
	t.Helper()
	url := storagetest.Etcd(t)
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.OpenWith(home, 5*time.Second, catalog.Options{URL: url, Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Catalog.Close() })
	m = New(st, 5*time.Second)
	ctx := context.Background()
	if _, err := st.CreateVolume(ctx, store.CreateOptions{Name: "v", Size: 1 << 20, Format: storage.FormatQcow2}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateGolden(ctx, GoldenOptions{Name: "base", Source: TargetRef{Name: "v", Volume: true}}); err != nil {
		t.Fatal(err)
	}
	if other, err = store.OpenWith(home, 5*time.Second, catalog.Options{URL: url, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Catalog.Close() })
	d = &meddlingDir{}
	st.AddDriver(dir.Name, d)
	return m, other, filepath.Join(home, "pools", catalog.DefaultPool), d
}

func filesIn(t *testing.T, d string) []string {
	t.Helper()
	es, err := os.ReadDir(d)
	if err != nil {
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

// touchDefaultPool rewrites the default pool's record as it is: every
// quick clone's transaction reads it (AddVolume checks the pool).
func touchDefaultPool(st *store.Store) error {
	return st.Catalog.Update(func(tx *catalog.Tx) error {
		p, err := tx.Pool(catalog.DefaultPool)
		if err != nil {
			return err
		}
		return tx.Put("pools", p.Name, p)
	})
}

// A conflict makes the transaction run again: the clone's image is made
// once, and recorded.
func TestQuickCloneOnASharedCatalogMakesItsImageOnce(t *testing.T) {
	m, other, pool, d := sharedGolden(t)
	d.meddle = func() error { return touchDefaultPool(other) }
	before := filesIn(t, pool)
	cs, err := m.Clone(context.Background(), CloneOptions{Golden: "base", Name: "c"})
	if err != nil || d.meddled != nil {
		t.Fatalf("clone: %v (meddling: %v)", err, d.meddled)
	}
	if n := d.clones.Load(); n != 1 {
		t.Errorf("the clone's image was made %d times, want once", n)
	}
	after := filesIn(t, pool)
	if len(after) != len(before)+1 {
		t.Errorf("pool files %v, then %v: want one more (the clone's)", before, after)
	}
	var v storage.Volume
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.Volume("c"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || len(cs[0].Disks) != 1 || cs[0].Disks[0].Path != v.Path || !slices.Contains(after, filepath.Base(v.Path)) {
		t.Errorf("clone %+v, recorded %+v, files %v", cs, v, after)
	}
	if fs, err := m.Doctor(context.Background(), false); err != nil || len(fs) > 0 {
		t.Errorf("doctor: %v %+v", err, fs)
	}
}

// Another process takes the clone's name while its image is made: the
// transaction's second run refuses the records, and the image goes.
func TestQuickCloneWhoseNameIsTakenMeanwhileLeavesNothing(t *testing.T) {
	m, other, pool, d := sharedGolden(t)
	d.meddle = func() error {
		_, err := other.CreateVolume(context.Background(), store.CreateOptions{Name: "c", Size: 1 << 20, Format: storage.FormatRaw})
		return err
	}
	before := filesIn(t, pool)
	_, err := m.Clone(context.Background(), CloneOptions{Golden: "base", Name: "c"})
	if d.meddled != nil {
		t.Fatal(d.meddled)
	}
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("clone to a name taken meanwhile: %v, want already exists", err)
	}
	var v storage.Volume
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.Volume("c"); return err }); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(before), filepath.Base(v.Path)) // the other's volume only
	slices.Sort(want)
	if got := filesIn(t, pool); !slices.Equal(got, want) {
		t.Errorf("pool files %v, want %v (a failed clone left its image)", got, want)
	}
}

// A quick clone whose transaction cannot start (the catalog busy past the
// lock timeout) made nothing: it fails as busy after one lock timeout,
// not two (waiting again for the catalog to find what to remove), and
// says nothing of images it could not remove.
func TestQuickCloneOnABusyCatalogFailsOnceAndQuietly(t *testing.T) {
	const timeout = 400 * time.Millisecond
	home := filepath.Join(t.TempDir(), "home")
	st, err := store.Open(home, timeout)
	if err != nil {
		t.Fatal(err)
	}
	m := New(st, timeout)
	ctx := context.Background()
	if _, err := st.CreateVolume(ctx, store.CreateOptions{Name: "v", Size: 1 << 20, Format: storage.FormatQcow2}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateGolden(ctx, GoldenOptions{Name: "base", Source: TargetRef{Name: "v", Volume: true}}); err != nil {
		t.Fatal(err)
	}
	o := CloneOptions{Golden: "base", Name: "c"}
	var g goldenRecord
	var dests []storage.Pool
	if err := st.Catalog.View(func(tx *catalog.Tx) (err error) {
		if g, err = goldenByName(tx, "base"); err != nil {
			return err
		}
		dests, err = clonePools(tx, g, o, o.CloneNames())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	plans, err := m.planClones(ctx, g, o, o.CloneNames(), dests)
	if err != nil || !quickClone(plans) {
		t.Fatalf("plan: %v (quick: %v)", err, err == nil && quickClone(plans))
	}
	// Another process holds the catalog (as bbolt's writer does).
	f, err := os.OpenFile(st.Catalog.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	defer func(l zerolog.Logger) { log.Logger = l }(log.Logger)
	log.Logger = zerolog.New(&logged)
	start := time.Now()
	_, err = m.makeQuickClone(ctx, g, plans)
	took := time.Since(start)
	if !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("clone on a busy catalog: %v, want busy", err)
	}
	if took > timeout*3/2 {
		t.Errorf("clone on a busy catalog failed after %s, lock timeout %s", took, timeout)
	}
	if logged.Len() > 0 {
		t.Errorf("clone on a busy catalog logged:\n%s", logged.String())
	}
}
