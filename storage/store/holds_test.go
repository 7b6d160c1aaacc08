package store_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/store"
)

// strataCLI builds the strata command (which links the snapshot package:
// it records restore points and golden images) and returns a runner.
func strataCLI(t *testing.T, home string) func(args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "strata")
	if out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", bin, "../../cmd/strata").CombinedOutput(); err != nil {
		t.Fatalf("build strata: %v\n%s", err, out)
	}
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "STRATA_HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("strata %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// The delete guards are catalog data the store checks itself: a program
// that opens the store without the snapshot package (this test links
// none) still cannot delete a volume or guest that restore points hold, nor
// forget a pool that holds a golden image.
func TestStoreAloneKeepsWhatPointsAndGoldensHold(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	strata := strataCLI(t, home)
	extra := filepath.Join(t.TempDir(), "extra")
	strata("pool", "add", "extra", "--path", extra)
	strata("volume", "create", "data", "--size", "1M")
	strata("snapshot", "create", "--volume", "data", "--name", "first")
	strata("volume", "create", "sys", "--size", "1M")
	strata("guest", "define", "web", "--disk", "sys")
	strata("snapshot", "create", "web")
	strata("volume", "create", "base", "--size", "1M")
	strata("golden", "create", "gold", "--volume", "base", "--pool", "extra")

	st, err := store.Open(home, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = st.DeleteVolume(ctx, "data", false)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "volume:data#1") {
		t.Errorf("delete of a volume a point holds: %v", err)
	}
	err = st.DeleteGuest(ctx, "web", nil)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "1 restore point") {
		t.Errorf("delete of a guest with a point: %v", err)
	}
	err = st.RemovePool(ctx, "extra")
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `golden images "gold"`) {
		t.Errorf("remove of a pool holding a golden: %v", err)
	}
	if err := st.DeleteVolume(ctx, "base", false); err != nil {
		t.Errorf("a volume only frozen from is not held: %v", err)
	}

	// Once the points and the golden are gone, so are their holds.
	strata("snapshot", "delete", "--volume", "data", "first")
	strata("snapshot", "delete", "web", "1")
	strata("golden", "delete", "gold")
	for _, err := range []error{
		st.DeleteVolume(ctx, "data", false),
		st.DeleteGuest(ctx, "web", []string{"sys"}),
		st.RemovePool(ctx, "extra"),
	} {
		if err != nil {
			t.Errorf("after the holders are gone: %v", err)
		}
	}
}

// A catalog from before holds existed gets them from its point and golden
// records by the snapshot package's catalog migration.
func TestHoldsBuiltForAnOlderCatalog(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	strata := strataCLI(t, home)
	strata("volume", "create", "data", "--size", "1M")
	strata("snapshot", "create", "--volume", "data")
	c, err := catalog.Open(home, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// As a catalog of the snapshot schema 1 was: no holds.
	if err := c.Update(func(tx *catalog.Tx) error {
		if err := tx.DeleteBucket(catalog.HoldsBucket); err != nil {
			return err
		}
		return tx.Put("meta", "schema_version:snapshot", 1)
	}); err != nil {
		t.Fatal(err)
	}
	strata("volume", "list") // any command migrates
	st, err := store.Open(home, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteVolume(context.Background(), "data", false); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("delete of a held volume after the migration: %v", err)
	}
}
