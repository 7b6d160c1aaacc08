package snapshot

import (
	"encoding/json"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage/catalog"
)

// The catalog's holds (catalog.Hold) are how the store knows, without this
// package, that a volume or guest has restore points and that a pool holds
// golden images: every write of a point record (index, from putPoint and
// deletePoint) and of a golden record (putGolden, deleteGolden) keeps them
// in the same transaction.

// pointHolds adds (put) or removes the holds of point p: on its target
// guest, and on every volume among its disks.
func pointHolds(tx *catalog.Tx, p *Point, put bool) error {
	holder := catalog.HolderPoint + ":" + key(p.TargetKey, p.ID)
	kind, id := p.TargetKey.Kind(), p.TargetKey.ID()
	h := catalog.Hold{Holder: catalog.HolderPoint, TargetKind: kind, TargetID: id, Point: p.ID}
	set := func(held, heldID string) error {
		if put {
			return tx.PutHold(held, heldID, holder, h)
		}
		return tx.DeleteHold(held, heldID, holder)
	}
	if kind == catalog.KindGuest {
		if err := set(catalog.HeldGuest, id); err != nil {
			return err
		}
	}
	for _, d := range p.Disks {
		if err := set(catalog.HeldVolume, d.VolumeID); err != nil {
			return err
		}
	}
	return nil
}

// goldenHolds adds (put) or removes the holds of golden g on the pools its
// images are in.
func goldenHolds(tx *catalog.Tx, g goldenRecord, put bool) error {
	holder := catalog.HolderGolden + ":" + g.ID
	for _, d := range g.Disks {
		var err error
		if put {
			err = tx.PutHold(catalog.HeldPool, d.Pool, holder, catalog.Hold{Holder: catalog.HolderGolden, Name: g.Name})
		} else {
			err = tx.DeleteHold(catalog.HeldPool, d.Pool, holder)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// putGolden stores a golden record and its holds.
func putGolden(tx *catalog.Tx, g goldenRecord) error {
	var old goldenRecord
	had, err := tx.Get(bGoldens, g.ID, &old)
	if err != nil {
		return err
	}
	if had {
		if err := goldenHolds(tx, old, false); err != nil {
			return err
		}
	}
	if err := goldenHolds(tx, g, true); err != nil {
		return err
	}
	return tx.Put(bGoldens, g.ID, g)
}

// deleteGolden removes a golden record and its holds.
func deleteGolden(tx *catalog.Tx, g goldenRecord) error {
	var old goldenRecord
	had, err := tx.Get(bGoldens, g.ID, &old)
	if err != nil || !had {
		return err
	}
	if err := goldenHolds(tx, old, false); err != nil {
		return err
	}
	return tx.Delete(bGoldens, g.ID)
}

// rebuildHolds makes this package's holds anew from the point and golden
// records (a catalog migration: catalogs from before holds existed). A
// record that cannot be read is left out and logged, as rebuildIndexes
// does; the commands that read it report it.
func rebuildHolds(tx *catalog.Tx) error {
	if err := tx.DeleteBucket(catalog.HoldsBucket); err != nil {
		return err
	}
	if err := tx.Scan(bPoints, "", func(k string, raw []byte) error {
		var p Point
		if err := json.Unmarshal(raw, &p); err != nil {
			log.Error().Str("record", k).Err(err).Msg("restore point record unreadable: what it holds is not guarded; run strata doctor")
			return nil
		}
		return pointHolds(tx, &p, true)
	}); err != nil {
		return err
	}
	return tx.Scan(bGoldens, "", func(k string, raw []byte) error {
		var g goldenRecord
		if err := json.Unmarshal(raw, &g); err != nil {
			log.Error().Str("record", k).Err(err).Msg("golden image record unreadable: the pools it holds are not guarded; run strata doctor")
			return nil
		}
		return goldenHolds(tx, g, true)
	})
}
