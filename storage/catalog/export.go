package catalog

// Export and import: the whole catalog as one JSON document, the way a
// catalog moves between backends (the bbolt file and etcd) and the copy
// strata keeps of an etcd catalog before a schema migration.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog/log"
	bolt "go.etcd.io/bbolt"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
)

// ExportFormat names the document Export writes.
const ExportFormat = "strata-catalog-export"

// Export is the document: every bucket's records as they are stored.
type Export struct {
	Format   string                                `json:"format"`
	Version  int                                   `json:"version"`
	From     string                                `json:"from"`
	At       time.Time                             `json:"at"`
	Schema   int                                   `json:"schema_version"`
	HomeID   string                                `json:"home_id"`
	Buckets  map[string]map[string]json.RawMessage `json:"buckets"`
	Records  int                                   `json:"records"`
	Versions map[string]int                        `json:"-"`

	knownDriver func(string) bool // checkRecords' pool drivers
	home        string            // checkRecords' state home ("": none known)
	volumePaths map[string][]string
}

func exportTx(tx *Tx, from string) (*Export, error) {
	homeID, err := tx.HomeID()
	if err != nil {
		return nil, err
	}
	e := &Export{Format: ExportFormat, Version: 1, From: from, At: time.Now().UTC(), Schema: versionAt(tx, kSchema), HomeID: homeID, Buckets: map[string]map[string]json.RawMessage{}}
	names, err := tx.kv.buckets()
	if err != nil {
		return nil, err
	}
	for _, b := range names {
		recs := map[string]json.RawMessage{}
		if err := tx.kv.scan(b, "", func(k string, v []byte) error {
			var r json.RawMessage
			if err := json.Unmarshal(v, &r); err != nil { // says where it is not JSON
				return badRecord(b, k, err)
			}
			recs[k] = append(json.RawMessage(nil), v...)
			return nil
		}); err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			e.Buckets[b] = recs
			e.Records += len(recs)
		}
	}
	return e, nil
}

// Export writes the whole catalog, read in one transaction, to w.
func (c *Catalog) Export(w io.Writer) error {
	var e *Export
	if err := c.View(func(tx *Tx) (err error) { e, err = exportTx(tx, c.path); return err }); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(e)
}

// ExportFile writes Export to path (mode 0600; an existing file only if
// overwrite is set). "-" is stdout.
func (c *Catalog) ExportFile(path string, overwrite bool) error {
	if path == "-" {
		return c.Export(os.Stdout)
	}
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return storage.Errorf(storage.ErrExists, "%q exists: give another file, or --force to replace it", path)
		}
	}
	var b strings.Builder
	if err := c.Export(&b); err != nil {
		return err
	}
	if err := WriteFileAtomic(path, []byte(b.String())); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "cannot write %q: %v", path, err)
	}
	log.Debug().Str("file", path).Msg("catalog exported")
	return nil
}

// readExport reads and checks an export document.
func readExport(path string) (*Export, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, storage.Errorf(storage.ErrNotFound, "cannot read %q: %v", path, err)
	}
	var e Export
	if err := json.Unmarshal(raw, &e); err != nil || e.Format != ExportFormat {
		return nil, storage.Errorf(storage.ErrInvalid, "%q is not a catalog export ('strata catalog export FILE' writes one)", path)
	}
	if e.Version != 1 {
		return nil, storage.Errorf(storage.ErrPrecondition, "%q is an export of format version %d, which this strata does not read: upgrade strata", path, e.Version)
	}
	if e.Schema == 0 {
		return nil, storage.Errorf(storage.ErrInvalid, "%q holds no catalog schema version: it is not a strata catalog", path)
	}
	if e.Schema > SchemaVersion() {
		return nil, storage.Errorf(storage.ErrPrecondition, "%q has schema version %d, newer than this strata understands (%d): upgrade strata", path, e.Schema, SchemaVersion())
	}
	if err := checkExportBuckets(path, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// checkExportBuckets refuses an export a catalog would read back as
// something else, and counts its records (the file's count is a claim):
// an etcd catalog keeps a record at PREFIX/c/BUCKET/KEY and splits it at
// the first "/", so a bucket name with one (or none at all) would land
// its records in another bucket; the schema version checked above must be
// the one the meta bucket records, which is what the catalog then has.
func checkExportBuckets(path string, e *Export) error {
	e.Records = 0
	for b, recs := range e.Buckets {
		if b == "" || strings.Contains(b, "/") {
			return storage.Errorf(storage.ErrInvalid, "%q holds a bucket named %q, which no strata catalog has: it is not an export strata wrote (fix or remove that bucket)", path, b)
		}
		e.Records += len(recs)
	}
	if raw, ok := e.Buckets[string(bMeta)][string(kSchema)]; ok {
		var v int
		if err := json.Unmarshal(raw, &v); err != nil || v != e.Schema {
			return storage.Errorf(storage.ErrInvalid, "%q declares schema version %d but its meta bucket records %s: it is not an export strata wrote (make the two agree)", path, e.Schema, raw)
		}
	}
	return nil
}

// ImportResult is what Import did.
type ImportResult struct {
	Records int
	// Backup is the export of the etcd catalog the import replaced
	// (HOME/backups, mode 0600); "" when there was none.
	Backup string
}

// Import puts an export in place of this catalog. An etcd catalog must be
// empty (no record under its prefix) unless force is set, which replaces
// what is there (see etcdStore.importExport: checked against etcd's
// limits first, kept as an export in HOME/backups, restored from it if a
// write fails); a bbolt catalog is replaced as Restore replaces it (the
// old file kept in HOME/backups, a sound one only with force). As after a
// restore, doctor removes no file the catalog does not know until the
// admin accepts it (Accept). Older schemas are migrated by the next
// command, as always. The caller holds the state home exclusively.
func (c *Catalog) Import(path string, force bool) (ImportResult, error) {
	e, err := readExport(path)
	if err != nil {
		return ImportResult{}, err
	}
	if err := e.checkRecords(path, c.home, c.PoolDriver); err != nil {
		return ImportResult{}, err
	}
	abs := path
	if path != "-" {
		abs, _ = filepath.Abs(path)
	}
	how := Restored{At: time.Now().UTC(), From: "an export (" + abs + ")"}
	if c.remote != nil {
		backup, err := c.remote.importExport(c, e, how, force)
		return ImportResult{Records: e.Records, Backup: backup}, err
	}
	if err := c.refuseHealthy(force); err != nil {
		return ImportResult{}, err
	}
	return ImportResult{Records: e.Records}, c.replace(func(tmp string) error {
		db, err := bolt.Open(tmp, 0o600, nil)
		if err != nil {
			return err
		}
		return errors.Join(db.Update(func(btx *bolt.Tx) error {
			tx := newTx(btx)
			for _, b := range sortedKeys(e.Buckets) {
				for k, v := range e.Buckets[b] {
					if err := tx.kv.put(b, k, v); err != nil {
						return err
					}
				}
			}
			_, err := btx.CreateBucketIfNotExists(bMeta)
			return err
		}), db.Close())
	}, how, true)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// keepBeforeMigration keeps a copy of a catalog about to be migrated: a
// copy of the bbolt file, or an export of the etcd catalog, in
// HOME/backups.
func (c *Catalog) keepBeforeMigration(tx *Tx) error {
	if tx.bolt != nil {
		return c.backupBeforeMigration(tx)
	}
	v := versionAt(tx, kSchema)
	old := v > 0
	for _, o := range owners {
		old = old || versionAt(tx, ownerKey(o.name)) > 0
	}
	if !old {
		return nil
	}
	e, err := exportTx(tx, c.path)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(e, "", " ")
	if err != nil {
		return err
	}
	dir := filepath.Join(c.home, BackupDir)
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "cannot keep a copy of the catalog before migrating it: %w", err)
	}
	p := filepath.Join(dir, fmt.Sprintf("catalog-schema-%d-%s.json", v, stamp()))
	if err := WriteFileAtomic(p, raw); err != nil {
		return fmt.Errorf("keep a copy of the catalog before migrating it: %w", err)
	}
	log.Info().Str("copy", p).Msg("the catalog's schema is being upgraded: an export of it as it was is kept")
	return nil
}
