package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/store"
)

// Flatten detaches a linked clone from its golden image: every disk of
// the guest (or the one volume) that reads from a backing file gets the
// data it reads from there and loses the backing file, so the golden can
// be retired. Restore points on the disk keep working: the ones inside a
// qcow2 image are each completed from the backing file too (which costs,
// for each, the space of the golden data it reads), and point copies
// beside the image are flattened in place.
//
// The image is flattened as a copy under a temporary name (a reflink
// where possible) that replaces it by rename only when complete, so a
// crash leaves the disk as it was (and a temporary file that doctor
// --repair removes), or flattened but still recorded as linked, which
// only keeps the golden from being deleted until flatten runs again.
// The guest must not be running.
func (m *Manager) Flatten(ctx context.Context, r TargetRef) ([]storage.VolumeInfo, error) {
	var vols []storage.Volume
	var targets []Target
	// The restore points of every target that includes these disks must
	// stand still: take every lock (store.LockSet: in key order, and the
	// set read again once held), then finish whatever a dead process left
	// on them.
	unlock, err := store.LockSet(m.st.Catalog.Home(), m.lockTimeout, func() ([]store.Lock, error) {
		err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { vols, targets, err = planFlatten(tx, r); return err })
		locks := make([]store.Lock, len(targets))
		for i, t := range targets {
			locks[i] = store.Lock{Key: t.Key.String(), What: t.String()}
		}
		return locks, err
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, t := range targets {
		if err := m.recoverTarget(ctx, t); err != nil {
			return nil, fmt.Errorf("finish an interrupted operation on %s: %w", t, err)
		}
	}
	// Flattening rewrites each image: none may be held by a running guest.
	if err := m.checkNotInUse(ctx, vols); err != nil {
		return nil, err
	}
	var out []storage.VolumeInfo
	for _, v := range vols {
		if err := m.flattenVolume(ctx, v); err != nil {
			return out, fmt.Errorf("flatten volume %q: %w", v.Name, err)
		}
		vi, err := m.st.Volume(ctx, v.Name)
		if err != nil {
			return out, err
		}
		out = append(out, vi)
	}
	return out, nil
}

// planFlatten plans a flatten of r: its volumes (a guest's disks, or the
// one volume), and every target whose points include them (r itself, the
// guest's disks as volume targets, or the guests using the volume), in
// key order: the targets whose locks the flatten holds.
func planFlatten(tx *catalog.Tx, r TargetRef) (vols []storage.Volume, targets []Target, err error) {
	t, err := r.resolve(tx)
	if err != nil {
		return nil, nil, err
	}
	targets = append(targets, t)
	if r.Volume {
		v, err := tx.Volume(r.Name)
		if err != nil {
			return nil, targets, err
		}
		names, err := tx.GuestsUsing(v.ID)
		if err != nil {
			return nil, targets, err
		}
		for _, n := range names {
			g, err := tx.Guest(n)
			if err != nil {
				return nil, targets, err
			}
			targets = append(targets, Target{Key: catalog.GuestKey(g.ID), Name: g.Name})
		}
		vols = []storage.Volume{v}
	} else {
		vols, _, err = volumesOf(tx, t)
		for _, v := range vols {
			targets = append(targets, Target{Key: catalog.VolumeKey(v.ID), Name: v.Name})
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Key.String() < targets[j].Key.String() })
	return vols, targets, err
}

func (m *Manager) flattenVolume(ctx context.Context, v storage.Volume) error {
	drv, pool, err := m.driverOf(v)
	if err != nil {
		return err
	}
	// Every point of the volume is completed too: its driver keeps the
	// ones it must (point copies beside the image carry the same backing).
	var points []storage.PointRef
	if err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		return tx.Scan(bPoints, "", func(_ string, raw []byte) error {
			var p Point
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			for _, d := range p.Disks {
				if d.VolumeID == v.ID {
					points = append(points, d.PointRef)
				}
			}
			return nil
		})
	}); err != nil {
		return err
	}
	backing, err := drv.Flatten(ctx, pool, v, points, m.Progress)
	if err != nil {
		return err
	}
	if backing == "" {
		if v.Backing != "" { // flattened by a process that died before recording it
			v.Backing = ""
			return m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.ReplaceVolume(v) })
		}
		if !v.Device {
			log.Info().Str("volume", v.Name).Msg("volume has no backing file: nothing to flatten")
		}
		return nil
	}
	v.Backing = ""
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.ReplaceVolume(v) }); err != nil {
		return err
	}
	log.Debug().Str("volume", v.Name).Str("was_backed_by", backing).Msg("volume flattened: it no longer depends on a backing file")
	return nil
}
