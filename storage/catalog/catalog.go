// Package catalog is strata's metadata store: one bbolt file in the state
// home holding pools, volumes and (in later packages' buckets) guests and
// restore points, as JSON records keyed by stable IDs or names.
//
// Every change is one transaction. The file is opened for the duration of a
// transaction only, never across disk work, so concurrent strata processes
// serialise on it briefly: a writer takes an exclusive lock and waits up to
// the lock timeout, then fails with storage.ErrBusy; readers share a lock.
// bbolt was chosen over SQLite because a strata command is a short process:
// bbolt opens, commits and closes in well under a millisecond while the
// pure-Go SQLite adds about 2 ms of start-up to every command, and ordered
// keys with prefix scans give the indexes strata needs (restore points by
// target) without a query planner.
//
// The catalog is never silently replaced or written while damaged:
//   - a missing or empty catalog.db is created only in a home that holds
//     nothing of strata's yet (no home-id file, an empty default pool);
//     otherwise every command is refused with storage.ErrDamaged until the
//     admin restores a copy (Restore) or starts a fresh catalog over the
//     home on purpose (InitOver);
//   - damage bbolt reports (a bad meta page, a panic while reading a page)
//     becomes storage.ErrDamaged, never a panic, and is recorded in
//     HOME/catalog.damaged: from then on every write is refused until a
//     restore, because bbolt would build new pages on the damaged ones;
//   - each home has an ID (meta "home_id" and HOME/home-id), and each pool
//     directory a marker (.strata-pool) naming the home that owns it, so
//     that doctor never removes another home's files;
//   - before any schema migration a copy of the catalog is kept in
//     HOME/backups.
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog/log"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/strata-vm/strata/storage"
)

// FileName is the catalog's file name inside the state home.
const FileName = "catalog.db"

// DefaultPool is the pool that exists on first use, at HOME/pools/default.
const DefaultPool = "default"

// Bucket names. Keys: pools by name; volumes by ID; volume_names name → ID;
// volume_paths image path → ID (so registering a volume is O(1), not a scan).
var (
	bMeta        = []byte("meta")
	bPools       = []byte("pools")
	bVolumes     = []byte("volumes")
	bVolumeNames = []byte("volume_names")
	bVolumePaths = []byte("volume_paths")
	kSchema      = []byte("schema_version")
	kHomeID      = []byte("home_id")
	kRestored    = []byte("restored")
)

// migrations[i] brings the schema from version i to i+1.
var migrations = []func(c *Catalog, tx *Tx) error{
	func(c *Catalog, tx *Tx) error {
		p := storage.Pool{Name: DefaultPool, Driver: "dir", Path: filepath.Join(c.home, "pools", DefaultPool), Created: time.Now().UTC()}
		if err := storage.MkdirPassable(p.Path); err != nil {
			return fmt.Errorf("create default pool directory: %w", err)
		}
		return tx.Put(string(bPools), p.Name, p)
	},
	// 1 → 2: index volumes by image path.
	func(c *Catalog, tx *Tx) error {
		return tx.Scan(string(bVolumes), "", func(id string, raw []byte) error {
			var v storage.Volume
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("volume record %s: %w", id, err)
			}
			return tx.Put(string(bVolumePaths), v.Path, v.ID)
		})
	},
	// 2 → 3: the home's ID. A catalog restored over a home (Restore,
	// InitOver) takes the ID the home already has, so its pools stay its
	// own; otherwise the home is new and gets a new ID.
	func(c *Catalog, tx *Tx) error {
		if id, err := tx.HomeID(); err != nil || id != "" {
			return err
		}
		id, err := readHomeIDFile(c.home)
		if err != nil {
			return err
		}
		if id == "" {
			id = newHomeID()
		}
		return tx.Put(string(bMeta), string(kHomeID), id)
	},
}

// SchemaVersion is the schema of this package's own buckets that this
// build writes.
func SchemaVersion() int { return len(migrations) }

// An owner is a package that keeps buckets of its own in the catalog
// (restore points, golden images) and versions their schema itself, under
// meta key "schema_version:NAME": its migrations never depend on another
// package's, and a program that does not link it leaves its buckets alone.
type owner struct {
	name       string
	migrations []func(tx *Tx) error
}

var owners []owner

// Register declares the migrations of a package's buckets: migrations[i]
// brings them from version i to i+1. Call it once, from the package's init.
// A migration must be safe to run again over its own result (rebuild an
// index from scratch, never add to it).
func Register(name string, migrations ...func(tx *Tx) error) {
	for _, o := range owners {
		if o.name == name {
			panic("catalog: migrations of " + name + " registered twice")
		}
	}
	owners = append(owners, owner{name: name, migrations: migrations})
}

// Catalog is a handle on the catalog file; it holds no open file between
// transactions.
type Catalog struct {
	home     string
	path     string
	timeout  time.Duration
	migrated bool
	// homeChecked: this process has seen HOME/home-id and the markers of
	// the pools inside the home in place (see settleHome).
	homeChecked bool
	// damaged: this process found the catalog damaged; it writes no more.
	damaged error
	warned  bool // about a catalog an earlier command found damaged
	// remote is the etcd catalog, nil for the file (see OpenWith).
	remote *etcdStore
	// PoolDriver tells whether this program has the pool driver called
	// name: an import refuses a pool of another (nil: any name). The
	// store sets it.
	PoolDriver func(name string) bool
}

// Open prepares the catalog in home, creating home (mode 0711, see
// storage.DirPassable) and the schema on first use. A home, HOME/pools or
// default pool of mode 0700, as strata made them before guests ran under
// libvirt's own QEMU user, is made 0711 here: every command passes
// through Open, so an upgraded strata fixes its home on first use, before
// any guest is started, where `strata doctor` would leave guests
// unbootable until someone thought to run it. lockTimeout bounds how long
// a transaction waits for another process.
func Open(home string, lockTimeout time.Duration) (*Catalog, error) {
	abs, err := filepath.Abs(home)
	if err != nil {
		return nil, storage.Errorf(storage.ErrInvalid, "invalid home %q: %w", home, err)
	}
	if err := storage.MkdirPassable(abs); err != nil {
		return nil, storage.Errorf(storage.ErrPrecondition, "cannot create the state home %q: %w", abs, err)
	}
	abs = storage.RealPath(abs) // paths strata records have one spelling
	for _, d := range []string{abs, filepath.Join(abs, "pools"), filepath.Join(abs, "pools", DefaultPool)} {
		if err := storage.OpenPassable(d); err != nil {
			log.Warn().Err(err).Str("dir", d).Msg("cannot make the directory passable for libvirt's QEMU user: chmod 711 it")
		}
	}
	if st, err := os.Stat(abs); err == nil && st.Mode().Perm()&0o066 != 0 {
		log.Warn().Str("home", abs).Str("mode", st.Mode().Perm().String()).Msg("the state home is readable or writable by others: chmod 711 it (strata creates it so)")
	}
	c := &Catalog{home: abs, path: filepath.Join(abs, FileName), timeout: lockTimeout}
	return c, nil
}

// Home is the state home's absolute path.
func (c *Catalog) Home() string { return c.home }

// Path is the catalog file's path.
func (c *Catalog) Path() string { return c.path }

// Where names the catalog in messages: its file, or its etcd address.
func (c *Catalog) Where() string { return c.path }

func (c *Catalog) open(readOnly bool) (db *bolt.DB, err error) {
	if !readOnly {
		if err := c.refuseDamaged(); err != nil {
			return nil, err
		}
		// (Looked at again on refusal: another process starting the
		// catalog of a new home may have finished it meanwhile.)
		if missing(c.path) {
			if err := c.mayCreate(); err != nil && missing(c.path) {
				return nil, err
			}
		}
	}
	err = c.guard(func() error {
		db, err = bolt.Open(c.path, 0o600, &bolt.Options{Timeout: c.timeout, ReadOnly: readOnly})
		return err
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, storage.Errorf(storage.ErrBusy, "the catalog %q is busy: another strata process held it for more than %s; try again or raise --lock-timeout", c.path, c.timeout)
	}
	if errors.Is(err, storage.ErrDamaged) {
		return nil, err
	}
	if err != nil && openDamage(err) {
		return nil, c.markDamaged(err.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("open catalog %q: %w", c.path, err)
	}
	return db, nil
}

// missing tells whether the catalog file is absent or empty: either way
// bbolt would start a new catalog in it.
func missing(path string) bool {
	st, err := os.Stat(path)
	return os.IsNotExist(err) || (err == nil && st.Size() == 0)
}

// openDamage tells whether bbolt refused to open the file because of what
// is in it (not because of permissions or the like).
func openDamage(err error) bool {
	for _, e := range []error{bolterrors.ErrInvalid, bolterrors.ErrChecksum, bolterrors.ErrVersionMismatch, bolterrors.ErrInvalidMapping} {
		if errors.Is(err, e) {
			return true
		}
	}
	var pe *os.PathError
	return !errors.As(err, &pe) && !errors.Is(err, bolterrors.ErrTimeout)
}

// damage is a panic bbolt raised reading a file: how bbolt reacts to a
// page that is not what it expects.
type damage struct{ reason string }

func (d *damage) Error() string { return d.reason }

// protect runs fn, turning a panic raised inside bbolt, and a memory fault
// on the mapped file, into a *damage error. A panic raised elsewhere is a
// bug in strata and goes on.
func protect(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if !panickedInBolt() {
				panic(r)
			}
			err = &damage{reason: fmt.Sprint(r)}
		}
	}()
	return fn()
}

// guard is protect for the home's catalog: damage is recorded, and
// becomes storage.ErrDamaged.
func (c *Catalog) guard(fn func() error) error {
	err := protect(fn)
	var d *damage
	if errors.As(err, &d) {
		return c.markDamaged(d.reason)
	}
	return err
}

func versionAt(tx *Tx, k []byte) int {
	var v int
	if raw, _ := tx.kv.get(string(bMeta), string(k)); raw != nil {
		_ = json.Unmarshal(raw, &v)
	}
	return v
}

func ownerKey(name string) []byte { return []byte(string(kSchema) + ":" + name) }

// upToDate tells whether no migration is due.
func upToDate(tx *Tx) bool {
	if versionAt(tx, kSchema) != SchemaVersion() {
		return false
	}
	for _, o := range owners {
		if versionAt(tx, ownerKey(o.name)) != len(o.migrations) {
			return false
		}
	}
	return true
}

func (c *Catalog) migrate(tx *Tx) error {
	if upToDate(tx) {
		return nil
	}
	if !tx.kv.hasBucket(string(bMeta)) {
		// A catalog without a schema: bbolt has just made it, or it was
		// emptied. Only a new home may start one.
		if err := c.mayCreate(); err != nil {
			return err
		}
	} else if err := c.keepBeforeMigration(tx); err != nil {
		return err
	}
	newer := func(what string, v, known int) error {
		return storage.Errorf(storage.ErrPrecondition, "the catalog %q has %sschema version %d, newer than this strata understands (%d): upgrade strata", c.Where(), what, v, known)
	}
	v := versionAt(tx, kSchema)
	if v > SchemaVersion() {
		return newer("", v, SchemaVersion())
	}
	for _, o := range owners {
		if ov := versionAt(tx, ownerKey(o.name)); ov > len(o.migrations) {
			return newer(o.name+" ", ov, len(o.migrations))
		}
	}
	for ; v < SchemaVersion(); v++ {
		if err := migrations[v](c, tx); err != nil {
			return fmt.Errorf("catalog migration to schema %d: %w", v+1, err)
		}
	}
	if err := tx.Put(string(bMeta), string(kSchema), v); err != nil {
		return err
	}
	for _, o := range owners {
		ov := versionAt(tx, ownerKey(o.name))
		for ; ov < len(o.migrations); ov++ {
			if err := o.migrations[ov](tx); err != nil {
				return fmt.Errorf("catalog migration of %s to schema %d: %w", o.name, ov+1, err)
			}
		}
		if err := tx.Put(string(bMeta), string(ownerKey(o.name)), ov); err != nil {
			return err
		}
	}
	return nil
}

// Update runs fn in one read-write transaction: all of fn's changes are
// committed together (and synced) or none are. With a shared catalog
// (etcd) fn runs again from the start when another transaction changed
// what it read: it must do only catalog work, or work it does once (see
// store.CreateVolume), and reset what it collects.
//
// A catalog found damaged is never written: see the package doc.
func (c *Catalog) Update(fn func(*Tx) error) error {
	if c.remote != nil {
		return c.remote.update(c, fn)
	}
	db, err := c.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	migrated := false
	err = c.guard(func() error {
		return db.Update(func(btx *bolt.Tx) error {
			tx := newTx(btx)
			if !c.migrated && !upToDate(tx) {
				migrated = true
			}
			if err := c.migrate(tx); err != nil {
				return err
			}
			c.migrated = true
			return fn(tx)
		})
	})
	if err != nil {
		return err
	}
	if migrated || !c.homeChecked {
		return c.settleHome(db)
	}
	return nil
}

// View runs fn in a read-only transaction that shares the file with other
// readers. A catalog that does not exist yet or has an older schema is
// first brought up to date under the write lock.
func (c *Catalog) View(fn func(*Tx) error) error {
	if c.remote != nil {
		return c.remote.view(c, fn)
	}
	if !c.migrated && missing(c.path) {
		if err := c.Update(func(*Tx) error { return nil }); err != nil {
			return err
		}
	}
	if !c.warned {
		c.warned = true
		if r := c.Damaged(); r != "" {
			log.Warn().Str("catalog", c.path).Str("found", r).Msg("the catalog is damaged: strata reads what it can and writes nothing until it is restored ('strata catalog restore FILE')")
		}
	}
	db, err := c.open(true)
	if err != nil {
		return err
	}
	defer db.Close()
	stale := false
	err = c.guard(func() error {
		return db.View(func(btx *bolt.Tx) error {
			tx := newTx(btx)
			if !c.migrated && !upToDate(tx) {
				stale = true
				return nil
			}
			c.migrated = true
			return fn(tx)
		})
	})
	if err == nil && !stale && !c.homeChecked && c.damaged == nil {
		err = c.settleHome(db)
	}
	if stale {
		db.Close()
		if err := c.Update(func(*Tx) error { return nil }); err != nil {
			return err
		}
		return c.View(fn)
	}
	return err
}

// Tx is a catalog transaction, served by the bbolt file or by etcd
// (see backend.go): the same records either way.
type Tx struct {
	kv kv
	// bolt is the bbolt transaction, nil with another backend: only the
	// file's own care (copies, checks) uses it.
	bolt *bolt.Tx
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// Get decodes the record at bucket/key into v; false if there is none.
func (t *Tx) Get(bucket, key string, v any) (bool, error) {
	raw, err := t.kv.get(bucket, key)
	if err != nil || raw == nil {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, badRecord(bucket, key, fmt.Errorf("catalog record %s/%s: %w", bucket, key, err))
	}
	return true, nil
}

// Put stores v as the record at bucket/key.
func (t *Tx) Put(bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.kv.put(bucket, key, raw)
}

// Delete removes bucket/key (no error if absent).
func (t *Tx) Delete(bucket, key string) error { return t.kv.del(bucket, key) }

// DeleteBucket removes a top-level bucket and everything in it (no error if
// there is none).
func (t *Tx) DeleteBucket(name string) error { return t.kv.deleteBucket(name) }

// Scan calls fn for each record in bucket whose key starts with prefix, in
// key order; fn decodes the raw JSON itself. Returning errStop from fn
// ends the scan early without error.
func (t *Tx) Scan(bucket, prefix string, fn func(key string, raw []byte) error) error {
	var failed string
	err := t.kv.scan(bucket, prefix, func(k string, v []byte) error {
		if err := fn(k, v); err != nil {
			failed = k
			return err
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	if err != nil && failed != "" {
		return badRecord(bucket, failed, err)
	}
	return err
}

// badRecord makes a record that is not JSON at all, or JSON of another
// type than strata writes there (strata writes only its own records: the
// bytes were changed behind it), a "catalog damaged" error, exit 9. It is not recorded as damage of the whole catalog: bbolt's pages
// are sound, and the record can be restored from a copy or deleted.
func badRecord(bucket, key string, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if !(errors.As(err, &se) || errors.As(err, &te)) || errors.Is(err, storage.ErrDamaged) {
		return err
	}
	return storage.Errorf(storage.ErrDamaged, "the catalog record %s/%s is damaged (%v): restore the catalog from a copy ('strata catalog restore FILE'); 'strata doctor' tells more", bucket, key, err)
}

// ErrStop ends a Scan early.
var ErrStop = errors.New("stop scan")

// NextSeq returns the next number of a named sequence (1, 2, 3...), e.g.
// the restore-point numbers of one target. Write transactions only.
func (t *Tx) NextSeq(name string) (uint64, error) {
	n, err := t.LastSeq(name)
	if err != nil {
		return 0, err
	}
	n++
	return n, t.Put(bSequences, name, n)
}

// GiveBackSeq returns number n to sequence name if it is the last one
// the sequence gave (a number taken for a record that was removed again
// before anyone could see it, in a transaction after the one that took
// it); otherwise it does nothing.
func (t *Tx) GiveBackSeq(name string, n uint64) error {
	last, err := t.LastSeq(name)
	if err != nil || last != n || n == 0 {
		return err
	}
	return t.Put(bSequences, name, n-1)
}

// bSequences holds the last number each sequence gave.
const bSequences = "sequences"

// LastSeq is the last number sequence name gave (0: none yet), without
// taking one.
func (t *Tx) LastSeq(name string) (uint64, error) {
	var n uint64
	_, err := t.Get(bSequences, name, &n)
	return n, err
}
