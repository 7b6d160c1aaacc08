package catalog_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// An export edited by hand (or not strata's) that an etcd catalog would
// read back as something else is refused before anything is replaced: a
// bucket name with "/" in it (its records land in another bucket, as
// PREFIX/c/BUCKET/KEY is split at the first "/": "volumes/x" key "y" is
// volume "x/y"), an empty bucket name, a meta schema version that is not
// the one the export declares (the declared one is checked, the record is
// what the catalog then has: 999 makes every command refuse the catalog).
// The number of records reported is the number imported, not the file's
// claim.
func TestEtcdImportRefusesAnExportItWouldReadBackAsSomethingElse(t *testing.T) {
	url := storagetest.Etcd(t)
	home := t.TempDir()
	dst := backends[1].open(t, home, url)
	if err := dst.Update(func(tx *catalog.Tx) error {
		return tx.AddVolume(storage.Volume{ID: "00000000000000aa", Name: "old", Pool: "default", Path: "/p/00000000000000aa.img"})
	}); err != nil {
		t.Fatal(err)
	}
	src := exportWith(t, "src", 2, 0)
	edit := func(name string, fn func(e map[string]any)) string {
		raw, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]any
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		fn(e)
		raw, _ = json.Marshal(e)
		file := filepath.Join(t.TempDir(), name+".json")
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	buckets := func(e map[string]any) map[string]any { return e["buckets"].(map[string]any) }
	for name, fn := range map[string]func(e map[string]any){
		"slash in bucket": func(e map[string]any) {
			buckets(e)["volumes/evil"] = map[string]any{"x": map[string]any{"id": "zz"}}
		},
		"empty bucket":   func(e map[string]any) { buckets(e)[""] = map[string]any{"k": 1} },
		"schema differs": func(e map[string]any) { buckets(e)["meta"].(map[string]any)["schema_version"] = 999 },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dst.Import(edit(name, fn), true)
			if !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("import: %v, want invalid", err)
			}
			if got := volumeNames(t, dst); len(got) != 1 || got[0] != "old" {
				t.Errorf("after a refused import the catalog holds %v, want [old]", got)
			}
		})
	}

	lying := edit("lying", func(e map[string]any) { e["records"] = 1000 })
	res, err := dst.Import(lying, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records >= 1000 {
		t.Errorf("import reports %d records, the file's claim", res.Records)
	}
}
