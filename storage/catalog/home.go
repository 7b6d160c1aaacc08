package catalog

// The state home's identity, pool markers, damage and recovery: see the
// package doc.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog/log"
	bolt "go.etcd.io/bbolt"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/image"
)

// Files of the state home besides the catalog.
const (
	// HomeIDFile holds the home's ID, a copy of the catalog's meta
	// "home_id": it outlives a lost catalog, so strata can tell that the
	// home is not new and its pools are its own.
	HomeIDFile = "home-id"
	// DamagedFile records that a command found the catalog damaged (what
	// and when); while it exists no command writes to the catalog.
	DamagedFile = "catalog.damaged"
	// BackupDir holds the copies strata keeps itself (before a schema
	// migration, and the catalog a restore replaced).
	BackupDir = "backups"
	// MarkerFile, in a pool directory, names the home that owns the pool.
	MarkerFile = ".strata-pool"
)

func newHomeID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// readHomeIDFile returns the ID in HOME/home-id, "" if there is none.
func readHomeIDFile(home string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(home, HomeIDFile))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", storage.Errorf(storage.ErrPrecondition, "cannot read the state home's ID: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

func homeIDOf(tx *bolt.Tx) (string, error) { return newTx(tx).HomeID() }

// HomeID is the ID of the home this catalog belongs to ("" if it has
// none yet). A record that cannot be read is an error (ErrDamaged), never
// taken for no ID: an ID mistaken for absent would let a home take
// another's pools for its own.
func (t *Tx) HomeID() (string, error) {
	var id string
	_, err := t.Get(string(bMeta), string(kHomeID), &id)
	return id, err
}

// Restored tells how this catalog was put in place, if it was restored
// from a copy or started over an existing home: files it does not know
// may then be records the copy lacks, and doctor must not remove them
// until the admin accepts the catalog (Accept).
type Restored struct {
	At   time.Time `json:"at"`
	From string    `json:"from"`
}

// Restored returns how the catalog was restored; false if it was not, or
// the admin has accepted it since. A record that cannot be read is an
// error (ErrDamaged), never taken for "not restored": doctor --repair
// would then remove files a restored catalog does not know.
func (t *Tx) Restored() (Restored, bool, error) {
	var r Restored
	ok, err := t.Get(string(bMeta), string(kRestored), &r)
	if errors.Is(err, storage.ErrDamaged) {
		err = fmt.Errorf("%w; or, if the catalog in place is complete, 'strata catalog accept' removes the mark", err)
	}
	return r, ok, err
}

// Accept declares a restored catalog complete: doctor --repair may remove
// the files it does not know again. A mark that cannot be read is
// removed too (that is what the admin declares), and counts as one.
func (c *Catalog) Accept() (bool, error) {
	was := false
	err := c.Update(func(t *Tx) error {
		var err error
		if _, was, err = t.Restored(); err != nil {
			was = true
		}
		return t.Delete(string(bMeta), string(kRestored))
	})
	return was, err
}

// Marker is the content of a pool directory's MarkerFile. A pool is a
// home's if both its ID and its path match: a copy of a home (cp -a)
// keeps the ID, and must not take the original's pools for its own.
type Marker struct {
	HomeID string `json:"home_id"`
	Home   string `json:"home"`
}

// Owner tells whether the marker names this home (ID and path); if not,
// why, for a message.
func (c *Catalog) Owner(m Marker, homeID string) (bool, string) {
	switch {
	case m.HomeID != homeID:
		return false, "another strata state home (ID " + m.HomeID + ", at " + m.Home + ")"
	case m.Home != c.home && c.remote == nil: // hosts sharing a catalog share its pools
		return false, "this home's ID at another path, " + m.Home + " (a copy of the home, or the home was moved: then set \"home\" in " + MarkerFile + " to " + c.home + ")"
	}
	return true, ""
}

// ReadMarker reads the marker of a pool directory; false if it has none.
func ReadMarker(dir string) (Marker, bool, error) {
	var m Marker
	raw, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if os.IsNotExist(err) {
		return m, false, nil
	}
	if err != nil {
		return m, false, err
	}
	if err := json.Unmarshal(raw, &m); err != nil || m.HomeID == "" {
		return m, true, fmt.Errorf("pool marker %q is unreadable", filepath.Join(dir, MarkerFile))
	}
	return m, true, nil
}

// HomeID returns this home's ID.
func (c *Catalog) HomeID() (id string, err error) {
	err = c.View(func(t *Tx) (err error) { id, err = t.HomeID(); return err })
	return id, err
}

// Claim writes this home's marker into a pool directory that has none.
// A directory another home owns is refused.
func (c *Catalog) Claim(dir, homeID string) error {
	m, ok, err := ReadMarker(dir)
	if err != nil {
		return storage.Errorf(storage.ErrPrecondition, "%v: remove it if no other strata state home uses %q", err, dir)
	}
	if ok {
		if mine, whose := c.Owner(m, homeID); !mine {
			return storage.Errorf(storage.ErrInUse, "directory %q is a pool of %s: two homes sharing a pool would remove each other's files; give this home a directory of its own (or, if that home no longer uses it, remove %s)", dir, whose, filepath.Join(dir, MarkerFile))
		}
		return nil
	}
	raw, _ := json.Marshal(Marker{HomeID: homeID, Home: c.home})
	return WriteFileAtomic(filepath.Join(dir, MarkerFile), append(raw, '\n'))
}

// settleHome makes sure HOME/home-id exists, writing first the markers of
// the pools inside the home (the default pool), which are this home's by
// construction. Pools elsewhere are claimed when added, or by doctor
// (see snapshot.Doctor). It costs one stat once HOME/home-id exists.
func (c *Catalog) settleHome(db *bolt.DB) error {
	if _, err := os.Stat(filepath.Join(c.home, HomeIDFile)); err == nil {
		c.homeChecked = true
		return nil
	}
	var id string
	var pools []storage.Pool
	if err := c.guard(func() error {
		return db.View(func(tx *bolt.Tx) (err error) {
			if id, err = homeIDOf(tx); err != nil {
				return err
			}
			pools, err = newTx(tx).Pools()
			return err
		})
	}); err != nil {
		return err
	}
	if id == "" {
		return nil // an older schema: the migration gives it one
	}
	return c.claimHome(id, pools)
}

// claimHome marks the pools inside the home (the default pool) as home
// id's, then writes HOME/home-id: the last step of settling a home, for
// either catalog backend.
func (c *Catalog) claimHome(id string, pools []storage.Pool) error {
	for _, p := range pools {
		if !strings.HasPrefix(p.Path, c.home+string(filepath.Separator)) {
			continue
		}
		if _, err := os.Stat(p.Path); err != nil {
			continue
		}
		if err := c.Claim(p.Path, id); err != nil {
			log.Warn().Err(err).Str("pool", p.Name).Msg("pool not claimed")
		}
	}
	if err := WriteFileAtomic(filepath.Join(c.home, HomeIDFile), []byte(id+"\n")); err != nil {
		return fmt.Errorf("record the state home's ID: %w", err)
	}
	c.homeChecked = true
	return nil
}

// mayCreate refuses to start a catalog in a home that holds strata's
// files: its catalog was lost, and a new one would call them all orphans.
func (c *Catalog) mayCreate() error {
	var signs []string
	if id, _ := readHomeIDFile(c.home); id != "" {
		signs = append(signs, HomeIDFile)
	}
	for _, d := range []string{filepath.Join("pools", DefaultPool), BackupDir} {
		if es, _ := os.ReadDir(filepath.Join(c.home, d)); len(es) > 0 {
			signs = append(signs, d+"/")
		}
	}
	if len(signs) == 0 {
		return nil
	}
	return storage.Errorf(storage.ErrDamaged, "the catalog %q is missing or empty, but the state home holds strata's files (%s): strata will not start a new catalog over them, which would take every image for an orphan. %s%s, or start an empty catalog that keeps every file with 'strata catalog init --over-existing'", c.path, strings.Join(signs, ", "), c.restoreHow(), c.copiesHint())
}

// panickedInBolt tells, from inside a deferred recover, whether the panic
// was raised by bbolt's code (or by a fault while bbolt read the mapped
// file) rather than by strata's.
func panickedInBolt() bool {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	afterPanic := false
	for {
		f, more := frames.Next()
		if f.Function == "runtime.gopanic" || f.Function == "runtime.sigpanic" {
			afterPanic = true
		} else if afterPanic && !strings.HasPrefix(f.Function, "runtime.") {
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}

// markDamaged records that the catalog is damaged (the first finder's
// reason is kept) and returns the error every command then gives.
func (c *Catalog) markDamaged(reason string) error {
	// bbolt's messages may quote a page's raw bytes.
	reason = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, reason))
	p := filepath.Join(c.home, DamagedFile)
	if _, err := os.Stat(p); os.IsNotExist(err) {
		rec := fmt.Sprintf("%s %s\n", time.Now().UTC().Format(time.RFC3339), reason)
		if err := WriteFileAtomic(p, []byte(rec)); err != nil {
			log.Warn().Err(err).Msg("cannot record that the catalog is damaged")
		}
	}
	c.damaged = c.damagedError(reason)
	return c.damaged
}

func (c *Catalog) damagedError(reason string) error {
	return storage.Errorf(storage.ErrDamaged, "the catalog %q is damaged (%s): strata will not write to it. Restore a copy with 'strata catalog restore FILE'%s; 'strata doctor' runs a full check", c.path, reason, c.copiesHint())
}

// copiesHint says where copies of the catalog may be.
// restoreHow is the command that puts a copy in place: restore for the
// catalog file, import for an etcd catalog (restore is for files).
func (c *Catalog) restoreHow() string {
	if c.Shared() {
		return "Import a copy with 'strata catalog import FILE --force' (an export; an interrupted import keeps the catalog it replaced in HOME/backups/catalog-before-import-*.json)"
	}
	return "Restore a copy with 'strata catalog restore FILE'"
}

func (c *Catalog) copiesHint() string {
	if c.Shared() {
		return "" // restoreHow says where an import keeps them
	}
	dir := filepath.Join(c.home, BackupDir)
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		return fmt.Sprintf(" (strata keeps copies in %s; 'strata catalog backup' makes them)", dir)
	}
	return " (a file 'strata catalog backup' made)"
}

// Damaged returns the reason recorded in HOME/catalog.damaged; "" if the
// catalog is not known to be damaged.
func (c *Catalog) Damaged() string {
	if c.remote != nil {
		return "" // etcd keeps its own store sound; a bad record is reported as such
	}
	raw, err := os.ReadFile(filepath.Join(c.home, DamagedFile))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		s = "recorded in " + filepath.Join(c.home, DamagedFile)
	}
	return s
}

// refuseDamaged refuses a write once the catalog is known to be damaged.
func (c *Catalog) refuseDamaged() error {
	if c.damaged != nil {
		return c.damaged
	}
	if r := c.Damaged(); r != "" {
		return c.damagedError("found " + r)
	}
	return nil
}

// Check runs bbolt's full consistency check (every page reachable once,
// none freed twice) and returns the problems it finds, at most limit.
// It reads the whole file: doctor and backups use it, not every command.
// Problems found are recorded as damage.
func (c *Catalog) Check(limit int) ([]string, error) {
	if c.remote != nil {
		return nil, nil
	}
	if missing(c.path) {
		return nil, c.mayCreate()
	}
	problems, err := checkFile(c, c.path, limit)
	if len(problems) > 0 && c.damaged == nil {
		// Its result is the damaged error, kept in c.damaged as well
		// (a failure to record it is logged there); the problems are
		// what Check returns.
		_ = c.markDamaged(problems[0])
	}
	return problems, err
}

func checkFile(c *Catalog, path string, limit int) ([]string, error) {
	guard := protect // the caller decides whether to record damage
	var problems []string
	var db *bolt.DB
	err := guard(func() (err error) {
		// The free list is loaded here, in this goroutine, where a bad
		// page is recovered: tx.Check runs in a goroutine of its own.
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: c.timeout, ReadOnly: true, PreLoadFreelist: true})
		return err
	})
	if err != nil {
		if openDamage(err) {
			return []string{err.Error()}, nil
		}
		return nil, fmt.Errorf("open catalog %q: %w", path, err)
	}
	defer db.Close()
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			// Walk every record first, in this goroutine, so that a page
			// that faults is met here rather than in tx.Check's.
			if err := walk(tx); err != nil {
				return err
			}
			for e := range tx.Check() {
				if len(problems) < limit {
					problems = append(problems, e.Error())
				}
			}
			return nil
		})
	})
	var d *damage
	if errors.As(err, &d) {
		return append(problems, "bbolt panicked: "+err.Error()), nil
	}
	return problems, err
}

func walk(tx *bolt.Tx) error {
	var visit func(b *bolt.Bucket) error
	visit = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if child := b.Bucket(k); child != nil {
					return visit(child)
				}
			}
			return nil
		})
	}
	return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return visit(b) })
}

// Backup writes a consistent copy of the catalog to dst (mode 0600) from
// one read transaction, so other strata processes go on meanwhile. An
// existing dst is replaced only if overwrite is set. A catalog that fails
// bbolt's check is not copied.
func (c *Catalog) Backup(dst string, overwrite bool) error {
	if c.remote != nil {
		return c.ExportFile(dst, overwrite)
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		return storage.Errorf(storage.ErrInvalid, "invalid backup file %q: %w", dst, err)
	}
	if !overwrite {
		if _, err := os.Lstat(abs); err == nil {
			return storage.Errorf(storage.ErrExists, "%q exists: give another file, or --force to replace it", dst)
		}
	}
	if storage.RealPath(abs) == storage.RealPath(c.path) {
		return storage.Errorf(storage.ErrInvalid, "%q is the catalog itself: give another file", dst)
	}
	problems, err := c.Check(5)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return c.markDamaged(strings.Join(problems, "; "))
	}
	if err := c.View(func(t *Tx) error { return writeCopy(t.bolt, abs, overwrite) }); err != nil {
		return err
	}
	log.Debug().Str("file", abs).Msg("catalog backed up")
	return nil
}

// writeCopy writes tx's database to path (atomicfile, durable; a link
// that fails if path exists unless overwrite is set).
func writeCopy(tx *bolt.Tx, path string, overwrite bool) error {
	err := atomicfile.Replace(path, atomicfile.Options{Durable: true, NoReplace: !overwrite}, func(f *os.File) error {
		if _, err := tx.WriteTo(f); err != nil {
			return fmt.Errorf("write a copy of the catalog to %q: %w", f.Name(), err)
		}
		return nil
	})
	var pe *os.PathError
	switch {
	case errors.Is(err, os.ErrExist):
		return storage.Errorf(storage.ErrExists, "%q exists: give another file, or --force to replace it", path)
	case errors.As(err, &pe) && pe.Op == "createtemp":
		return storage.Errorf(storage.ErrPrecondition, "cannot write a copy of the catalog in %q: %w", filepath.Dir(path), err)
	}
	return err
}

// backupBeforeMigration keeps a copy of a catalog about to be migrated,
// as it is before the migration (tx has changed nothing yet).
func (c *Catalog) backupBeforeMigration(tx *Tx) error {
	v := versionAt(tx, kSchema)
	old := v > 0
	for _, o := range owners {
		old = old || versionAt(tx, ownerKey(o.name)) > 0
	}
	if !old {
		return nil // nothing to lose yet (a catalog started by InitOver)
	}
	dir := filepath.Join(c.home, BackupDir)
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "cannot keep a copy of the catalog before migrating it: %w", err)
	}
	p := filepath.Join(dir, fmt.Sprintf("catalog-schema-%d-%s.db", v, stamp()))
	if err := writeCopy(tx.bolt, p, false); err != nil {
		return fmt.Errorf("keep a copy of the catalog before migrating it: %w", err)
	}
	log.Info().Str("copy", p).Msg("the catalog's schema is being upgraded: a copy of it as it was is kept")
	return nil
}

func stamp() string { return time.Now().UTC().Format("20060102T150405.000000000Z") }

// Restore puts a copy of a catalog (a 'catalog backup' file, or one of
// HOME/backups) in place of the catalog, which is kept in HOME/backups,
// never deleted. The copy must pass bbolt's check and belong to this home;
// a catalog that is healthy is replaced only if force is set (changes since
// the copy would be lost from the catalog). Until the admin accepts the
// restored catalog (Accept), doctor removes no file it does not know. The
// caller holds the state home exclusively.
func (c *Catalog) Restore(src string, force bool) error {
	if c.remote != nil {
		return storage.Errorf(storage.ErrNotSupported, "the catalog %s is on etcd: put a copy in place with 'strata catalog import FILE --force'", c.path)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return storage.Errorf(storage.ErrInvalid, "invalid file %q: %w", src, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return storage.Errorf(storage.ErrNotFound, "cannot read %q: %w", src, err)
	}
	problems, err := checkFile(c, abs, 5)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return storage.Errorf(storage.ErrInvalid, "%q is not a sound strata catalog (%s): give another copy", src, strings.Join(problems, "; "))
	}
	var id string
	var schema int
	if err := readFile(c, abs, func(tx *bolt.Tx) (err error) {
		id, err = homeIDOf(tx)
		schema = versionAt(newTx(tx), kSchema)
		return err
	}); errors.Is(err, storage.ErrDamaged) {
		return storage.Errorf(storage.ErrInvalid, "%q is not a sound strata catalog (%v): give another copy", src, err)
	} else if err != nil {
		return err
	}
	if schema == 0 {
		return storage.Errorf(storage.ErrInvalid, "%q is not a strata catalog (it has no schema version): give another copy", src)
	}
	if schema > SchemaVersion() {
		return storage.Errorf(storage.ErrPrecondition, "%q has schema version %d, newer than this strata understands (%d): upgrade strata", src, schema, SchemaVersion())
	}
	home, err := readHomeIDFile(c.home)
	if err != nil {
		return err
	}
	if id != "" && home != "" && id != home && !force {
		return storage.Errorf(storage.ErrInvalid, "%q is the catalog of another state home (ID %s; this home is %s): its pools' files are not this home's; add --force if you mean to make this home that one", src, id, home)
	}
	if err := c.refuseHealthy(force); err != nil {
		return err
	}
	return c.replace(func(tmp string) error {
		return image.CopyFile(context.Background(), abs, tmp, image.CopyOptions{Durable: true})
	}, Restored{At: time.Now().UTC(), From: abs}, force && id != "" && id != home)
}

// InitOver starts an empty catalog over a home whose catalog is missing,
// empty or damaged, keeping every file (the old catalog goes to
// HOME/backups). The home keeps its ID, so its pools stay its own, and
// until the admin accepts the catalog doctor removes no file it does not
// know: the admin imports what they need again.
func (c *Catalog) InitOver() error {
	if c.remote != nil {
		return storage.Errorf(storage.ErrNotSupported, "the catalog %s is on etcd: start it over with 'strata catalog import FILE --force'", c.path)
	}
	if err := c.refuseHealthy(false); err != nil {
		return err
	}
	return c.replace(func(tmp string) error {
		db, err := bolt.Open(tmp, 0o600, nil)
		if err != nil {
			return err
		}
		return errors.Join(db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket(bMeta)
			return err
		}), db.Close())
	}, Restored{At: time.Now().UTC(), From: "an empty catalog ('strata catalog init --over-existing')"}, false)
}

// refuseHealthy refuses to replace a catalog that is in place and sound.
func (c *Catalog) refuseHealthy(force bool) error {
	if force || missing(c.path) || c.Damaged() != "" {
		return nil
	}
	problems, err := checkFile(c, c.path, 1)
	if err != nil || len(problems) > 0 {
		return nil
	}
	return storage.Errorf(storage.ErrExists, "the catalog %q is in place and passes its check: replacing it would lose every change since the copy; add --force if that is what you want", c.path)
}

// replace writes a new catalog with make, records how it came, moves the
// current catalog (if any) to HOME/backups, and puts the new one in place.
func (c *Catalog) replace(make func(tmp string) error, how Restored, adoptID bool) error {
	tmp := atomicfile.Path(c.path, "")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // a leftover of an earlier attempt that cannot go
	}
	defer os.Remove(tmp)
	if err := make(tmp); err != nil {
		return fmt.Errorf("write the new catalog %q: %w", tmp, err)
	}
	var id string
	db, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		if id, err = homeIDOf(tx); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		return putJSON(meta, kRestored, how)
	})
	if err := errors.Join(err, db.Close()); err != nil {
		return fmt.Errorf("write the new catalog %q: %w", tmp, err)
	}
	if !missing(c.path) {
		dir := filepath.Join(c.home, BackupDir)
		if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		aside := filepath.Join(dir, "catalog-replaced-"+stamp()+".db")
		if err := os.Rename(c.path, aside); err != nil {
			return fmt.Errorf("move the catalog aside: %w", err)
		}
		// Its new name durable (the home's sync below covers the old).
		if err := atomicfile.SyncDir(dir); err != nil {
			return err
		}
		log.Info().Str("copy", aside).Msg("the catalog it replaces is kept")
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return err
	}
	if adoptID && id != "" {
		if err := WriteFileAtomic(filepath.Join(c.home, HomeIDFile), []byte(id+"\n")); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(c.home); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(c.home, DamagedFile)); err != nil && !os.IsNotExist(err) {
		return err
	}
	c.damaged, c.migrated, c.homeChecked = nil, false, false
	return nil
}

// readFile runs fn in a read transaction of another catalog file.
func readFile(c *Catalog, path string, fn func(*bolt.Tx) error) error {
	var db *bolt.DB
	if err := protect(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: c.timeout, ReadOnly: true})
		return err
	}); err != nil {
		return err
	}
	defer db.Close()
	return protect(func() error { return db.View(fn) })
}

// WriteFileAtomic replaces path with data (mode 0600) durably
// (atomicfile): a crash leaves the old file or the new one, never a torn
// one.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, atomicfile.Options{Durable: true})
}

// WriteRuntimeFile replaces path with data as WriteFileAtomic does, but
// without the fsyncs: for files that describe processes of the running
// boot only (a guest's QEMU pid, its watcher), which a power loss makes
// stale anyway. Other processes, and a kill -9 at any point, still see the
// old file or the new one, whole.
func WriteRuntimeFile(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, atomicfile.Options{})
}
