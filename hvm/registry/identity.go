package registry

import (
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// sameUUID compares UUIDs as values: case and dashes aside.
func sameUUID(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "")) }
	return a != "" && norm(a) == norm(b)
}

// checkUUID refuses a UUID another guest or a golden image has. It runs
// only for a UUID new to this guest (a define, an import, a set of uuid):
// a golden frozen from a guest shares the guest's UUID, legitimately.
func checkUUID(tx *catalog.Tx, g *hvm.Guest, previous string) error {
	recs, err := tx.Guests()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.Name == previous || rec.Definition == "" {
			continue
		}
		o, err := decode(tx, rec)
		if err != nil {
			return err
		}
		if sameUUID(o.UUID, g.UUID) {
			return storage.Errorf(storage.ErrExists, "guest %q: uuid %s is already guest %q's: two guests with one UUID confuse every toolstack; leave uuid out to get a new one", g.Name, g.UUID, rec.Name)
		}
	}
	// No new guest may take a UUID a golden (and so its clones' origin)
	// has.
	return tx.GoldenDefinitions(func(gd catalog.GoldenDefinition) error {
		o, err := hvm.Unmarshal("golden image "+gd.Name, []byte(gd.Definition))
		if err != nil {
			return nil // a golden's damaged definition is doctor's to report
		}
		if sameUUID(o.UUID, g.UUID) {
			return storage.Errorf(storage.ErrExists, "guest %q: uuid %s is golden image %q's: a guest made from a golden is a clone (strata clone); leave uuid out to get a new one", g.Name, g.UUID, gd.Name)
		}
		return nil
	})
}

// imageKey is what identifies a disk's image on this host: its path with
// symlinks resolved (a volume's file or device, a path, a device), so a
// volume, its path and a symlink to either are one image.
func imageKey(tx *catalog.Tx, d hvm.Disk) string {
	kind, src := d.Source()
	switch kind {
	case hvm.SourceVolume:
		v, err := tx.Volume(src)
		if err != nil {
			return ""
		}
		return storage.RealPath(v.Path) // a file, or the device of a block volume
	case hvm.SourcePath, hvm.SourceDevice:
		if !strings.HasPrefix(src, "/") {
			return "" // a backend URL (rbd:...): not a host file
		}
		return storage.RealPath(src)
	}
	return ""
}

// checkWriters refuses a writable disk whose image (however given: volume,
// path or device, symlinks resolved) another guest also has writable, or
// that g itself names twice writable: two writers corrupt it, and a
// rollback of one would overwrite the other's data.
func checkWriters(tx *catalog.Tx, g *hvm.Guest, previous string) error {
	mine := map[string]hvm.Disk{} // image → disk
	for _, d := range g.Disks {
		if d.CDROM || d.ReadOnly() {
			continue
		}
		k := imageKey(tx, d)
		if k == "" {
			continue
		}
		if other, dup := mine[k]; dup {
			return storage.Errorf(storage.ErrInvalid, "guest %q: disks %s and %s are one image (%s), both writable: give it once, or the second read-only (access: ro)", g.Name, other.Vdev, d.Vdev, k)
		}
		mine[k] = d
	}
	if len(mine) == 0 {
		return nil
	}
	recs, err := tx.Guests()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.Name == previous {
			continue
		}
		o, err := decode(tx, rec)
		if err != nil {
			return err
		}
		for _, d := range o.Disks {
			if d.CDROM || d.ReadOnly() {
				continue
			}
			k := imageKey(tx, d)
			m, ok := mine[k]
			if !ok || k == "" {
				continue
			}
			if m.Volume != "" && m.Volume == d.Volume {
				return storage.Errorf(storage.ErrInUse, "guest %q: volume %q is already a writable disk of guest %q: give it read-only (access: ro) or use another volume", g.Name, m.Volume, rec.Name)
			}
			_, src := d.Source()
			return storage.Errorf(storage.ErrInUse, "guest %q: disk %s (%s) is already a writable disk of guest %q (its %s, given as %s): give it read-only (access: ro) or use another image", g.Name, m.Vdev, k, rec.Name, d.Vdev, src)
		}
	}
	return nil
}
