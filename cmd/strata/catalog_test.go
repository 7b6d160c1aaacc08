package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A writer waits for the catalog lock up to --lock-timeout, then fails
// with "busy" (exit 6) and changes nothing.
func TestCatalogBusy(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "create", "a", "--size", "1M")
	before := snapshotState(t, home)
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := runIn(t, home, nil, "--lock-timeout", "300ms", "volume", "create", "b", "--size", "1M")
	waited := time.Since(start)
	db.Close()
	if r.code != 6 || !strings.Contains(r.stderr, "busy") || !strings.Contains(r.stderr, "--lock-timeout") {
		t.Errorf("exit %d, stderr %q; want exit 6 and a busy error", r.code, r.stderr)
	}
	if waited < 200*time.Millisecond { // bbolt polls every 50 ms and stops one poll early
		t.Errorf("gave up after %v: it must wait for the lock timeout", waited)
	}
	if after := snapshotState(t, home); after != before {
		t.Errorf("a busy create changed the state")
	}
	// Once the lock is free, the same command succeeds.
	ok(t, home, "volume", "create", "b", "--size", "1M")
}

// A catalog written by a newer strata is refused, not misread.
func TestCatalogNewerSchema(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "list")
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("999")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	fails(t, home, 7, []string{"schema version 999", "upgrade strata"}, "volume", "create", "x", "--size", "1M")
	fails(t, home, 7, []string{"schema version 999"}, "volume", "list")

	// The same for the schema of one package's buckets.
	home = filepath.Join(t.TempDir(), "home2")
	ok(t, home, "volume", "list")
	db, err = bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version:snapshot"), []byte("99"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	fails(t, home, 7, []string{"snapshot schema version 99", "upgrade strata"}, "snapshot", "list")
}

// A catalog of schema 1 (no index of volumes by path) is migrated on first
// use: the index is built from the records, so an image already registered
// is still refused, and deleting a volume frees its path.
func TestCatalogMigratePathIndex(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "volume", "import", img, "--name", "old")
	ok(t, home, "volume", "create", "keep", "--size", "1M")
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("volume_paths")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	fails(t, home, 4, []string{img, `already registered as volume "old"`}, "volume", "import", img, "--name", "again")
	db, err = bolt.Open(filepath.Join(home, "catalog.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var schema string
	var indexed int
	db.View(func(tx *bolt.Tx) error {
		schema = string(tx.Bucket([]byte("meta")).Get([]byte("schema_version")))
		if b := tx.Bucket([]byte("volume_paths")); b != nil {
			indexed = b.Stats().KeyN
		}
		return nil
	})
	db.Close()
	if schema != fmt.Sprint(currentSchema(t)) || indexed != 2 {
		t.Errorf("after migration: schema %s with %d paths indexed; want schema %d with 2", schema, indexed, currentSchema(t))
	}
	ok(t, home, "volume", "delete", "old")
	ok(t, home, "volume", "import", img, "--name", "again")
}

// currentSchema is the schema version a fresh home gets.
func currentSchema(t *testing.T) int {
	t.Helper()
	home := filepath.Join(t.TempDir(), "fresh")
	ok(t, home, "volume", "list")
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	db.View(func(tx *bolt.Tx) error {
		v, _ = strconv.Atoi(string(tx.Bucket([]byte("meta")).Get([]byte("schema_version"))))
		return nil
	})
	if v < 2 {
		t.Fatalf("a fresh catalog has schema %d", v)
	}
	return v
}

// catalog accept of a restored catalog says what it did on stderr, as
// every change without a result does (it printed nothing).
func TestCatalogAcceptSaysWhatItDid(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "a", "--size", "1M")
	copyFile := filepath.Join(t.TempDir(), "copy.db")
	ok(t, home, "catalog", "backup", copyFile)
	ok(t, home, "catalog", "restore", "--force", copyFile)
	r := runIn(t, home, nil, "catalog", "accept")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "catalog accepted") {
		t.Fatalf("catalog accept: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runIn(t, home, nil, "catalog", "accept")
	if r.code != 0 || !strings.Contains(r.stderr, "nothing to accept") {
		t.Fatalf("catalog accept again: exit %d, stderr %q", r.code, r.stderr)
	}
}
