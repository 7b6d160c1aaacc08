package catalog_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// A home an older strata made 0700 (home, pools, default pool) becomes
// passable (0711) when opened, so libvirt's QEMU user reaches the images
// libvirt hands it; the catalog, backups and runtime directories stay
// private, and a mode the admin chose is kept.
func TestOpenMakesOldPrivateHomePassable(t *testing.T) {
	old := syscall.Umask(0o077) // as strata runs
	defer syscall.Umask(old)
	home := filepath.Join(t.TempDir(), "home")
	pool := filepath.Join(home, "pools", catalog.DefaultPool)
	for _, d := range []string{home, filepath.Join(home, "pools"), pool, filepath.Join(home, "run"), filepath.Join(home, catalog.BackupDir)} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mine := filepath.Join(home, "mine")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(mine, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Open(home, time.Second); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]os.FileMode{home: 0o711, filepath.Join(home, "pools"): 0o711, pool: 0o711,
		filepath.Join(home, "run"): 0o700, filepath.Join(home, catalog.BackupDir): 0o700, mine: 0o750} {
		if got := mode(t, d); got != want {
			t.Errorf("%s: mode %o, want %o", d, got, want)
		}
	}
}

// A new home under umask 077 is passable all the way to its default pool,
// and the catalog file is root's alone.
func TestNewHomeIsPassableAndCatalogPrivate(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	home := filepath.Join(t.TempDir(), "a", "home")
	c, err := catalog.Open(home, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(func(*catalog.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]os.FileMode{filepath.Dir(home): 0o711, home: 0o711, filepath.Join(home, "pools"): 0o711,
		filepath.Join(home, "pools", catalog.DefaultPool): 0o711, c.Path(): 0o600} {
		if got := mode(t, d); got != want {
			t.Errorf("%s: mode %o, want %o", d, got, want)
		}
	}
	if err := storage.MkdirPassable(filepath.Join(home, "x", "y")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(home, "x"), filepath.Join(home, "x", "y")} {
		if got := mode(t, d); got != 0o711 {
			t.Errorf("%s: mode %o, want 711", d, got)
		}
	}
}
