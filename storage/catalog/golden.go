package catalog

import "github.com/strata-vm/strata/storage"

// ReplaceVolume rewrites the record of an existing volume, keeping its ID,
// name and path (flattening a linked clone clears its Backing).
func (t *Tx) ReplaceVolume(v storage.Volume) error {
	old, err := t.VolumeByID(v.ID)
	if err != nil {
		return err
	}
	if old.Name != v.Name || old.Path != v.Path {
		return storage.Errorf(storage.ErrInvalid, "volume %q: ReplaceVolume cannot rename or move a volume", old.Name)
	}
	return t.Put(string(bVolumes), v.ID, v)
}
