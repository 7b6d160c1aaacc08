package catalog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// backends are the catalog stores every test here runs against: the bbolt
// file (the default) and a real etcd.
var backends = []struct {
	name string
	open func(t *testing.T, home, url string) *catalog.Catalog
	url  func(t *testing.T) string
}{
	{"bbolt", func(t *testing.T, home, _ string) *catalog.Catalog {
		c, err := catalog.Open(home, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}, func(*testing.T) string { return "" }},
	{"etcd", func(t *testing.T, home, url string) *catalog.Catalog {
		c, err := catalog.OpenWith(home, 5*time.Second, catalog.Options{URL: url, Host: "test-host"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}, func(t *testing.T) string { return storagetest.Etcd(t) }},
}

// The same records, indexes and errors from either backend: a new
// catalog gets its schema, default pool and home ID; writes inside a
// failed transaction are not kept; scans are in key order, by prefix,
// and see the transaction's own writes and deletes.
func TestCatalogBackendsServeTheSameRecords(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			home := t.TempDir()
			c := b.open(t, home, b.url(t))
			var pools []storage.Pool
			var id string
			if err := c.View(func(tx *catalog.Tx) (err error) {
				if pools, err = tx.Pools(); err != nil {
					return err
				}
				id, err = tx.HomeID()
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if len(pools) != 1 || pools[0].Name != catalog.DefaultPool || pools[0].Path != filepath.Join(storage.RealPath(home), "pools", "default") {
				t.Fatalf("pools of a new catalog: %+v", pools)
			}
			if got, _ := c.HomeID(); id == "" || got != id {
				t.Fatalf("home id %q / %q", id, got)
			}
			v := storage.Volume{ID: "0123456789abcdef", Name: "disk", Pool: "default", Path: "/x/0123456789abcdef.img"}
			if err := c.Update(func(tx *catalog.Tx) error { return tx.AddVolume(v) }); err != nil {
				t.Fatal(err)
			}
			err := c.Update(func(tx *catalog.Tx) error { return tx.AddVolume(storage.Volume{ID: "x2", Name: "disk", Path: "/y"}) })
			if !errors.Is(err, storage.ErrExists) {
				t.Fatalf("second volume of the same name: %v, want ErrExists", err)
			}
			boom := errors.New("boom")
			err = c.Update(func(tx *catalog.Tx) error {
				if err := tx.Put("things", "kept?", "no"); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("failed transaction: %v", err)
			}
			err = c.Update(func(tx *catalog.Tx) error {
				for _, k := range []string{"b/2", "a/1", "b/1", "c", "b/3"} {
					if err := tx.Put("things", k, k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var seen []string
			err = c.Update(func(tx *catalog.Tx) error {
				if err := tx.Delete("things", "b/2"); err != nil {
					return err
				}
				if err := tx.Put("things", "b/0", "b/0"); err != nil {
					return err
				}
				return tx.Scan("things", "b/", func(k string, raw []byte) error {
					var s string
					if err := json.Unmarshal(raw, &s); err != nil || s != k {
						return fmt.Errorf("record %s = %s", k, raw)
					}
					seen = append(seen, k)
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(seen) != "[b/0 b/1 b/3]" {
				t.Fatalf("scan of b/ inside the transaction: %v", seen)
			}
			var kept bool
			var n1, n2 uint64
			err = c.Update(func(tx *catalog.Tx) (err error) {
				var s string
				kept, err = tx.Get("things", "kept?", &s)
				if err != nil {
					return err
				}
				if n1, err = tx.NextSeq("s"); err != nil {
					return err
				}
				n2, err = tx.NextSeq("s")
				return err
			})
			if err != nil || kept || n1 != 1 || n2 != 2 {
				t.Fatalf("kept=%v n=%d,%d err=%v", kept, n1, n2, err)
			}
			if err := c.Update(func(tx *catalog.Tx) error { return tx.DeleteBucket("things") }); err != nil {
				t.Fatal(err)
			}
			var left int
			_ = c.View(func(tx *catalog.Tx) error {
				return tx.Scan("things", "", func(string, []byte) error { left++; return nil })
			})
			if left != 0 {
				t.Fatalf("%d records left in a deleted bucket", left)
			}
			got, err := func() (storage.Volume, error) {
				var got storage.Volume
				err := c.View(func(tx *catalog.Tx) (err error) { got, err = tx.Volume("disk"); return err })
				return got, err
			}()
			if err != nil || got.ID != v.ID {
				t.Fatalf("volume by name: %+v %v", got, err)
			}
		})
	}
}

// Concurrent transactions from separate handles (as separate strata
// processes are) are serialisable: each adds the record numbered by how
// many it counted, so a transaction that missed another's record (a scan
// not protected against new keys) would overwrite it.
func TestCatalogBackendsSerialiseConcurrentTransactions(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			home := t.TempDir()
			url := b.url(t)
			b.open(t, home, url).Update(func(*catalog.Tx) error { return nil })
			const workers, each = 6, 5
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := b.open(t, home, url)
					for i := 0; i < each; i++ {
						errs <- c.Update(func(tx *catalog.Tx) error {
							n := 0
							if err := tx.Scan("items", "", func(string, []byte) error { n++; return nil }); err != nil {
								return err
							}
							return tx.Put("items", fmt.Sprintf("%04d", n), n)
						})
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			n := 0
			_ = b.open(t, home, url).View(func(tx *catalog.Tx) error {
				return tx.Scan("items", "", func(string, []byte) error { n++; return nil })
			})
			if n != workers*each {
				t.Fatalf("%d records after %d transactions: some overwrote others", n, workers*each)
			}
		})
	}
}

// A catalog moves between the backends with export and import, record for
// record, and the imported catalog is marked restored (doctor keeps files
// it does not know until 'catalog accept').
func TestCatalogExportImportBetweenBackends(t *testing.T) {
	src := backends[0].open(t, t.TempDir(), "")
	err := src.Update(func(tx *catalog.Tx) error {
		pool, err := tx.Pool("default")
		if err != nil {
			return err
		}
		if err := tx.AddVolume(storage.Volume{ID: "00000000000000aa", Name: "v", Pool: "default", Format: storage.FormatRaw, Path: filepath.Join(pool.Path, "00000000000000aa.img")}); err != nil {
			return err
		}
		_, err = tx.NextSeq("points/x")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "export.json")
	if err := src.ExportFile(file, false); err != nil {
		t.Fatal(err)
	}
	etcdHome := t.TempDir()
	url := storagetest.Etcd(t)
	dst := backends[1].open(t, etcdHome, url)
	res, err := dst.Import(file, false)
	if err != nil || res.Records == 0 || res.Backup != "" {
		t.Fatalf("import into an empty catalog: %+v %v", res, err)
	}
	if _, err := dst.Import(file, false); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("import over a catalog with records: %v, want ErrExists", err)
	}
	var restored bool
	var vol storage.Volume
	if err := dst.View(func(tx *catalog.Tx) (err error) {
		if _, restored, err = tx.Restored(); err != nil {
			return err
		}
		vol, err = tx.Volume("v")
		return err
	}); err != nil || !restored || vol.ID != "00000000000000aa" {
		t.Fatalf("imported: restored=%v vol=%+v err=%v", restored, vol, err)
	}
	srcID, _ := src.HomeID()
	if id, _ := dst.HomeID(); id != srcID {
		t.Fatalf("home id %q after import, want %q", id, srcID)
	}
	if _, err := dst.Accept(); err != nil {
		t.Fatal(err)
	}
	// And back to a new bbolt home: the same records.
	var a, bk bytes.Buffer
	if err := dst.Export(&a); err != nil {
		t.Fatal(err)
	}
	back := backends[0].open(t, t.TempDir(), "")
	if _, err := back.Import(file, false); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Accept(); err != nil {
		t.Fatal(err)
	}
	if err := back.Export(&bk); err != nil {
		t.Fatal(err)
	}
	var ea, eb catalog.Export
	_ = json.Unmarshal(a.Bytes(), &ea)
	_ = json.Unmarshal(bk.Bytes(), &eb)
	ja, _ := json.Marshal(ea.Buckets)
	jb, _ := json.Marshal(eb.Buckets)
	if !bytes.Equal(ja, jb) || ea.Records == 0 {
		t.Fatalf("records differ after etcd → bbolt:\n%s\n%s", ja, jb)
	}
}

// A catalog of an older schema is migrated by the next command on either
// backend, after a copy of it as it was is kept in HOME/backups (a bbolt
// file, or an export of the etcd catalog).
func TestCatalogBackendsMigrateOlderSchemasKeepingACopy(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			home := t.TempDir()
			url := b.url(t)
			c := b.open(t, home, url)
			if err := c.Update(func(tx *catalog.Tx) error {
				if err := tx.Delete("volume_paths", "anything"); err != nil {
					return err
				}
				if err := tx.Put("volumes", "00000000000000bb", storage.Volume{ID: "00000000000000bb", Name: "old", Path: "/old/00000000000000bb.img"}); err != nil {
					return err
				}
				return tx.Put("meta", "schema_version", 1) // as strata wrote it before volume_paths
			}); err != nil {
				t.Fatal(err)
			}
			var id string
			var schema int
			next := b.open(t, home, url) // a new command
			if err := next.View(func(tx *catalog.Tx) error {
				if _, err := tx.Get("meta", "schema_version", &schema); err != nil {
					return err
				}
				_, err := tx.Get("volume_paths", "/old/00000000000000bb.img", &id)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if schema != catalog.SchemaVersion() || id != "00000000000000bb" {
				t.Fatalf("after migration: schema %d (want %d), path index %q", schema, catalog.SchemaVersion(), id)
			}
			copies, _ := filepath.Glob(filepath.Join(home, catalog.BackupDir, "catalog-schema-1-*"))
			if len(copies) != 1 {
				t.Fatalf("copies kept before the migration: %v", copies)
			}
		})
	}
}
