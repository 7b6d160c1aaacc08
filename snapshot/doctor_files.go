package snapshot

// Doctor's work: what its plans (doctor.go) call for, against the files,
// the drivers and the locks.

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	dirdriver "github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/qcow2"
	"github.com/strata-vm/strata/storage/store"
)

// recoverInterrupted reports (and with repair finishes or undoes) the
// operation a dead process left on each target. An operation whose lock
// is held is running, not interrupted (doctor --repair holds the state
// home exclusively, so none is).
func (m *Manager) recoverInterrupted(ctx context.Context, targets []catalog.TargetKey, repair bool) ([]Finding, error) {
	var out []Finding
	for _, k := range targets {
		var t Target
		if err := m.st.Catalog.View(func(tx *catalog.Tx) error { t, _ = targetOf(tx, k); return nil }); err != nil {
			return out, err
		}
		l, free := tryLockTarget(m.st.Catalog.Home(), t)
		if !free {
			log.Info().Str("target", t.String()).Msg("a restore point operation is running: not checked")
			continue
		}
		f := Finding{Kind: "interrupted-operation", Target: t.String(), Detail: "a restore point operation was interrupted (create, delete or rollback): 'strata doctor --repair' finishes or undoes it as its journal says"}
		if repair {
			err := m.recoverTarget(ctx, t)
			l.unlock()
			if err != nil {
				return out, err
			}
			f.Repaired = true
		} else {
			l.unlock()
		}
		out = append(out, f)
	}
	return out, nil
}

// doctorGoldens reports (and with repair finishes or undoes) the golden
// image operations a dead process left; running is the images of those
// running now (cleaned paths), which are not orphans.
func (m *Manager) doctorGoldens(ctx context.Context, repair bool) (out []Finding, running map[string]bool, err error) {
	running = map[string]bool{}
	if repair {
		out, err = m.recoverGoldens(ctx)
		return out, running, err
	}
	out, paths, err := m.interruptedGoldens()
	for _, p := range paths {
		running[filepath.Clean(p)] = true
	}
	return out, running, err
}

// movedAway is the volumes whose image a rollback moved into its
// pre-rollback point before putting the restored one in place: not
// missing.
func (m *Manager) movedAway(points []Point) map[string]bool {
	out := map[string]bool{}
	for _, p := range points {
		for _, d := range p.Disks {
			if d.Moved && exists(d.Ref) {
				out[d.VolumeID] = true
			}
		}
	}
	return out
}

// checkVolumes reports the volumes whose image is missing.
func (m *Manager) checkVolumes(vols []storage.Volume, sp scanPlan, movedAway map[string]bool) []Finding {
	var out []Finding
	for _, v := range vols {
		if !filepath.IsAbs(v.Path) {
			// A network volume (rbd:...): its driver tells whether its
			// image is there (under its live name or aside mid-rollback).
			if _, ok, err := m.fingerprint(v); err == nil && !ok && !m.volumeBusy(v) {
				if alt := m.locations(v); len(alt) < 2 || !m.imageThere(v, alt[1]) {
					out = append(out, Finding{Kind: "missing-image", Path: v.Path, Detail: "the image of volume " + v.Name + " is missing: restore it from a backup, or forget the volume with 'strata volume delete " + v.Name + "'"})
				}
			}
			continue
		}
		if !m.volumeThere(v) && !exists(v.Path+dirdriver.ApplyingSuffix) && !movedAway[v.ID] && !m.volumeBusy(v) {
			out = append(out, Finding{Kind: "missing-file", Path: v.Path, Detail: "the image of volume " + v.Name + " is missing: restore it from a backup, or forget the volume with 'strata volume delete " + v.Name + "'"})
		}
	}
	return out
}

// checkPoints reports the ready points whose data outside their volume
// is gone.
func (m *Manager) checkPoints(ctx context.Context, points []Point, sp scanPlan) []Finding {
	var out []Finding
	for _, p := range points {
		for _, d := range p.Disks {
			if p.State == stateReady && !m.inVolume(d) && !m.pointThere(ctx, sp.byID[d.VolumeID], d) {
				out = append(out, Finding{Kind: "missing-point-data", Path: d.Ref, Target: p.Target, Detail: "restore point " + itoa(p.ID) + " has lost the data of volume " + d.Volume + ": delete the point"})
			}
		}
	}
	return out
}

// checkGoldenImages reports golden images whose files are gone: their
// clones cannot read them.
func checkGoldenImages(gs []goldenRecord) []Finding {
	var out []Finding
	for _, g := range gs {
		for _, d := range g.Disks {
			if !filepath.IsAbs(d.Path) {
				continue // a network image (rbd:...): not a file to look for
			}
			if _, err := os.Stat(d.Path); err != nil {
				out = append(out, Finding{Kind: "missing-file", Path: d.Path, Target: goldenTarget(g).String(), Detail: "an image of golden image " + g.Name + " is missing: its linked clones cannot read their disks; restore it from a backup"})
			}
		}
	}
	return out
}

// orphansIn reports (and with repair removes) the orphans in directory d:
// strata's files there that nothing references. keep is why none may go
// (orphanPolicy). Who may remove what: in a pool, only a pool whose
// marker names this home (catalog.MarkerFile) is this home's to clean; a
// pool without a marker (from before markers) is claimed when it holds
// nothing this catalog does not know, else its orphans are kept, since
// another home may share it. In an in-place import's folder, which is the
// admin's, only a file whose name ties it to one of this catalog's
// volumes in that folder (its image's name, or its volume ID, a random
// 64-bit number) is this home's.
func (m *Manager) orphansIn(d string, sp scanPlan, repair bool, keep, homeID string) []Finding {
	var orphans []string
	for _, p := range strataFiles(d, sp.dirs[d]) {
		if sp.referenced(d, p) {
			continue
		}
		if !repair && m.inUseByOperation(p, sp.byPath, sp.byID) {
			// A running point, rollback or flatten is making it.
			log.Info().Str("path", p).Msg("an operation on its volume is running: not checked")
			continue
		}
		orphans = append(orphans, p)
	}
	why := keep // why this folder's orphans stay
	if sp.dirs[d] && why == "" {
		why = m.poolOwnership(d, homeID, repair, len(orphans) == 0)
	}
	var out []Finding
	for _, p := range orphans {
		f := Finding{Kind: "orphan-file", Path: p, Detail: "a file strata made that no volume or restore point references (left by an interrupted operation)" + why}
		if !sp.dirs[d] && why == "" && !tiedToVolume(p, d, sp.inFolder[d]) {
			f.Detail += " (not removed: it is in the folder of a volume imported in place, and its name does not tie it to a volume of this home: remove it yourself if it is not another program's)"
		} else if repair && why == "" {
			err := os.RemoveAll(p)
			if err != nil {
				log.Warn().Err(err).Str("path", p).Msg("orphan not removed: reported as not repaired")
			}
			f.Repaired = err == nil
		}
		out = append(out, f)
	}
	return out
}

// strataFiles lists the files in directory d (a pool's if pool) and its
// points directory that strata names as its own. A directory that cannot
// be read (gone, or not ours to read) has no orphans doctor could remove;
// the volumes in it are reported missing by the checks before.
func strataFiles(d string, pool bool) []string {
	candidates, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn().Err(err).Str("dir", d).Msg("cannot read the directory: its orphans are not looked for")
	}
	var paths []string
	for _, e := range candidates {
		if strataEntry(e, pool) {
			paths = append(paths, filepath.Join(d, e.Name()))
		}
	}
	pts, err := os.ReadDir(filepath.Join(d, pointsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn().Err(err).Str("dir", filepath.Join(d, pointsDir)).Msg("cannot read the directory: its orphans are not looked for")
	}
	for _, e := range pts {
		if !e.IsDir() && dirdriver.PointDataName.MatchString(e.Name()) {
			paths = append(paths, filepath.Join(d, pointsDir, e.Name()))
		}
	}
	return paths
}

// strataEntry tells whether a directory entry is a file or directory strata
// names as its own (the dir driver's layout), in a pool directory if pool
// is set. Doctor reports and removes only unreferenced files it calls
// strata's, never anything else.
func strataEntry(e os.DirEntry, pool bool) bool {
	return dirdriver.StrataName(e.Name(), e.IsDir(), pool)
}

// checkImages checks every qcow2 volume's image (checkImage).
func (m *Manager) checkImages(ctx context.Context, vols []storage.Volume, snaps map[string]map[string]bool, keep string, repair bool) ([]Finding, error) {
	var out []Finding
	for _, v := range vols {
		if v.Format != storage.FormatQcow2 || v.Device {
			continue
		}
		fs, err := m.checkImage(ctx, v, snaps[v.Path], keep, repair)
		out = append(out, fs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// checkImage reports (and with repair removes) the internal snapshots
// strata made in v's qcow2 image that no point references (refs), and
// what qemu-img check finds (repaired with repair).
func (m *Manager) checkImage(ctx context.Context, v storage.Volume, refs map[string]bool, keep string, repair bool) ([]Finding, error) {
	if _, err := os.Stat(v.Path); err != nil {
		return nil, nil // reported missing by checkVolumes
	}
	if m.volumeBusy(v) {
		// A point being taken or deleted right now: its internal
		// snapshot is not recorded yet, or no longer.
		log.Info().Str("volume", v.Name).Msg("an operation on this volume is running: its image is not checked")
		return nil, nil
	}
	if hs, err := m.st.InUse.Holders(ctx, v.Path); err != nil || len(hs) > 0 {
		// A running guest's image: qemu-img cannot check it (its lock),
		// nor may anything repair it under the guest.
		if err == nil {
			log.Info().Str("volume", v.Name).Str("held_by", hs[0].String()).Msg("volume in use: its image is not checked")
		} else {
			log.Warn().Err(err).Str("volume", v.Name).Msg("cannot tell whether the volume is in use: its image is not checked")
		}
		return nil, nil
	}
	names, err := qcow2.Snapshots(ctx, v.Path)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, n := range names {
		if !strings.HasPrefix(n, "strata-") || refs[n] || m.snapshotRecorded(v, n) {
			continue
		}
		f := Finding{Kind: "orphan-snapshot", Path: v.Path, Detail: "internal snapshot " + n + " of volume " + v.Name + " belongs to no restore point" + keep}
		if repair && keep == "" {
			err := qcow2.DeleteSnapshot(ctx, v.Path, n)
			if err != nil {
				log.Warn().Err(err).Str("volume", v.Name).Str("snapshot", n).Msg("orphan snapshot not removed: reported as not repaired")
			}
			f.Repaired = err == nil
		}
		out = append(out, f)
	}
	if err := qcow2.Check(ctx, v.Path); err != nil {
		f := Finding{Kind: "qcow2-check", Path: v.Path, Detail: "qemu-img check reports problems in volume " + v.Name + ": " + err.Error()}
		if repair {
			_, rerr := qcow2.Repair(ctx, v.Path)
			if rerr != nil {
				log.Warn().Err(rerr).Str("volume", v.Name).Msg("qemu-img check -r failed: reported as not repaired")
			}
			f.Repaired = rerr == nil
		}
		out = append(out, f)
	}
	return out, nil
}

// poolOwnership tells why the orphans of pool directory dir must stay
// ("" if they may go), claiming the directory for this home if it has no
// marker and nothing in it is unknown (clean).
func (m *Manager) poolOwnership(dir, homeID string, repair, clean bool) string {
	mk, ok, err := catalog.ReadMarker(dir)
	switch {
	case err != nil:
		return " (not removed: " + err.Error() + ")"
	case ok:
		if mine, whose := m.st.Catalog.Owner(mk, homeID); !mine {
			return " (not removed: the pool directory belongs to " + whose + ")"
		}
		return ""
	case clean && repair && homeID != "":
		if _, err := os.Stat(dir); err != nil {
			return "" // nothing there to remove, or to claim
		}
		if err := m.st.Catalog.Claim(dir, homeID); err != nil {
			log.Warn().Err(err).Str("dir", dir).Msg("pool not claimed")
		}
		return ""
	}
	return " (not removed: the pool directory has no owner marker (" + catalog.MarkerFile + ") and holds files this home does not know, so another state home may share it; remove them yourself if they are not another home's, then 'strata doctor --repair' claims the pool)"
}

// inUseByOperation tells whether a temporary file (point data, a
// rollback's new image, a flatten's copy) belongs to a volume whose lock
// is held: an operation on it is running and making that file.
func (m *Manager) inUseByOperation(p string, byPath, byID map[string]storage.Volume) bool {
	base, dir := filepath.Base(p), filepath.Dir(p)
	var v storage.Volume
	var ok bool
	switch id := dirdriver.PointVolumeID(p); {
	case id != "":
		v, ok = byID[id]
	case strings.Contains(base, dirdriver.RollbackSuffix):
		v, ok = byPath[filepath.Join(dir, base[:strings.Index(base, dirdriver.RollbackSuffix)])]
	case isTemp(base):
		target, _ := atomicfile.Target(base)
		v, ok = byPath[filepath.Join(dir, target)]
	}
	if !ok {
		return false
	}
	return m.volumeBusy(v)
}

// volumeBusy tells whether an operation holds v's lock now (a rollback
// between moving an image and putting its new one in place, say).
func (m *Manager) volumeBusy(v storage.Volume) bool {
	release, err := store.LockKey(m.st.Catalog.Home(), catalog.VolumeKey(v.ID).String(), "volume:"+v.Name, 0)
	if err != nil {
		return true
	}
	release()
	return false
}

// tiedToVolume tells whether the name of a strata file in an in-place
// import's folder names one of this home's volumes there (names: the
// image names and volume IDs in that folder).
func tiedToVolume(p, dir string, names map[string]bool) bool {
	base := filepath.Base(p)
	if filepath.Dir(p) == filepath.Join(dir, pointsDir) {
		id := dirdriver.PointVolumeID(p)
		return id != "" && names[id] // <volume id>-<point uid>
	}
	if i := strings.Index(base, dirdriver.RollbackSuffix); i > 0 {
		return names[base[:i]] // <image>.strata-rollback[-uid]
	}
	if rest, ok := atomicfile.Target(base); ok {
		if names[rest] || (len(rest) >= 16 && names[rest[:16]]) {
			return true // a temporary of <image>, or of <volume id>.EXT
		}
	}
	return false
}

func readHomeID(home string) string {
	raw, err := os.ReadFile(filepath.Join(home, catalog.HomeIDFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// exists tells whether anything is at path (a symlink is not followed).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// snapshotRecorded tells whether a point records internal snapshot name of
// v now: a point taken since doctor read the catalog (another strata
// process, while plain doctor runs) is not an orphan's.
func (m *Manager) snapshotRecorded(v storage.Volume, name string) bool {
	found := false
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		return tx.Scan(bPoints, "", func(_ string, raw []byte) error {
			var p Point
			if json.Unmarshal(raw, &p) != nil {
				return nil
			}
			for _, d := range p.Disks {
				if d.VolumeID == v.ID && d.Ref == name {
					found = true
					return catalog.ErrStop
				}
			}
			return nil
		})
	})
	if err != nil {
		// Unsure: kept, never removed as an orphan.
		log.Warn().Err(err).Str("volume", v.Name).Str("snapshot", name).Msg("cannot read the catalog again: the internal snapshot is counted as a restore point's")
		return true
	}
	return found
}

// volumeThere tells whether v's data is there: its file, or for a block
// device what its driver finds (an inactive LV has no device node).
func (m *Manager) volumeThere(v storage.Volume) bool {
	if !v.Device {
		_, err := os.Stat(v.Path)
		return err == nil
	}
	_, ok, err := m.fingerprint(v)
	return err != nil || ok // unsure: not reported missing
}

// pointThere tells whether a disk's point data is there, as its driver
// finds it (an LV's point is no file).
func (m *Manager) pointThere(ctx context.Context, v storage.Volume, d DiskPoint) bool {
	drv, _, err := m.pointDriver(d)
	if err != nil || v.ID == "" {
		_, err := os.Stat(d.Ref)
		return err == nil
	}
	_, pool, err := m.driverOf(v)
	if err != nil {
		return true
	}
	ok, err := drv.PointExists(ctx, pool, v, d.PointRef)
	return err != nil || ok
}

// imageThere tells whether a network volume's image is at one of its
// other locations (a name it has while a rollback runs).
func (m *Manager) imageThere(v storage.Volume, at string) bool {
	w := v
	w.Path = at
	_, ok, err := m.fingerprint(w)
	return err == nil && ok
}
