package catalog_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// A page bbolt cannot read is storage.ErrDamaged from View and Update,
// never a panic, and recorded; a panic raised by the caller's own code
// inside a transaction is not taken for damage: it goes on, and nothing
// is recorded.
func TestDamageIsAnErrorAndCallerPanicsAreNot(t *testing.T) {
	home := t.TempDir()
	c, err := catalog.Open(home, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(func(tx *catalog.Tx) error { return tx.Put("things", "a", "b") }); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != "a bug in strata" {
				t.Errorf("recovered %v, want the caller's panic", r)
			}
		}()
		_ = c.View(func(*catalog.Tx) error { panic("a bug in strata") })
	}()
	if c.Damaged() != "" {
		t.Fatalf("a caller's panic was recorded as damage: %s", c.Damaged())
	}

	// Zero every page after the two meta pages and the free list.
	path := filepath.Join(home, catalog.FileName)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 3 * 4096; i < len(raw); i++ {
		raw[i] = 0
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ = catalog.Open(home, time.Second)
	err = c.View(func(tx *catalog.Tx) error { _, err := tx.Get("things", "a", new(string)); return err })
	if !errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), "catalog restore") {
		t.Fatalf("View of a damaged catalog: %v", err)
	}
	if c.Damaged() == "" {
		t.Errorf("the damage is not recorded")
	}
	c, _ = catalog.Open(home, time.Second) // a later process
	if err := c.Update(func(tx *catalog.Tx) error { return nil }); !errors.Is(err, storage.ErrDamaged) {
		t.Errorf("Update of a catalog found damaged: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(raw) {
		t.Errorf("the damaged catalog was written")
	}
}
