package catalog_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// exportWith writes an export of a file catalog holding n volumes named
// prefix-0..., and, with pad > 0, a volume record "zzzz" of pad bytes
// (the last of its bucket).
func exportWith(t *testing.T, prefix string, n, pad int) string {
	t.Helper()
	src := backends[0].open(t, t.TempDir(), "")
	if err := src.Update(func(tx *catalog.Tx) error {
		pool, err := tx.Pool("default")
		if err != nil {
			return err
		}
		for i := range n {
			id := fmt.Sprintf("%016x", 0xa000+i)
			if err := tx.AddVolume(storage.Volume{ID: id, Name: fmt.Sprintf("%s-%d", prefix, i), Pool: "default", Format: storage.FormatRaw, Path: filepath.Join(pool.Path, id+".img")}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), prefix+".json")
	if err := src.ExportFile(file, false); err != nil {
		t.Fatal(err)
	}
	if pad == 0 {
		return file
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	// In a bucket nothing reads (so no import check refuses it first),
	// last in order.
	e["buckets"].(map[string]any)["zz-padding"] = map[string]any{"zzzz": map[string]string{"pad": strings.Repeat("x", pad)}}
	raw, _ = json.Marshal(e)
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// addVolume records a volume as volume create would, in the default pool.
func addVolume(tx *catalog.Tx, id, name string) error {
	pool, err := tx.Pool("default")
	if err != nil {
		return err
	}
	return tx.AddVolume(storage.Volume{ID: id, Name: name, Pool: "default", Format: storage.FormatRaw, Path: filepath.Join(pool.Path, id+".img")})
}

func volumeNames(t *testing.T, c *catalog.Catalog) []string {
	t.Helper()
	var names []string
	if err := c.View(func(tx *catalog.Tx) error {
		vols, err := tx.Volumes()
		for _, v := range vols {
			names = append(names, v.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

func ownEtcd(t *testing.T, flags ...string) *storagetest.EtcdServer {
	t.Helper()
	srv, err := storagetest.StartEtcdWith(flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// TestEtcdImportForceChecksLimitsAndKeepsTheOldCatalog: on an etcd that
// takes 16 operations and 64 KiB per request, an import with a record
// larger than that is refused before anything is deleted, naming the
// record, its size and the --max-request-bytes to start etcd with; one
// of 40 records goes in transactions etcd takes; the catalog it replaced
// is kept as an export (mode 0600, in HOME/backups) that imports back.
func TestEtcdImportForceChecksLimitsAndKeepsTheOldCatalog(t *testing.T) {
	srv := ownEtcd(t, "--max-txn-ops", "16", "--max-request-bytes", "65536")
	home := t.TempDir()
	dst := backends[1].open(t, home, srv.EtcdURL())
	if err := dst.Update(func(tx *catalog.Tx) error {
		return addVolume(tx, "00000000000000aa", "old")
	}); err != nil {
		t.Fatal(err)
	}
	big := exportWith(t, "big", 40, 100<<10)
	_, err := dst.Import(big, true)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "padding/zzzz") || !strings.Contains(err.Error(), "--max-request-bytes") ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("an import with a record over etcd's request limit: %v", err)
	}
	if got := volumeNames(t, dst); len(got) != 1 || got[0] != "old" {
		t.Fatalf("after a refused import the catalog holds %v, want [old]", got)
	}
	if left, _ := filepath.Glob(filepath.Join(home, catalog.BackupDir, "*")); len(left) != 0 {
		t.Fatalf("a refused import left %v", left)
	}

	good := exportWith(t, "new", 40, 0)
	res, err := dst.Import(good, true)
	if err != nil {
		t.Fatalf("an import in transactions of up to 16 operations: %v", err)
	}
	if got := volumeNames(t, dst); len(got) != 40 {
		t.Fatalf("after the import the catalog holds %d volumes: %v", len(got), got)
	}
	if res.Records < 40 || filepath.Dir(res.Backup) != filepath.Join(home, catalog.BackupDir) {
		t.Fatalf("import result %+v", res)
	}
	st, err := os.Stat(res.Backup)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the copy of the replaced catalog: %v %v", st, err)
	}
	// The copy is an export: it brings the old catalog back.
	if _, err := dst.Import(res.Backup, true); err != nil {
		t.Fatal(err)
	}
	if got := volumeNames(t, dst); len(got) != 1 || got[0] != "old" {
		t.Fatalf("after importing the copy back the catalog holds %v", got)
	}
}

// TestEtcdImportFailingPartWayPutsTheCatalogBack: a write etcd refuses
// after the old catalog was deleted and part of the export written (the
// test switch skips the check that would have refused it first) has the
// import put the old catalog back from its copy, and say so.
func TestEtcdImportFailingPartWayPutsTheCatalogBack(t *testing.T) {
	srv := ownEtcd(t, "--max-request-bytes", "65536")
	home := t.TempDir()
	dst := backends[1].open(t, home, srv.EtcdURL())
	if err := dst.Update(func(tx *catalog.Tx) error {
		return addVolume(tx, "00000000000000aa", "old")
	}); err != nil {
		t.Fatal(err)
	}
	// 150 volumes (with their index keys, several transactions) go
	// first; the last transaction, with the 100 KiB record, is refused.
	big := exportWith(t, "big", 150, 100<<10)
	t.Setenv("STRATA_TEST_SKIP_IMPORT_CHECK", "1")
	_, err := dst.Import(big, true)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "failed part-way") || !strings.Contains(err.Error(), "transaction ") || strings.Contains(err.Error(), "transaction 1 of") ||
		!strings.Contains(err.Error(), "back as it was") {
		t.Fatalf("an import etcd refuses part-way: %v", err)
	}
	copies, _ := filepath.Glob(filepath.Join(home, catalog.BackupDir, "catalog-before-import-*.json"))
	if len(copies) != 1 || !strings.Contains(err.Error(), copies[0]) {
		t.Fatalf("copies %v; the error names %v", copies, err)
	}
	if got := volumeNames(t, dst); len(got) != 1 || got[0] != "old" {
		t.Fatalf("after the failed import the catalog holds %v, want [old]", got)
	}
	// And it is whole: a change and a new volume work.
	if err := dst.Update(func(tx *catalog.Tx) error {
		return addVolume(tx, "00000000000000ab", "after")
	}); err != nil {
		t.Fatal(err)
	}
}
