package snapshot

import (
	"encoding/json"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage/catalog"
)

// Indexes over the points bucket, so that taking, finding, rolling back
// and deleting a point cost the same whether its target has 1 point or
// 10,000 (hourly points kept for a year): only listing and pruning read
// all of a target's points. putPoint and deletePoint are the only writers
// of point records and keep the indexes (and the catalog's holds) in the
// same transaction.
const (
	bPointNames   = "point_names"   // "TARGETKEY/NAME" → point number
	bPointPending = "point_pending" // "TARGETKEY/NNNNNNNNNN" → state, for points not ready
	bPointVolumes = "point_volumes" // "TARGETKEY/VOLUMEID" → how many of the target's points hold the volume
)

func init() {
	catalog.Register("snapshot",
		// 1: the point indexes, built from the records.
		rebuildIndexes,
		// 2: the holds of points and goldens (catalog.Hold), built from
		// the records.
		rebuildHolds,
	)
}

// rebuildIndexes makes the point indexes anew from the point records. A
// record that cannot be read is left out (and logged): the commands that
// read it report it, and one bad record must not stop every command.
func rebuildIndexes(tx *catalog.Tx) error {
	for _, b := range []string{bPointNames, bPointPending, bPointVolumes} {
		if err := tx.DeleteBucket(b); err != nil {
			return err
		}
	}
	return tx.Scan(bPoints, "", func(k string, raw []byte) error {
		var p Point
		if err := json.Unmarshal(raw, &p); err != nil {
			log.Error().Str("record", k).Err(err).Msg("restore point record unreadable: left out of the indexes; run strata doctor")
			return nil
		}
		return index(tx, nil, &p)
	})
}

// putPoint stores a point record and updates the indexes.
func putPoint(tx *catalog.Tx, p Point) error {
	var old Point
	had, err := tx.Get(bPoints, key(p.TargetKey, p.ID), &old)
	if err != nil {
		return err
	}
	prev := &old
	if !had {
		prev = nil
	}
	if err := index(tx, prev, &p); err != nil {
		return err
	}
	return tx.Put(bPoints, key(p.TargetKey, p.ID), p)
}

// deletePoint removes a point record and its index entries (no error if
// there is none).
func deletePoint(tx *catalog.Tx, targetKey catalog.TargetKey, id int) error {
	var old Point
	had, err := tx.Get(bPoints, key(targetKey, id), &old)
	if err != nil || !had {
		return err
	}
	if err := index(tx, &old, nil); err != nil {
		return err
	}
	return tx.Delete(bPoints, key(targetKey, id))
}

// index moves the index entries of a point from its old record to its new
// one; either may be nil.
func index(tx *catalog.Tx, old, p *Point) error {
	if old != nil {
		if old.Name != "" {
			if err := tx.Delete(bPointNames, old.TargetKey.String()+"/"+old.Name); err != nil {
				return err
			}
		}
		if err := tx.Delete(bPointPending, key(old.TargetKey, old.ID)); err != nil {
			return err
		}
		if err := countVolumes(tx, old, -1); err != nil {
			return err
		}
		if err := pointHolds(tx, old, false); err != nil {
			return err
		}
	}
	if p == nil {
		return nil
	}
	if p.Name != "" {
		if err := tx.Put(bPointNames, p.TargetKey.String()+"/"+p.Name, p.ID); err != nil {
			return err
		}
	}
	if p.State != stateReady {
		if err := tx.Put(bPointPending, key(p.TargetKey, p.ID), p.State); err != nil {
			return err
		}
	}
	if err := pointHolds(tx, p, true); err != nil {
		return err
	}
	return countVolumes(tx, p, +1)
}

// countVolumes adds delta to the count of each volume the point holds
// (once per volume), dropping counts that reach zero.
func countVolumes(tx *catalog.Tx, p *Point, delta int) error {
	seen := map[string]bool{}
	for _, d := range p.Disks {
		if seen[d.VolumeID] {
			continue
		}
		seen[d.VolumeID] = true
		k := p.TargetKey.String() + "/" + d.VolumeID
		var n int
		if _, err := tx.Get(bPointVolumes, k, &n); err != nil {
			return err
		}
		if n += delta; n > 0 {
			if err := tx.Put(bPointVolumes, k, n); err != nil {
				return err
			}
		} else if err := tx.Delete(bPointVolumes, k); err != nil {
			return err
		}
	}
	return nil
}

// pendingOf returns a target's points that are not ready: those of an
// operation in progress or interrupted.
func pendingOf(tx *catalog.Tx, targetKey catalog.TargetKey) ([]Point, error) {
	var keys []string
	if err := tx.Scan(bPointPending, targetKey.String()+"/", func(k string, _ []byte) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]Point, 0, len(keys))
	name := nameOf(tx, targetKey)
	for _, k := range keys {
		var p Point
		ok, err := tx.Get(bPoints, k, &p)
		if err != nil {
			return nil, err
		}
		if ok {
			p.Target = name
			out = append(out, p)
		}
	}
	return out, nil
}

// pointByNumber returns a target's point by number, whatever its state.
func pointByNumber(tx *catalog.Tx, targetKey catalog.TargetKey, id int) (Point, bool, error) {
	var p Point
	ok, err := tx.Get(bPoints, key(targetKey, id), &p)
	if ok && err == nil {
		p.Target = nameOf(tx, targetKey)
	}
	return p, ok, err
}

// pointByName returns a target's point by name, whatever its state.
func pointByName(tx *catalog.Tx, targetKey catalog.TargetKey, name string) (Point, bool, error) {
	var id int
	ok, err := tx.Get(bPointNames, targetKey.String()+"/"+name, &id)
	if err != nil || !ok {
		return Point{}, false, err
	}
	return pointByNumber(tx, targetKey, id)
}

// volumesOfPoints lists the IDs of the volumes a target's points hold.
func volumesOfPoints(tx *catalog.Tx, targetKey catalog.TargetKey) ([]string, error) {
	var ids []string
	prefix := targetKey.String() + "/"
	err := tx.Scan(bPointVolumes, prefix, func(k string, _ []byte) error {
		ids = append(ids, strings.TrimPrefix(k, prefix))
		return nil
	})
	return ids, err
}
