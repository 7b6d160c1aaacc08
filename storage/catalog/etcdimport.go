package catalog

// Importing an export into an etcd catalog. etcd takes a bounded
// transaction (--max-txn-ops, 128 by default; --max-request-bytes, 1.5 MiB
// by default), so a catalog is written in several: the import is not one
// atomic step. It is made safe by doing everything that can be refused
// before anything is deleted, and by keeping what it replaces:
//
//  1. the transactions are planned and each is shown to etcd first as a
//     transaction whose compare fails (etcd checks a request's size and
//     operation count before it evaluates the compare, and such a
//     transaction writes nothing): a refusal shrinks the transactions,
//     and a single record etcd will not take refuses the import with its
//     size and the --max-request-bytes to start etcd with;
//  2. the catalog there is exported to HOME/backups (mode 0600);
//  3. its keys are deleted and the export written, the meta bucket last
//     and its schema version the very last key: until then every
//     command takes the catalog for a missing one and changes nothing;
//  4. a write that fails all the same (etcd gone, out of space) has the
//     catalog put back from the file of step 2.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
)

// The bounds an import's transactions start from (etcd's defaults are
// 128 operations and 1.5 MiB); they shrink to what the server takes.
const (
	importOps   = 100
	importBytes = 1 << 20
)

// skipImportCheck (STRATA_TEST_SKIP_IMPORT_CHECK=1, read when an import
// starts) is a test-only switch: the export's transactions are not shown
// to etcd first, so that a write etcd refuses happens part-way, as an
// outage would make it, and the catalog is put back from its copy.
func skipImportCheck() bool { return os.Getenv("STRATA_TEST_SKIP_IMPORT_CHECK") == "1" }

// kvPut is one key an import writes.
type kvPut struct {
	what  string // bucket/key, for messages
	key   string
	value []byte
}

// importPuts are the keys of e under s's prefix in the order they are
// written: each bucket's records then its version stamp, the meta bucket
// last with the schema version last of all. how, when set, is recorded
// as the catalog's restore (an import); nil writes e as it is (putting a
// catalog back from its copy).
func (s *etcdStore) importPuts(e *Export, how *Restored) []kvPut {
	stamp := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
	var puts []kvPut
	for _, b := range sortedKeys(e.Buckets) {
		if b == string(bMeta) {
			continue
		}
		for _, k := range sortedKeys(e.Buckets[b]) {
			puts = append(puts, kvPut{what: b + "/" + k, key: s.dataKey(b, k), value: e.Buckets[b][k]})
		}
		puts = append(puts, kvPut{what: "version of " + b, key: s.versionKey(b), value: stamp})
	}
	meta := map[string]json.RawMessage{}
	for k, v := range e.Buckets[string(bMeta)] {
		meta[k] = v
	}
	if how != nil {
		raw, _ := json.Marshal(how)
		meta[string(kRestored)] = raw
	}
	puts = append(puts, kvPut{what: "version of " + string(bMeta), key: s.versionKey(string(bMeta)), value: stamp})
	var schema *kvPut
	for _, k := range sortedKeys(meta) {
		p := kvPut{what: string(bMeta) + "/" + k, key: s.dataKey(string(bMeta), k), value: meta[k]}
		if k == string(kSchema) {
			schema = &p
			continue
		}
		puts = append(puts, p)
	}
	if schema != nil {
		puts = append(puts, *schema)
	}
	return puts
}

func putsBytes(puts []kvPut) int {
	n := 0
	for _, p := range puts {
		n += len(p.key) + len(p.value)
	}
	return n
}

// nextChunk is the first transaction of puts: at most maxOps keys and
// maxBytes bytes, and at least one key.
func nextChunk(puts []kvPut, maxOps, maxBytes int) []kvPut {
	n, size := 0, 0
	for n < len(puts) && n < maxOps {
		sz := len(puts[n].key) + len(puts[n].value)
		if n > 0 && size+sz > maxBytes {
			break
		}
		n, size = n+1, size+sz
	}
	return puts[:n]
}

func txnOf(puts []kvPut) txnRequest {
	req := txnRequest{Success: make([]op, len(puts))}
	for i, p := range puts {
		req.Success[i] = op{Put: &putRequest{Key: []byte(p.key), Value: p.value}}
	}
	return req
}

// etcd's answers to a transaction over its limits.
func tooManyOps(err error) bool {
	var e *etcdError
	return errors.As(err, &e) && strings.Contains(e.Message, "too many operations")
}

func tooLarge(err error) bool {
	var e *etcdError
	return errors.As(err, &e) && (strings.Contains(e.Message, "request is too large") || strings.Contains(e.Message, "message larger than max"))
}

// fit plans the transactions of puts and shows each to etcd (a compare
// that never holds: etcd checks the size and the operation count, then
// writes nothing), shrinking them until etcd takes every one. A single
// key etcd refuses refuses the whole plan, saying what to do.
func (s *etcdStore) fit(deadline time.Time, puts []kvPut) ([][]kvPut, error) {
	maxOps, maxBytes := importOps, importBytes
	never := modIs(s.prefix+"/import-check", -1) // no key has revision -1
	var plan [][]kvPut
	for rest := puts; len(rest) > 0; {
		c := nextChunk(rest, maxOps, maxBytes)
		req := txnOf(c)
		req.Compare = []compare{never}
		var tr txnResponse
		err := s.do(deadline, "/v3/kv/txn", req, &tr)
		switch {
		case err == nil:
			plan = append(plan, c)
			rest = rest[len(c):]
		case tooManyOps(err) && len(c) > 1:
			maxOps = len(c) / 2
		case tooLarge(err) && len(c) > 1:
			maxBytes = max(putsBytes(c)/2, 1)
		case tooManyOps(err):
			return nil, storage.Errorf(storage.ErrPrecondition, "etcd (%s) refuses a transaction of even one operation (%v): check its --max-txn-ops; nothing was changed", s.display, err)
		case tooLarge(err):
			n := len(c[0].key) + len(c[0].value)
			return nil, storage.Errorf(storage.ErrPrecondition, "record %s of the export is %d bytes (%s), more than etcd (%s) takes in one request: start etcd with --max-request-bytes %d or more (its default is 1572864), or remove that record from the file; nothing was changed", c[0].what, n, storage.FormatSize(int64(n)), s.display, n+4096)
		default:
			return nil, err
		}
	}
	if maxOps < importOps || maxBytes < importBytes {
		log.Info().Int("max_ops", maxOps).Int("max_bytes", maxBytes).Int("transactions", len(plan)).Msg("etcd takes smaller transactions than strata's default: the import is written in more of them")
	}
	return plan, nil
}

// writePlan writes planned transactions, in order.
func (s *etcdStore) writePlan(deadline time.Time, plan [][]kvPut) error {
	for i, c := range plan {
		var tr txnResponse
		if err := s.do(deadline, "/v3/kv/txn", txnOf(c), &tr); err != nil {
			why := err.Error()
			if tooLarge(err) {
				why = fmt.Sprintf("etcd refused %d bytes in one request: %v", putsBytes(c), err)
			}
			return fmt.Errorf("transaction %d of %d (%d keys from %s): %s", i+1, len(plan), len(c), c[0].what, why)
		}
	}
	return nil
}

// clear deletes every record and version stamp of the catalog, in one
// transaction.
func (s *etcdStore) clear(deadline time.Time) error {
	var req txnRequest
	for _, p := range []string{s.prefix + "/c/", s.prefix + "/v/"} {
		req.Success = append(req.Success, op{Delete: &deleteRequest{Key: []byte(p), RangeEnd: prefixEnd(p)}})
	}
	var tr txnResponse
	return s.do(deadline, "/v3/kv/txn", req, &tr)
}

// importExport writes an export to an etcd catalog (see the top of this
// file), returning the copy of the catalog it replaced ("" if it was
// empty).
func (s *etcdStore) importExport(c *Catalog, e *Export, how Restored, force bool) (string, error) {
	deadline := time.Now().Add(c.timeout)
	data := s.prefix + "/c/"
	var resp rangeResponse
	if err := s.do(deadline, "/v3/kv/range", rangeRequest{Key: []byte(data), RangeEnd: prefixEnd(data), CountOnly: true}, &resp); err != nil {
		return "", err
	}
	if resp.Count > 0 && !force {
		return "", storage.Errorf(storage.ErrExists, "the catalog %s holds %d records already: importing over them would lose every change they hold; add --force to replace them", s.display, resp.Count)
	}
	puts := s.importPuts(e, &how)
	var plan [][]kvPut
	if skipImportCheck() {
		for rest := puts; len(rest) > 0; {
			ch := nextChunk(rest, importOps, importBytes)
			plan, rest = append(plan, ch), rest[len(ch):]
		}
	} else {
		var err error
		if plan, err = s.fit(deadline, puts); err != nil {
			return "", fmt.Errorf("import into %s: %w", s.display, err)
		}
	}
	var backup string
	var old *Export
	if resp.Count > 0 {
		var err error
		if old, err = exportTx(&Tx{kv: s.begin(false, deadline)}, s.display); err != nil {
			return "", fmt.Errorf("keep a copy of the catalog %s before replacing it: %w; nothing was changed", s.display, err)
		}
		if backup, err = c.keepExport(old, "catalog-before-import"); err != nil {
			return "", fmt.Errorf("keep a copy of the catalog %s before replacing it: %w; nothing was changed", s.display, err)
		}
		log.Info().Str("copy", backup).Int("records", old.Records).Msg("the catalog the import replaces is kept")
	}
	err := s.clear(deadline)
	if err == nil {
		storage.Crashpoint("import:cleared")
		err = s.writePlan(deadline, plan)
	}
	if err != nil {
		return backup, s.putBack(c, old, backup, err)
	}
	c.migrated, c.homeChecked = false, false
	if e.HomeID != "" {
		if err := WriteFileAtomic(filepath.Join(c.home, HomeIDFile), []byte(e.HomeID+"\n")); err != nil {
			return backup, err
		}
	}
	return backup, nil
}

// putBack puts the catalog an import replaced back (old, kept in the file
// backup; nil: it was empty) after the import failed with cause.
func (s *etcdStore) putBack(c *Catalog, old *Export, backup string, cause error) error {
	deadline := time.Now().Add(c.timeout)
	failed := fmt.Sprintf("the import into %s failed part-way (%v)", s.display, cause)
	var err error
	if old == nil {
		if err = s.clear(deadline); err == nil {
			return storage.Errorf(storage.ErrPrecondition, "%s; what it had written is removed: the catalog is empty again", failed)
		}
		return storage.Errorf(storage.ErrPrecondition, "%s, and removing what it had written failed too (%v): the catalog holds part of the export, which strata takes for a missing catalog; import the file again with --force once etcd takes writes", failed, err)
	}
	var plan [][]kvPut
	plan, err = s.fit(deadline, s.importPuts(old, nil))
	if err == nil {
		if err = s.clear(deadline); err == nil {
			err = s.writePlan(deadline, plan)
		}
	}
	if err != nil {
		return storage.Errorf(storage.ErrPrecondition, "%s, and putting the catalog back as it was failed too (%v): its copy is %s; import that with --force once etcd takes writes (until then strata takes the catalog for a missing one)", failed, err, backup)
	}
	c.migrated, c.homeChecked = false, false
	return storage.Errorf(storage.ErrPrecondition, "%s: the catalog is back as it was (from its copy %s); nothing was imported", failed, backup)
}

// keepExport writes e to HOME/backups/NAME-STAMP.json (mode 0600).
func (c *Catalog) keepExport(e *Export, name string) (string, error) {
	raw, err := json.MarshalIndent(e, "", " ")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.home, BackupDir)
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-%s.json", name, stamp()))
	if err := WriteFileAtomic(p, raw); err != nil {
		return "", err
	}
	return p, nil
}
