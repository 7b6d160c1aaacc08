package main_test

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// exitDamaged is the documented exit code of a damaged or missing catalog.
const exitDamaged = 9

// homeWithData makes a state home with raw and qcow2 volumes and restore
// points of both.
func homeWithData(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	for _, v := range []string{"v1", "v2", "v3"} {
		ok(t, home, "volume", "create", v, "--size", "1M")
	}
	ok(t, home, "volume", "create", "q", "--size", "1M", "--format", "qcow2")
	ok(t, home, "snapshot", "create", "--volume", "v1")
	ok(t, home, "snapshot", "create", "--volume", "q")
	return home
}

// homeFiles lists the files under home that are state (not lock files),
// with their sizes.
func homeFiles(t *testing.T, home string) string {
	t.Helper()
	var out []string
	_ = filepath.Walk(home, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && filepath.Base(filepath.Dir(p)) != "locks" {
			out = append(out, p+" "+itoa64(info.Size()))
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func itoa64(n int64) string { b, _ := json.Marshal(n); return string(b) }

// noPanic fails the test if strata died of a Go panic.
func noPanic(t *testing.T, r result, what string) {
	t.Helper()
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "runtime error") {
		t.Fatalf("%s: strata panicked (exit %d):\n%s", what, r.code, r.stderr)
	}
}

// Every command a user may run first, read-only or not.
var everyCommand = [][]string{
	{"volume", "list"},
	{"snapshot", "list"},
	{"pool", "list"},
	{"guest", "list"},
	{"golden", "list"},
	{"volume", "create", "new", "--size", "1M"},
	{"doctor"},
	{"doctor", "--repair"},
}

// A home whose catalog is missing or empty is not given a new catalog:
// every command is refused with exit code 9, nothing is created or
// deleted, and the catalog comes back with 'catalog restore'. (A new empty
// catalog made doctor --repair delete every image as an orphan.)
func TestMissingCatalogIsRefused(t *testing.T) {
	for _, how := range []string{"missing", "empty"} {
		t.Run(how, func(t *testing.T) {
			home := homeWithData(t)
			cat := filepath.Join(home, "catalog.db")
			saved := filepath.Join(t.TempDir(), "saved.db")
			raw, err := os.ReadFile(cat)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(saved, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			if how == "missing" {
				os.Remove(cat)
			} else if err := os.Truncate(cat, 0); err != nil {
				t.Fatal(err)
			}
			before := homeFiles(t, home)
			for _, args := range everyCommand {
				r := fails(t, home, exitDamaged, []string{"missing or empty", "catalog restore", "catalog init --over-existing"}, args...)
				noPanic(t, r, strings.Join(args, " "))
			}
			if after := homeFiles(t, home); after != before {
				t.Fatalf("refused commands changed the home:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			ok(t, home, "catalog", "restore", saved)
			var vols []volumeJSON
			jsonOf(t, home, &vols, "volume", "list")
			if len(vols) != 4 {
				t.Errorf("after restore: %d volumes, want 4", len(vols))
			}
			if fs, code := doctor(t, home, "--repair"); code != 0 || len(fs) != 0 {
				t.Errorf("doctor after restore: exit %d, %+v", code, fs)
			}
		})
	}
}

// 'catalog init --over-existing' starts an empty catalog over a home that
// lost its own, and deletes nothing: doctor reports the images it does
// not know and --repair keeps them until the admin runs 'catalog accept'.
func TestCatalogInitOverExistingKeepsEveryFile(t *testing.T) {
	home := homeWithData(t)
	os.Remove(filepath.Join(home, "catalog.db"))
	before := homeFiles(t, home)
	fails(t, home, 2, []string{"over-existing"}, "catalog", "init")
	ok(t, home, "catalog", "init", "--over-existing")
	var vols []volumeJSON
	jsonOf(t, home, &vols, "volume", "list")
	if len(vols) != 0 {
		t.Fatalf("a new catalog lists %d volumes", len(vols))
	}
	fs, code := doctor(t, home, "--repair")
	paths, repaired := orphanPaths(fs)
	if code != 7 || len(paths) < 5 {
		t.Fatalf("doctor --repair over a new catalog: exit %d, %+v", code, fs)
	}
	for _, p := range paths {
		if repaired[p] || !exists(t, p) {
			t.Errorf("doctor --repair removed %s from a home whose catalog was started anew", p)
		}
	}
	for _, f := range fs {
		if f.Kind == "orphan-file" && !strings.Contains(f.Detail, "catalog accept") {
			t.Errorf("orphan detail does not say how to go on: %q", f.Detail)
		}
	}
	for _, line := range strings.Split(before, "\n") {
		if !exists(t, strings.Fields(line)[0]) {
			t.Errorf("%s is gone", line)
		}
	}
	// A sound catalog is not replaced without --force.
	fails(t, home, 4, []string{"passes its check"}, "catalog", "init", "--over-existing")
	ok(t, home, "catalog", "accept")
	if fs, code := doctor(t, home, "--repair"); code != 0 {
		t.Errorf("after accept: exit %d, %+v", code, fs)
	}
}

// 'catalog backup' writes a consistent copy (mode 0600) that restores, and
// refuses to overwrite a file unless asked; 'catalog restore' refuses a
// file that is not a catalog, another home's catalog, and (without
// --force) replacing a sound catalog, and keeps the one it replaces.
func TestCatalogBackupAndRestore(t *testing.T) {
	home := homeWithData(t)
	dir := t.TempDir()
	bk := filepath.Join(dir, "bk.db")
	ok(t, home, "catalog", "backup", bk)
	st, err := os.Stat(bk)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup: %v, mode %v", err, st.Mode())
	}
	db, err := bolt.Open(bk, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := db.View(func(tx *bolt.Tx) error { n = tx.Bucket([]byte("volumes")).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n != 4 {
		t.Errorf("the copy holds %d volumes, want 4", n)
	}
	fails(t, home, 4, []string{"exists", "--force"}, "catalog", "backup", bk)
	ok(t, home, "catalog", "backup", "--force", bk)

	ok(t, home, "volume", "create", "later", "--size", "1M")
	fails(t, home, 4, []string{"passes its check", "--force"}, "catalog", "restore", bk)
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, bytes.Repeat([]byte("strata"), 5000), 0o600)
	fails(t, home, 2, []string{"not a sound strata catalog"}, "catalog", "restore", "--force", junk)
	other := homeWithData(t)
	obk := filepath.Join(dir, "other.db")
	ok(t, other, "catalog", "backup", obk)
	fails(t, home, 2, []string{"another state home"}, "catalog", "restore", obk)

	ok(t, home, "catalog", "restore", "--force", bk)
	kept, _ := filepath.Glob(filepath.Join(home, "backups", "catalog-replaced-*.db"))
	if len(kept) != 1 {
		t.Fatalf("the replaced catalog is not kept: %v", kept)
	}
	// The copy lacks volume "later": its image is reported, never removed,
	// until the restore is accepted.
	fs, code := doctor(t, home, "--repair")
	paths, repaired := orphanPaths(fs)
	if code != 7 || len(paths) != 1 || repaired[paths[0]] || !exists(t, paths[0]) {
		t.Fatalf("doctor --repair after a restore: exit %d, %+v", code, fs)
	}
}

// Before a schema migration the catalog is copied to HOME/backups; a home
// from before home IDs gets one, and its default pool a marker naming it.
func TestSchemaMigrationKeepsACopy(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "create", "a", "--size", "1M")
	cat := filepath.Join(home, "catalog.db")
	// Make it a schema-2 catalog, as strata wrote before home IDs.
	db, err := bolt.Open(cat, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket([]byte("meta"))
		if err := m.Delete([]byte("home_id")); err != nil {
			return err
		}
		return m.Put([]byte("schema_version"), []byte("2"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.Remove(filepath.Join(home, "home-id"))
	marker := filepath.Join(home, "pools", "default", ".strata-pool")
	os.Remove(marker)

	ok(t, home, "volume", "list")
	copies, _ := filepath.Glob(filepath.Join(home, "backups", "catalog-schema-2-*.db"))
	if len(copies) != 1 {
		t.Fatalf("copies before migration: %v", copies)
	}
	if st, _ := os.Stat(copies[0]); st.Mode().Perm() != 0o600 {
		t.Errorf("copy mode %v", st.Mode())
	}
	db, err = bolt.Open(copies[0], 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var v string
	db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket([]byte("meta")).Get([]byte("schema_version")))
		return nil
	})
	db.Close()
	if v != "2" {
		t.Errorf("the copy has schema %q, want 2 (as before the migration)", v)
	}
	id, err := os.ReadFile(filepath.Join(home, "home-id"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("the default pool has no marker: %v", err)
	}
	var m struct {
		HomeID string `json:"home_id"`
	}
	json.Unmarshal(raw, &m)
	if m.HomeID == "" || m.HomeID != strings.TrimSpace(string(id)) {
		t.Errorf("marker %s, home id %s", raw, id)
	}
	// One migration, one copy.
	ok(t, home, "volume", "list")
	if copies, _ := filepath.Glob(filepath.Join(home, "backups", "*")); len(copies) != 1 {
		t.Errorf("copies: %v", copies)
	}
}

// corrupt overwrites page pg of the catalog with zeros or random bytes.
func corrupt(t *testing.T, cat string, pg int64, random bool, rng *rand.Rand) {
	t.Helper()
	page := make([]byte, 4096)
	if random {
		rng.Read(page)
	}
	f, err := os.OpenFile(cat, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(page, pg*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// A catalog with zeroed or random pages never makes strata panic: the
// commands that meet the damage exit 9 saying "catalog damaged" and what
// to do, doctor finds it with bbolt's full check, and once it is found no
// command writes to the catalog or makes an image (reads that do not meet
// the damage still answer).
func TestDamagedCatalogIsNeverWritten(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	found := 0
	for _, random := range []bool{false, true} {
		probe := homeWithData(t)
		st, _ := os.Stat(filepath.Join(probe, "catalog.db"))
		pages := st.Size() / 4096
		for pg := int64(0); pg < pages; pg++ {
			home := probe
			if pg > 0 {
				home = homeWithData(t)
			}
			cat := filepath.Join(home, "catalog.db")
			corrupt(t, cat, pg, random, rng)
			damaged := false
			for _, args := range [][]string{{"volume", "list"}, {"snapshot", "list"}, {"pool", "list"}, {"golden", "list"}, {"guest", "list"}, {"doctor"}} {
				r := runIn(t, home, nil, args...)
				what := strings.Join(args, " ") + " of a catalog with page " + itoa64(pg) + " damaged"
				noPanic(t, r, what)
				switch {
				case r.code == exitDamaged:
					damaged = true
					if !strings.Contains(r.stderr, "catalog") || !strings.Contains(r.stderr, "damaged") || !strings.Contains(r.stderr, "catalog restore") {
						t.Errorf("%s: stderr %q", what, r.stderr)
					}
				case r.code != 0:
					t.Errorf("%s: exit %d, want 0 or %d\n%s", what, r.code, exitDamaged, r.stderr)
				case damaged && args[0] == "doctor":
					t.Errorf("%s: exit 0 after the damage was found", what)
				}
			}
			if !damaged {
				continue // a page no record uses (freed): nothing to find
			}
			found++
			before, _ := os.ReadFile(cat)
			files := homeFiles(t, home)
			for _, args := range [][]string{{"volume", "create", "new", "--size", "1M"}, {"snapshot", "create", "--volume", "v2"}, {"doctor", "--repair"}, {"volume", "delete", "v3"}} {
				r := fails(t, home, exitDamaged, []string{"damaged"}, args...)
				noPanic(t, r, strings.Join(args, " "))
			}
			if after, _ := os.ReadFile(cat); !bytes.Equal(before, after) {
				t.Errorf("page %d: the damaged catalog was written", pg)
			}
			if after := homeFiles(t, home); after != files {
				t.Errorf("page %d: files changed after the damage was found:\n%s\n---\n%s", pg, files, after)
			}
		}
	}
	if found < 4 {
		t.Errorf("only %d damaged catalogs were noticed", found)
	}
}

// The case: the page of the restore points is damaged; snapshot
// list says so (it panicked, exit 2), and volume create, which does not
// read that page, is refused (it succeeded into the damaged catalog).
func TestDamagedPointsPageStopsEveryWrite(t *testing.T) {
	home := homeWithData(t)
	for i := 0; i < 15; i++ {
		ok(t, home, "snapshot", "create", "--volume", "q")
	}
	cat := filepath.Join(home, "catalog.db")
	pg := bucketPage(t, cat, "points")
	corrupt(t, cat, pg, false, nil)
	before, _ := os.ReadFile(cat)
	r := fails(t, home, exitDamaged, []string{"damaged", "catalog restore"}, "snapshot", "list")
	noPanic(t, r, "snapshot list")
	r = fails(t, home, exitDamaged, []string{"damaged"}, "volume", "create", "x", "--size", "1M")
	noPanic(t, r, "volume create")
	if after, _ := os.ReadFile(cat); !bytes.Equal(before, after) {
		t.Errorf("the damaged catalog was written")
	}
	if _, err := os.Stat(filepath.Join(home, "catalog.damaged")); err != nil {
		t.Errorf("the damage is not recorded: %v", err)
	}
	// doctor finds it with bbolt's check too.
	fs, code := doctor(t, home)
	if code != exitDamaged || len(fs) == 0 || fs[0].Kind != "catalog-damaged" {
		t.Errorf("doctor: exit %d, %+v", code, fs)
	}
}

// bucketPage returns the root page of a top-level bucket that has a page
// of its own.
func bucketPage(t *testing.T, cat, bucket string) int64 {
	t.Helper()
	db, err := bolt.Open(cat, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pg int64
	db.View(func(tx *bolt.Tx) error { pg = int64(tx.Bucket([]byte(bucket)).Root()); return nil })
	if pg == 0 {
		t.Fatalf("bucket %s is inline: it has no page of its own", bucket)
	}
	return pg
}

// An image made inside the transaction that records it is removed when
// the transaction fails: here the page of the path index is damaged,
// which volume create reads only after it made the image.
func TestFailedCreateRemovesItsImage(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "create", "a", "--size", "1M")
	cat := filepath.Join(home, "catalog.db")
	db, err := bolt.Open(cat, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Enough entries for the index to leave its parent's page.
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("volume_paths"))
		for i := 0; i < 100; i++ {
			if err := b.Put([]byte("/nowhere/"+itoa64(int64(i))+strings.Repeat("x", 40)), []byte(`"0000000000000000"`)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	corrupt(t, cat, bucketPage(t, cat, "volume_paths"), false, nil)
	pool := filepath.Join(home, "pools", "default")
	before, _ := os.ReadDir(pool)
	r := fails(t, home, exitDamaged, []string{"damaged"}, "volume", "create", "b", "--size", "1M")
	noPanic(t, r, "volume create")
	after, _ := os.ReadDir(pool)
	if len(after) != len(before) {
		t.Errorf("the image of the failed create is left: %d files before, %d after", len(before), len(after))
	}
}

// A record whose bytes were changed on disk (not JSON any more) is a clear
// "catalog damaged" error with exit 9, not an internal error; it is not
// recorded as damage of the whole catalog (bbolt's pages are sound, so
// restoring a copy of the same catalog would not help).
func TestDamagedRecordIsAClearError(t *testing.T) {
	home := homeWithData(t)
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "info", "v2")
	editCatalog(t, home, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("volumes")).Put([]byte(v.ID), []byte("{\"id\":\x13"))
	})
	for _, args := range [][]string{{"volume", "list"}, {"volume", "info", "v2"}, {"doctor"}} {
		r := fails(t, home, exitDamaged, []string{"catalog record volumes/" + v.ID + " is damaged", "catalog restore"}, args...)
		noPanic(t, r, strings.Join(args, " "))
	}
	if exists(t, filepath.Join(home, "catalog.damaged")) {
		t.Errorf("a bad record was recorded as damage of the whole catalog")
	}
}

// A restored catalog's mark (meta/restored) or home ID (meta/home_id)
// whose bytes were damaged is a clear "damaged" error, never read as "not
// restored" or "no ID": doctor --repair would then remove the image of a
// volume the restored copy lacks, and the other home's copy would pass
// as this home's.
func TestDamagedRestoredMarkOrHomeIDIsAnErrorNotAValue(t *testing.T) {
	home := homeWithData(t)
	bk := filepath.Join(t.TempDir(), "bk.db")
	ok(t, home, "catalog", "backup", bk)
	ok(t, home, "volume", "create", "later", "--size", "1M")
	var later volumeJSON
	jsonOf(t, home, &later, "volume", "info", "later")
	ok(t, home, "catalog", "restore", "--force", bk)
	editCatalog(t, home, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("restored"), []byte("{\"at\":\x13"))
	})
	r := fails(t, home, exitDamaged, []string{"catalog record meta/restored is damaged", "catalog accept"}, "doctor", "--repair")
	noPanic(t, r, "doctor --repair")
	if !exists(t, later.Path) {
		t.Fatalf("doctor --repair with a damaged restored mark removed %s, the image of a volume the copy lacks", later.Path)
	}
	ok(t, home, "catalog", "accept") // removes the damaged mark: the admin's call

	editCatalog(t, home, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("home_id"), []byte("\"12\x13"))
	})
	fails(t, home, exitDamaged, []string{"catalog record meta/home_id is damaged"}, "doctor")
	fails(t, home, exitDamaged, []string{"catalog record meta/home_id is damaged"}, "pool", "add", "p", "--path", filepath.Join(t.TempDir(), "p"))
	// JSON, but not of the type strata writes there: damaged all the same.
	editCatalog(t, home, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("home_id"), []byte("12"))
	})
	fails(t, home, exitDamaged, []string{"catalog record meta/home_id is damaged", "cannot unmarshal number"}, "doctor")
	// A copy whose home ID is damaged is not one to restore.
	editCopy, err := bolt.Open(bk, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := editCopy.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("home_id"), []byte("\"12\x13"))
	}); err != nil {
		t.Fatal(err)
	}
	editCopy.Close()
	other := homeWithData(t)
	fails(t, other, 2, []string{"not a sound strata catalog", "meta/home_id"}, "catalog", "restore", "--force", bk)
}
