package main_test

import (
	"path/filepath"
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
}
