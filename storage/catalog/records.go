package catalog

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/pattern"
)

// Pool returns the pool called name.
func (t *Tx) Pool(name string) (storage.Pool, error) {
	var p storage.Pool
	ok, err := t.Get(string(bPools), name, &p)
	if err == nil && !ok {
		err = storage.Errorf(storage.ErrNotFound, "pool %q not found: see 'strata pool list'", name)
	}
	return p, err
}

// Pools returns all pools sorted by name.
func (t *Tx) Pools() ([]storage.Pool, error) {
	var out []storage.Pool
	err := t.Scan(string(bPools), "", func(_ string, raw []byte) error {
		var p storage.Pool
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// AddPool records a new pool; its name and path must be unused.
func (t *Tx) AddPool(p storage.Pool) error {
	pools, err := t.Pools()
	if err != nil {
		return err
	}
	for _, q := range pools {
		if q.Name == p.Name {
			return storage.Errorf(storage.ErrExists, "pool %q already exists (at %s)", p.Name, q.Path)
		}
		if q.Path == p.Path && p.Path != "" { // "": not a directory (lvm)
			return storage.Errorf(storage.ErrExists, "path %q is already pool %q", p.Path, q.Name)
		}
	}
	return t.Put(string(bPools), p.Name, p)
}

// RemovePool forgets a pool; it must hold no volumes.
func (t *Tx) RemovePool(name string) error {
	if _, err := t.Pool(name); err != nil {
		return err
	}
	vols, err := t.Volumes()
	if err != nil {
		return err
	}
	var held []string
	for _, v := range vols {
		if v.Pool == name {
			held = append(held, v.Name)
		}
	}
	if len(held) > 0 {
		return storage.Errorf(storage.ErrInUse, "pool %q still holds volumes %q: delete or move them first", name, held)
	}
	return t.Delete(string(bPools), name)
}

// Volume returns the volume called name.
func (t *Tx) Volume(name string) (storage.Volume, error) {
	var id string
	ok, err := t.Get(string(bVolumeNames), name, &id)
	if err != nil {
		return storage.Volume{}, err
	}
	if !ok {
		return storage.Volume{}, storage.Errorf(storage.ErrNotFound, "volume %q not found: see 'strata volume list'", name)
	}
	return t.VolumeByID(id)
}

// VolumeByID returns the volume with a stable ID.
func (t *Tx) VolumeByID(id string) (storage.Volume, error) {
	var v storage.Volume
	ok, err := t.Get(string(bVolumes), id, &v)
	if err == nil && !ok {
		err = storage.Errorf(storage.ErrNotFound, "volume with id %q not found", id)
	}
	return v, err
}

// Volumes returns all volumes sorted by name.
func (t *Tx) Volumes() ([]storage.Volume, error) {
	var out []storage.Volume
	err := t.Scan(string(bVolumes), "", func(_ string, raw []byte) error {
		var v storage.Volume
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// AddVolume records a new volume; its name, ID and path must be unused.
func (t *Tx) AddVolume(v storage.Volume) error {
	var id string
	if ok, err := t.Get(string(bVolumeNames), v.Name, &id); err != nil {
		return err
	} else if ok {
		return storage.Errorf(storage.ErrExists, "volume %q already exists: choose another name or delete it first", v.Name)
	}
	if v.Pool != "" {
		if _, err := t.Pool(v.Pool); err != nil {
			return err
		}
	}
	if ok, err := t.Get(string(bVolumePaths), v.Path, &id); err != nil {
		return err
	} else if ok {
		o, err := t.VolumeByID(id)
		if err != nil {
			return err
		}
		return storage.Errorf(storage.ErrExists, "%q is already registered as volume %q", v.Path, o.Name)
	}
	if err := t.Put(string(bVolumeNames), v.Name, v.ID); err != nil {
		return err
	}
	if err := t.Put(string(bVolumePaths), v.Path, v.ID); err != nil {
		return err
	}
	return t.Put(string(bVolumes), v.ID, v)
}

// RemoveVolume forgets a volume record (not its file).
func (t *Tx) RemoveVolume(v storage.Volume) error {
	if err := t.Delete(string(bVolumeNames), v.Name); err != nil {
		return err
	}
	if err := t.Delete(string(bVolumePaths), v.Path); err != nil {
		return err
	}
	return t.Delete(string(bVolumes), v.ID)
}

// Dependants lists the volumes whose recorded backing file is path.
func (t *Tx) Dependants(path string) ([]string, error) {
	vols, err := t.Volumes()
	var out []string
	real := storage.RealPath(path)
	for _, v := range vols {
		if v.Backing != "" && (v.Backing == path || storage.RealPath(v.Backing) == real) {
			out = append(out, v.Name)
		}
	}
	return out, err
}

var (
	bGuests     = "guests"      // ID → storage.Guest
	bGuestNames = "guest_names" // name → ID
)

// Guest returns the guest called name.
func (t *Tx) Guest(name string) (storage.Guest, error) {
	var id string
	ok, err := t.Get(bGuestNames, name, &id)
	if err != nil {
		return storage.Guest{}, err
	}
	if !ok {
		return storage.Guest{}, storage.Errorf(storage.ErrNotFound, "guest %q not found: see 'strata guest list'", name)
	}
	return t.GuestByID(id)
}

// GuestByID returns the guest with a stable ID.
func (t *Tx) GuestByID(id string) (storage.Guest, error) {
	var g storage.Guest
	ok, err := t.Get(bGuests, id, &g)
	if err == nil && !ok {
		err = storage.Errorf(storage.ErrNotFound, "guest with id %q not found", id)
	}
	return g, err
}

// Guests returns all guests sorted by name.
func (t *Tx) Guests() ([]storage.Guest, error) {
	var out []storage.Guest
	err := t.Scan(bGuests, "", func(_ string, raw []byte) error {
		var g storage.Guest
		if err := json.Unmarshal(raw, &g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// PutGuest creates or replaces a guest record. A new name must be free.
func (t *Tx) PutGuest(g storage.Guest) error {
	var id string
	if ok, err := t.Get(bGuestNames, g.Name, &id); err != nil {
		return err
	} else if ok && id != g.ID {
		return storage.Errorf(storage.ErrExists, "guest %q already exists: choose another name or delete it first", g.Name)
	}
	if old, err := t.GuestByID(g.ID); err == nil && old.Name != g.Name {
		if err := t.Delete(bGuestNames, old.Name); err != nil {
			return err
		}
	}
	if err := t.Put(bGuestNames, g.Name, g.ID); err != nil {
		return err
	}
	return t.Put(bGuests, g.ID, g)
}

// RemoveGuest forgets a guest record.
func (t *Tx) RemoveGuest(g storage.Guest) error {
	if err := t.Delete(bGuestNames, g.Name); err != nil {
		return err
	}
	return t.Delete(bGuests, g.ID)
}

// GuestsUsing lists the guests whose definition names volume id (as a
// writable disk or otherwise).
func (t *Tx) GuestsUsing(volumeID string) ([]string, error) {
	guests, err := t.Guests()
	var out []string
	for _, g := range guests {
		if slices.Contains(g.Disks, volumeID) || slices.Contains(g.Uses, volumeID) {
			out = append(out, g.Name)
		}
	}
	return out, err
}

// GuestsWriting lists the guests that have volume id as a writable disk.
func (t *Tx) GuestsWriting(volumeID string) ([]string, error) {
	guests, err := t.Guests()
	var out []string
	for _, g := range guests {
		if slices.Contains(g.Disks, volumeID) {
			out = append(out, g.Name)
		}
	}
	return out, err
}

// strataName matches the names strata gives its own files in a pool:
// images named by ID (volumes, golden images, isos), temporary copies,
// restore point data.
var strataName = pattern.New(`^([0-9a-f]{16}\.(img|qcow2|iso)|\.strata-.*)$`)

// CheckUnmanaged refuses a path (symlinks resolved) that strata manages
// itself, so that it is never registered a second time in place (as a
// volume or an iso) and resized or purged under its owner: anything in the
// state home home, restore point data, a file strata named in a pool, the
// image of a volume.
func (t *Tx) CheckUnmanaged(home, path string) error {
	path = storage.RealPath(path)
	home = storage.RealPath(home)
	if path == home || strings.HasPrefix(path, home+string(filepath.Separator)) {
		return storage.Errorf(storage.ErrInvalid, "%q is inside strata's state home: strata manages it; copy it with --copy if you want it as a volume", path)
	}
	for _, part := range strings.Split(path, string(filepath.Separator)) {
		if part == ".strata-points" {
			return storage.Errorf(storage.ErrInvalid, "%q is restore point data: roll back to the point or use --copy", path)
		}
	}
	var id string
	if ok, err := t.Get(string(bVolumePaths), path, &id); err != nil {
		return err
	} else if ok {
		name := id
		if v, err := t.VolumeByID(id); err == nil {
			name = v.Name
		}
		return storage.Errorf(storage.ErrExists, "%q is already registered as volume %q", path, name)
	}
	pools, err := t.Pools()
	for _, p := range pools {
		if filepath.Dir(path) == storage.RealPath(p.Path) && strataName.MatchString(filepath.Base(path)) {
			return storage.Errorf(storage.ErrInvalid, "%q is a file strata made in pool %q (a volume, golden image or iso): use --copy to make a volume of it", path, p.Name)
		}
	}
	return err
}
