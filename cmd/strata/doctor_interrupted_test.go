package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// editCatalog runs fn in a write transaction of home's catalog.
func editCatalog(t *testing.T, home string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// Plain doctor does not report a restore point operation that is running
// (its target's lock is held) as interrupted, nor the file it is making as
// an orphan; once the lock is free, the journal and the file left behind
// are an interrupted operation and an orphan.
func TestDoctorLeavesRunningOperationAlone(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "v", "--size", "1M")
	ok(t, home, "snapshot", "create", "--volume", "v")
	key := "v-" + v.ID
	editCatalog(t, home, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("journal"))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), []byte(`{"op":"create"}`))
	})
	// The new image of the rollback it is running.
	touch(t, v.Path+".strata-rollback-0123456789ab")
	release := holdLock(t, home, key)
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Errorf("doctor while the operation runs: exit %d, %+v", code, fs)
	}
	release()
	fs, code := doctor(t, home)
	if code != 7 || kinds(fs) != "interrupted-operation,orphan-file" || fs[0].Target != "volume:v" {
		t.Errorf("doctor after the operation died: exit %d, %+v", code, fs)
	}
}

// Doctor says which golden operation was interrupted and what --repair
// will do; a golden create that is running is neither interrupted nor
// its image an orphan.
func TestDoctorSaysWhatGoldenOperationWasInterrupted(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "src", "raw", "")
	var g struct {
		ID    string `json:"id"`
		Disks []struct {
			Path string `json:"path"`
		} `json:"disks"`
	}
	jsonOf(t, home, &g, "golden", "create", "base", "--volume", "src")
	editCatalog(t, home, func(tx *bolt.Tx) error { // as a create that has not finished
		b := tx.Bucket([]byte("goldens"))
		var rec map[string]any
		if err := json.Unmarshal(b.Get([]byte(g.ID)), &rec); err != nil {
			return err
		}
		rec["state"] = "creating"
		raw, _ := json.Marshal(rec)
		return b.Put([]byte(g.ID), raw)
	})
	release := holdLock(t, home, "gold-"+g.ID)
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Errorf("doctor while the golden create runs: exit %d, %+v", code, fs)
	}
	release()
	fs, code := doctor(t, home)
	if code != 7 || len(fs) != 2 || fs[0].Kind != "interrupted-operation" || fs[0].Target != "golden:base" ||
		!strings.Contains(fs[0].Detail, "creation of golden image base") || !strings.Contains(fs[0].Detail, "doctor --repair' removes its half-made images") {
		t.Errorf("doctor: exit %d, %+v", code, fs)
	}
	if fs, code := doctor(t, home, "--repair"); code != 0 || exists(t, g.Disks[0].Path) {
		t.Errorf("doctor --repair: exit %d, %+v", code, fs)
	}
	fails(t, home, 3, nil, "golden", "show", "base")
}
