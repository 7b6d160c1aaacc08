package catalog_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// An import etcd refuses part-way (a record over its request limit) says
// so, and what to do: the catalog it leaves is taken for a missing one
// until the file is imported whole.
func TestEtcdImportRefusedPartWaySaysWhatItLeft(t *testing.T) {
	src := backends[0].open(t, t.TempDir(), "")
	if err := src.Update(func(tx *catalog.Tx) error {
		return tx.AddVolume(storage.Volume{ID: "00000000000000aa", Name: "v", Pool: "default", Path: "/p/00000000000000aa.img"})
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, big := filepath.Join(dir, "good.json"), filepath.Join(dir, "big.json")
	if err := src.ExportFile(good, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	e["buckets"].(map[string]any)["volumes"].(map[string]any)["zzzz"] = map[string]string{"pad": strings.Repeat("x", 1700<<10)}
	raw, _ = json.Marshal(e)
	if err := os.WriteFile(big, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := backends[1].open(t, t.TempDir(), storagetest.Etcd(t))
	_, err = dst.Import(big, false)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "--max-request-bytes") || !strings.Contains(err.Error(), "import the file again with --force") {
		t.Fatalf("an import etcd refuses part-way: %v", err)
	}
	if _, err := dst.Import(good, true); err != nil {
		t.Fatalf("the whole file again: %v", err)
	}
	if err := dst.View(func(tx *catalog.Tx) error { _, err := tx.Volume("v"); return err }); err != nil {
		t.Fatal(err)
	}
}
