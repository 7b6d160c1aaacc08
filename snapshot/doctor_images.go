package snapshot

// Doctor's look for orphan images in pools whose images are no files in
// a directory (RBD): the drivers that can list them (storage.OrphanFinder).

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// imageOrphans reports (and with repair removes) the images strata made
// in its network pools that nothing references: one listing per pool.
// The rules are the dir pools' (orphansIn): only images the driver names
// as strata's; removed only when keep is "" and the pool's owner marker
// names this home (a pool without one is claimed when it holds no
// orphan, else its orphans stay: another home may share it); never one a
// client has open or that holds a snapshot a point record names.
// running: the images of golden image operations running now.
func (m *Manager) imageOrphans(ctx context.Context, recs doctorRecords, running map[string]bool, repair bool, keep, homeID string) []Finding {
	known := imageRefs(recs, running, m.locations)
	snaps := map[string]bool{}
	for _, p := range recs.points {
		for _, d := range p.Disks {
			snaps[d.Ref] = true
		}
	}
	var out []Finding
	for _, p := range recs.pools {
		drv, err := m.st.Driver(p)
		if err != nil {
			continue
		}
		f, ok := drv.(storage.OrphanFinder)
		if !ok {
			continue
		}
		orphans, err := f.Orphans(ctx, p, known)
		if err != nil {
			log.Warn().Err(err).Str("pool", p.Name).Msg("cannot list the pool's images: its orphans are not looked for")
			continue
		}
		if len(orphans) == 0 && !repair {
			continue // nothing to report: the owner marker is not read
		}
		why := keep
		if why == "" {
			why = m.networkPoolOwnership(ctx, f, p, homeID, repair, len(orphans) == 0)
		}
		for _, path := range orphans {
			fd := Finding{Kind: "orphan-image", Path: path, Detail: "an image strata made in pool " + p.Name + " that no volume or golden image references (left by an interrupted operation)" + why}
			if repair && why == "" {
				err := f.RemoveOrphan(ctx, p, path, snaps)
				if err != nil {
					log.Warn().Err(err).Str("image", path).Msg("orphan image not removed: reported as not repaired")
					fd.Detail += " (not removed: " + err.Error() + ")"
				}
				fd.Repaired = err == nil
			}
			out = append(out, fd)
		}
	}
	return out
}

// imageRefs is every image path the records name: each volume's
// locations (its image, and the name a rollback gives it aside), the
// golden images' disks whatever their state, install media, and the
// images of operations running now.
func imageRefs(recs doctorRecords, running map[string]bool, locations func(storage.Volume) []string) []string {
	var out []string
	for _, v := range recs.vols {
		if filepath.IsAbs(v.Path) {
			continue
		}
		out = append(out, locations(v)...)
	}
	for _, g := range recs.goldens {
		for _, d := range g.Disks {
			out = append(out, d.Path)
		}
	}
	for p := range recs.extra {
		out = append(out, p)
	}
	for p := range running {
		out = append(out, p)
	}
	return out
}

// networkPoolOwnership tells why the orphans of network pool p must stay
// ("" if they may go), claiming the pool for this home when it has no
// marker and holds no orphan (clean).
func (m *Manager) networkPoolOwnership(ctx context.Context, f storage.OrphanFinder, p storage.Pool, homeID string, repair, clean bool) string {
	raw, ok, err := f.PoolOwner(ctx, p)
	var mk catalog.Marker
	if err == nil && ok {
		if jerr := json.Unmarshal(raw, &mk); jerr != nil || mk.HomeID == "" {
			err = errors.New("its owner marker is unreadable")
		}
	}
	switch {
	case err != nil:
		return " (not removed: pool " + p.Name + ": " + err.Error() + ")"
	case ok:
		if mine, whose := m.st.Catalog.Owner(mk, homeID); !mine {
			return " (not removed: pool " + p.Name + " belongs to " + whose + ")"
		}
		return ""
	case clean && repair && homeID != "":
		raw, _ := json.Marshal(catalog.Marker{HomeID: homeID, Home: m.st.Catalog.Home()})
		if err := f.ClaimPool(ctx, p, raw); err != nil {
			log.Warn().Err(err).Str("pool", p.Name).Msg("pool not claimed")
		}
		return ""
	}
	return " (not removed: pool " + p.Name + " has no owner marker and holds images this home does not know, so another state home may share it; remove them yourself if they are not another home's (rbd rm), then 'strata doctor --repair' claims the pool)"
}
