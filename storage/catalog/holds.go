package catalog

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Holds are the catalog's reverse index of what keeps a volume, a guest or
// a pool from being deleted: a restore point holds its target and every
// volume among its disks, a golden image holds the pools its images are
// in. Whoever writes a holder's record writes its holds in the same
// transaction (package snapshot, for points and goldens), and the store
// reads them before it deletes anything: the guards are data, so every
// program that opens the catalog has them, whichever packages it links.
//
// Key: KIND/ID/HOLDER, where KIND is what is held (HeldVolume, HeldGuest,
// HeldPool), ID its catalog ID (a pool: its name) and HOLDER a key unique
// to the holder ("point:TARGETKEY/NUMBER", "golden:ID").
const HoldsBucket = "holds"

// What a hold holds.
const (
	HeldVolume = "volume"
	HeldGuest  = "guest"
	HeldPool   = "pool"
)

// Kinds of holder.
const (
	HolderPoint  = "point"
	HolderGolden = "golden"
)

// Hold is one holder of a volume, guest or pool.
type Hold struct {
	// Holder: HolderPoint or HolderGolden.
	Holder string `json:"holder"`
	// A point: its target's kind ("guest" or "volume") and catalog ID,
	// and its number; the store names the target by its current name.
	TargetKind TargetKind `json:"target_kind,omitempty"`
	TargetID   string     `json:"target_id,omitempty"`
	Point      int        `json:"point,omitempty"`
	// A golden image: its name.
	Name string `json:"name,omitempty"`
}

func holdKey(kind, id, holder string) string { return kind + "/" + id + "/" + holder }

// PutHold records that holder holds the kind (HeldVolume, ...) with id.
func (t *Tx) PutHold(kind, id, holder string, h Hold) error {
	return t.Put(HoldsBucket, holdKey(kind, id, holder), h)
}

// DeleteHold removes a hold (no error if there is none).
func (t *Tx) DeleteHold(kind, id, holder string) error {
	return t.Delete(HoldsBucket, holdKey(kind, id, holder))
}

// Holds returns the holds on the kind with id, in key order.
func (t *Tx) Holds(kind, id string) ([]Hold, error) {
	var out []Hold
	prefix := holdKey(kind, id, "")
	err := t.Scan(HoldsBucket, prefix, func(k string, raw []byte) error {
		var h Hold
		if err := json.Unmarshal(raw, &h); err != nil {
			return fmt.Errorf("hold %q: %w", strings.TrimPrefix(k, prefix), err)
		}
		out = append(out, h)
		return nil
	})
	return out, err
}
