package catalog

// Checks of the records of an export before it is imported: a record
// strata reads back is trusted as if a command had written it (a volume's
// path is an image strata writes, resizes and purges; a pool's path is a
// directory strata creates files in), so an export edited by hand must
// pass the checks the commands apply when they write, record by record,
// before anything is replaced.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/pattern"
	"github.com/strata-vm/strata/storage/rbd"
)

// A RecordCheck checks one record (key, raw) of its bucket in export e as
// the commands that write such a record would, and may look up the
// records it refers to (e.Record). Its error names the field at fault
// (FieldError).
type RecordCheck func(e *Export, key string, raw json.RawMessage) error

var (
	recordChecks = map[string]RecordCheck{}
	// checkOrder is the order of registration: a package's records that
	// others refer to (pools, volumes, goldens) come first, so that a
	// bad record is named itself, not as the one referring to it.
	checkOrder []string
)

// RegisterRecords declares how an import checks the records of bucket.
// The package owning the bucket calls it from its init; a bucket no
// linked package registers is imported unchecked, as nothing in the
// program reads it (as with Register's migrations).
func RegisterRecords(bucket string, check RecordCheck) {
	if _, dup := recordChecks[bucket]; dup {
		panic("catalog: records of " + bucket + " registered twice")
	}
	recordChecks[bucket] = check
	checkOrder = append(checkOrder, bucket)
}

// FieldError is a record field that fails its check.
func FieldError(field, format string, args ...any) error {
	return fmt.Errorf("field %q: %s", field, fmt.Sprintf(format, args...))
}

// Record decodes the record at bucket/key of the export into v; false if
// there is none.
func (e *Export) Record(bucket, key string, v any) (bool, error) {
	raw, ok := e.Buckets[bucket][key]
	if !ok {
		return false, nil
	}
	return true, DecodeRecord(raw, v)
}

// DecodeRecord decodes a record into v, saying which field has the wrong
// type (json's own message names the Go type, not the record's field).
func DecodeRecord(raw json.RawMessage, v any) error {
	err := json.Unmarshal(raw, v)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return FieldError(te.Field, "a %s is not what it holds (it holds %s)", te.Value, te.Type)
	}
	return err
}

// DecodeValue decodes a record that is one value (an index's ID, a
// count) into v, naming it field when it is of the wrong type.
func DecodeValue(field string, raw json.RawMessage, v any) error {
	err := json.Unmarshal(raw, v)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return FieldError(field, "a %s is not what it holds (it holds %s)", te.Value, te.Type)
	}
	return err
}

// checkRecords runs every registered check, and the pool drivers known
// to the program (known; nil: any non-empty name), over e, imported into
// the state home home.
func (e *Export) checkRecords(path, home string, known func(driver string) bool) error {
	e.knownDriver, e.home = known, home
	for _, b := range checkOrder {
		check := recordChecks[b]
		keys := make([]string, 0, len(e.Buckets[b]))
		for k := range e.Buckets[b] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := check(e, k, e.Buckets[b][k]); err != nil {
				return storage.Errorf(storage.ErrInvalid, "%q: record %s/%s is not one strata would write: %v; nothing was imported: fix or remove the record", path, b, k, err)
			}
		}
	}
	return nil
}

// ValidID checks a catalog ID (storage.NewID: 16 lower-case hex digits)
// in field.
func ValidID(field, id string) error {
	if len(id) != 16 || strings.ToLower(id) != id {
		return FieldError(field, "%q is not a strata ID (16 lower-case hex digits)", id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return FieldError(field, "%q is not a strata ID (16 lower-case hex digits)", id)
	}
	return nil
}

// ValidName checks a name in field as the commands do (storage.ValidateName).
func ValidName(field, what, name string) error {
	if err := storage.ValidateName(what, name); err != nil {
		return FieldError(field, "%v", err)
	}
	return nil
}

// ValidPath checks a file path in field: absolute and clean (one
// spelling: strata records no other), with no NUL.
func ValidPath(field, p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return FieldError(field, "%q is not an absolute, clean path", p)
	}
	return nil
}

// ValidFormat checks a volume's format in field: raw, qcow2, or iso (an
// ISO image imported as a volume).
func ValidFormat(field string, f storage.Format) error {
	switch f {
	case storage.FormatRaw, storage.FormatQcow2, storage.FormatISO:
		return nil
	}
	return FieldError(field, "%q is not a volume format strata records (raw, qcow2 or iso)", f)
}

// NotNegative checks a size or count in field.
func NotNegative(field string, n int64) error {
	if n < 0 {
		return FieldError(field, "%d is negative", n)
	}
	return nil
}

// KeyIs checks that a record's own key is what its record says.
func KeyIs(field, key, value string) error {
	if key != value {
		return FieldError(field, "%q is not the record's key %q", value, key)
	}
	return nil
}

// ExportPool returns the pool called name in the export.
func (e *Export) ExportPool(field, name string) (storage.Pool, error) {
	var p storage.Pool
	ok, err := e.Record(string(bPools), name, &p)
	if err == nil && !ok {
		err = FieldError(field, "pool %q is not in the export", name)
	}
	return p, err
}

// ExportVolume returns the volume with id in the export.
func (e *Export) ExportVolume(field, id string) (storage.Volume, error) {
	var v storage.Volume
	ok, err := e.Record(string(bVolumes), id, &v)
	if err == nil && !ok {
		err = FieldError(field, "volume %q is not in the export", id)
	}
	return v, err
}

// ExportGuest returns the guest with id in the export.
func (e *Export) ExportGuest(field, id string) (storage.Guest, error) {
	var g storage.Guest
	ok, err := e.Record(bGuests, id, &g)
	if err == nil && !ok {
		err = FieldError(field, "guest %q is not in the export", id)
	}
	return g, err
}

// InPool checks that path (field) is an image strata names in dir pool p:
// directly in its directory (a volume's or golden's image, an iso), named
// as strata names its images there: an ID and an extension (exts), as
// storage/dir's layout does (IDImageName). A name is pinned: an image
// strata makes is never called catalog.db, nor another record's image,
// which the record's delete would remove. id, when set, is the ID the
// name must hold (a volume's or an iso's own).
func InPool(field, path string, p storage.Pool, id string, exts ...string) error {
	if p.Driver != "dir" || p.Path == "" {
		return nil
	}
	if filepath.Dir(path) != p.Path {
		return FieldError(field, "%q is outside its pool %q (%s)", path, p.Name, p.Path)
	}
	base := filepath.Base(path)
	stem, ext, _ := strings.Cut(base, ".")
	named := imageID.MatchString(stem) && (id == "" || stem == id)
	if !named || !slices.Contains(exts, ext) {
		want := "ID"
		if id != "" {
			want = id
		}
		return FieldError(field, "%q is not a name strata gives an image in its pool (%s.%s)", base, want, strings.Join(exts, "|"))
	}
	return nil
}

// imageID: the ID part of an image's name in a dir pool.
var imageID = pattern.New(`^[0-9a-f]{16}$`)

// DirPoolAt returns the export's dir pool whose directory is dir.
func (e *Export) DirPoolAt(dir string) (storage.Pool, bool) {
	for _, raw := range e.Buckets[string(bPools)] {
		var p storage.Pool
		if json.Unmarshal(raw, &p) == nil && p.Driver == "dir" && p.Path == dir {
			return p, true
		}
	}
	return storage.Pool{}, false
}

// VolumesAt lists the IDs of the export's volumes whose path is path.
func (e *Export) VolumesAt(path string) []string {
	if e.volumePaths == nil {
		e.volumePaths = map[string][]string{}
		for id, raw := range e.Buckets[string(bVolumes)] {
			var v storage.Volume
			if json.Unmarshal(raw, &v) == nil && v.Path != "" {
				e.volumePaths[v.Path] = append(e.volumePaths[v.Path], id)
			}
		}
	}
	ids := e.volumePaths[path]
	sort.Strings(ids)
	return ids
}

// checkPoolPlace refuses a dir pool's directory that pool add refuses
// (storage/store checkPoolPlace) in the state home imported into: the
// root directory, the home, or one inside it other than HOME/pools/NAME:
// a pool there takes strata's own files for its images. A directory
// holding the home, which pool add refuses too, is let through: on a
// shared catalog another host's pool (/srv) may hold this host's home
// (/srv/strata), and the images a pool's records name are pinned to
// strata's names (InPool), which the home never holds.
func (e *Export) checkPoolPlace(path string) error {
	real := storage.ResolvePath(path)
	if real == "/" {
		return FieldError("path", "%q is the root directory, which cannot be a pool", path)
	}
	if e.home == "" {
		return nil
	}
	home := storage.ResolvePath(e.home)
	switch {
	case real == home:
		return FieldError("path", "%q is the state home %q, which cannot be a pool", path, e.home)
	case strings.HasPrefix(real, home+"/") && filepath.Dir(real) != filepath.Join(home, "pools"):
		return FieldError("path", "%q is inside the state home %q, where a pool is only HOME/pools/NAME", path, e.home)
	}
	return nil
}

// nameIndex checks a NAME → ID index record against the record it names.
func nameIndex(field string, lookup func(e *Export, id string) (string, error)) RecordCheck {
	return func(e *Export, key string, raw json.RawMessage) error {
		var id string
		if err := DecodeValue("id", raw, &id); err != nil {
			return err
		}
		name, err := lookup(e, id)
		if err != nil {
			return err
		}
		return KeyIs(field, key, name)
	}
}

func init() {
	RegisterRecords(string(bMeta), checkMeta)
	RegisterRecords(string(bPools), checkPool)
	RegisterRecords(string(bVolumes), checkVolume)
	RegisterRecords(string(bVolumeNames), nameIndex("name", func(e *Export, id string) (string, error) {
		v, err := e.ExportVolume("id", id)
		return v.Name, err
	}))
	RegisterRecords(string(bVolumePaths), func(e *Export, key string, raw json.RawMessage) error {
		var id string
		if err := DecodeValue("id", raw, &id); err != nil {
			return err
		}
		v, err := e.ExportVolume("id", id)
		if err != nil {
			return err
		}
		return KeyIs("path", key, v.Path)
	})
	RegisterRecords(bGuests, checkGuest)
	RegisterRecords(bGuestNames, nameIndex("name", func(e *Export, id string) (string, error) {
		g, err := e.ExportGuest("id", id)
		return g.Name, err
	}))
	RegisterRecords(bSequences, func(_ *Export, _ string, raw json.RawMessage) error {
		var n uint64
		return DecodeValue("value", raw, &n)
	})
	RegisterRecords(bGuestHosts, func(e *Export, key string, raw json.RawMessage) error {
		var p Placement
		if err := DecodeRecord(raw, &p); err != nil {
			return err
		}
		if _, err := e.ExportGuest("key", key); err != nil {
			return err
		}
		return ValidName("host", "host", p.Host)
	})
	RegisterRecords(HoldsBucket, checkHold)
}

func checkMeta(e *Export, key string, raw json.RawMessage) error {
	switch {
	case key == string(kSchema) || strings.HasPrefix(key, string(kSchema)+":"):
		var v int64
		if err := DecodeValue(key, raw, &v); err != nil {
			return err
		}
		return NotNegative(key, v)
	case key == string(kHomeID):
		var id string
		if err := DecodeValue(key, raw, &id); err != nil {
			return err
		}
		if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
			return FieldError(key, "%q is not a home ID (32 hex digits)", id)
		}
	case key == string(kRestored):
		var r Restored
		return DecodeValue(key, raw, &r)
	}
	return nil
}

func checkPool(e *Export, key string, raw json.RawMessage) error {
	var p storage.Pool
	if err := DecodeRecord(raw, &p); err != nil {
		return err
	}
	if err := ValidName("name", "pool", p.Name); err != nil {
		return err
	}
	if err := KeyIs("name", key, p.Name); err != nil {
		return err
	}
	if p.Driver == "" || e.knownDriver != nil && !e.knownDriver(p.Driver) {
		return FieldError("driver", "%q is not a pool driver this strata has", p.Driver)
	}
	switch p.Driver {
	case "dir":
		if err := ValidPath("path", p.Path); err != nil {
			return err
		}
		return e.checkPoolPlace(p.Path)
	case "lvm":
		if p.LVM == nil || p.LVM.VG == "" {
			return FieldError("lvm", "an lvm pool needs its volume group")
		}
		// The names go to lvm's tools as they are: lvm's rules (storage/lvm).
		if err := lvm.ValidVGName(p.LVM.VG); err != nil {
			return FieldError("lvm.vg", "%v", err)
		}
		if p.LVM.ThinPool != "" {
			if err := lvm.ValidThinPoolName(p.LVM.ThinPool); err != nil {
				return FieldError("lvm.thin_pool", "%v", err)
			}
		}
		for f, v := range map[string]float64{"data_limit_percent": p.LVM.DataLimit, "metadata_limit_percent": p.LVM.MetadataLimit, "snapshot_percent": float64(p.LVM.SnapshotPercent)} {
			if v < 0 || v > 100 {
				return FieldError("lvm."+f, "%v is not a percentage", v)
			}
		}
	case "rbd":
		if p.RBD == nil || p.RBD.Pool == "" {
			return FieldError("rbd", "an rbd pool needs its Ceph pool")
		}
		// The names go into image specs and QEMU's rbd: filenames
		// (storage/rbd), the ceph.conf to every tool as -c.
		for _, f := range [][2]string{{"rbd.pool", p.RBD.Pool}, {"rbd.namespace", p.RBD.Namespace}, {"rbd.id", p.RBD.ID}} {
			if err := rbd.ValidSpecName(f[1]); err != nil {
				return FieldError(f[0], "%q: %v", f[1], err)
			}
		}
		if p.RBD.CephConf != "" {
			if err := ValidPath("rbd.ceph_conf", p.RBD.CephConf); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkVolume(e *Export, key string, raw json.RawMessage) error {
	var v storage.Volume
	if err := DecodeRecord(raw, &v); err != nil {
		return err
	}
	if err := ValidID("id", v.ID); err != nil {
		return err
	}
	if err := KeyIs("id", key, v.ID); err != nil {
		return err
	}
	if err := ValidName("name", "volume", v.Name); err != nil {
		return err
	}
	if err := ValidFormat("format", v.Format); err != nil {
		return err
	}
	var pool storage.Pool
	if v.Pool != "" {
		var err error
		if pool, err = e.ExportPool("pool", v.Pool); err != nil {
			return err
		}
	} else if !v.Imported {
		return FieldError("pool", "a volume strata made is in a pool")
	}
	if pool.Driver == "rbd" {
		return nil // a network volume's URI: not a path (storage/rbd reads it)
	}
	if err := ValidPath("path", v.Path); err != nil {
		return err
	}
	if v.Backing != "" && !strings.HasPrefix(v.Backing, "rbd:") {
		if err := ValidPath("backing", v.Backing); err != nil {
			return err
		}
	}
	// Two records of one image are not refused: two volumes strata made
	// cannot share one (each is named after its ID, below), an imported
	// record's image is kept by its delete, and catalogs from before the
	// path index (schema 1) may hold an image imported twice.
	if !v.Imported {
		return InPool("path", v.Path, pool, v.ID, "img", "qcow2")
	}
	return nil
}

func checkGuest(e *Export, key string, raw json.RawMessage) error {
	var g storage.Guest
	if err := DecodeRecord(raw, &g); err != nil {
		return err
	}
	if err := ValidID("id", g.ID); err != nil {
		return err
	}
	if err := KeyIs("id", key, g.ID); err != nil {
		return err
	}
	if err := ValidName("name", "guest", g.Name); err != nil {
		return err
	}
	for i, id := range g.Disks {
		if _, err := e.ExportVolume(fmt.Sprintf("disks[%d]", i), id); err != nil {
			return err
		}
	}
	for i, id := range g.Uses {
		if _, err := e.ExportVolume(fmt.Sprintf("uses[%d]", i), id); err != nil {
			return err
		}
	}
	return nil
}

func checkHold(e *Export, key string, raw json.RawMessage) error {
	var h Hold
	if err := DecodeRecord(raw, &h); err != nil {
		return err
	}
	kind, rest, ok := strings.Cut(key, "/")
	id, holder, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || id == "" || holder == "" {
		return FieldError("key", "%q is not KIND/ID/HOLDER", key)
	}
	switch kind {
	case HeldVolume:
		if _, err := e.ExportVolume("key", id); err != nil {
			return err
		}
	case HeldGuest:
		if _, err := e.ExportGuest("key", id); err != nil {
			return err
		}
	case HeldPool:
		if _, err := e.ExportPool("key", id); err != nil {
			return err
		}
	default:
		return FieldError("key", "%q holds a %q, which is nothing strata holds", key, kind)
	}
	if h.Holder != HolderPoint && h.Holder != HolderGolden {
		return FieldError("holder", "%q is not a holder strata records (point or golden)", h.Holder)
	}
	if h.Point < 0 {
		return NotNegative("point", int64(h.Point))
	}
	return nil
}
