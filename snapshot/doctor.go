package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	dirdriver "github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/qcow2"
	"github.com/strata-vm/strata/storage/store"
)

// Finding is one problem strata doctor found.
type Finding struct {
	Kind     string `json:"kind"` // interrupted-operation, orphan-file, orphan-snapshot, missing-file, missing-point-data, qcow2-check, in-use
	Path     string `json:"path,omitempty"`
	Target   string `json:"target,omitempty"`
	Detail   string `json:"detail"`
	Repaired bool   `json:"repaired"`
}

// extraRefs lets other parts of this package (golden images, clones) add
// the files they reference, so doctor never calls them orphans.
var extraRefs []func(tx *catalog.Tx, refs map[string]bool) error

// isTemp tells whether a name is a strata temporary (atomicfile's scheme).
func isTemp(name string) bool {
	_, ok := atomicfile.Target(name)
	return ok
}

// strataEntry tells whether a directory entry is a file or directory strata
// names as its own (the dir driver's layout), in a pool directory if pool
// is set. Doctor reports and removes only unreferenced files it calls
// strata's, never anything else.
func strataEntry(e os.DirEntry, pool bool) bool {
	return dirdriver.StrataName(e.Name(), e.IsDir(), pool)
}

// Doctor checks that the catalog and the files agree. With repair it
// finishes or undoes interrupted operations, removes orphans that strata
// made (never any other file) and repairs qcow2 leaks. The caller holds the
// state home's operation lock exclusively, so nothing is in progress.
func (m *Manager) Doctor(ctx context.Context, repair bool) ([]Finding, error) {
	out := []Finding{}
	// 1. Operations a dead process left: recover them target by target.
	var targets []catalog.TargetKey
	// unreadable: point records that do not decode. Files and internal
	// snapshots they may name are then never removed as orphans.
	unreadable := map[string]error{}
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		seen := map[catalog.TargetKey]bool{}
		if err := tx.Scan(bJournal, "", func(k string, _ []byte) error {
			key, err := parsePointTarget(k)
			if err != nil {
				unreadable[bJournal+"/"+k] = err
				return nil
			}
			seen[key] = true
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Scan(bPoints, "", func(k string, raw []byte) error {
			var p Point
			if err := json.Unmarshal(raw, &p); err != nil {
				unreadable[bPoints+"/"+k] = err
				return nil
			}
			if p.State != stateReady {
				seen[p.TargetKey] = true
			}
			return nil
		}); err != nil {
			return err
		}
		for k := range seen {
			targets = append(targets, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].String() < targets[j].String() })
	keep := "" // why orphans are not removed, if they must not be
	if len(unreadable) > 0 {
		keep = " (not removed: a restore point record strata cannot read may reference it)"
		keys := make([]string, 0, len(unreadable))
		for k := range unreadable {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, Finding{Kind: "unreadable-record", Target: k,
				Detail: "the catalog record of a restore point cannot be read (" + unreadable[k].Error() + "): strata leaves it, and any file it may name, alone; restore HOME/catalog.db from a backup, or delete the record if its point is not needed"})
		}
	}
	// A catalog put back from a copy (or started empty) over this home may
	// lack records of files that are in the pools: keep every file until
	// the admin accepts it.
	var restored catalog.Restored
	var isRestored bool
	var homeID string
	if err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		restored, isRestored = tx.Restored()
		homeID = tx.HomeID()
		return nil
	}); err != nil {
		return nil, err
	}
	if isRestored && keep == "" {
		keep = " (not removed: the catalog was restored from " + restored.From + " on " + restored.At.Format("2006-01-02 15:04") + " UTC and may lack its record: import it again if it is needed; once every such file is dealt with, 'strata catalog accept' lets doctor --repair remove the rest)"
	}
	if fileID := readHomeID(m.st.Catalog.Home()); fileID != "" && fileID != homeID {
		out = append(out, Finding{Kind: "home-id-mismatch", Path: filepath.Join(m.st.Catalog.Home(), catalog.HomeIDFile),
			Detail: "the state home's ID file says " + fileID + " but the catalog belongs to home " + homeID + ": the catalog may be another home's; no file is removed until they agree (restore this home's catalog, or fix the file if the catalog is right)"})
		if keep == "" {
			keep = " (not removed: the catalog and the state home's ID disagree)"
		}
	}
	for _, k := range targets {
		var t Target
		_ = m.st.Catalog.View(func(tx *catalog.Tx) error { t, _ = targetOf(tx, k); return nil })
		name := t.String()
		// An operation whose lock is held is running, not interrupted
		// (doctor --repair holds the state home exclusively, so none is).
		l, free := tryLockTarget(m.st.Catalog.Home(), t)
		if !free {
			log.Info().Str("target", name).Msg("a restore point operation is running: not checked")
			continue
		}
		f := Finding{Kind: "interrupted-operation", Target: name, Detail: "a restore point operation was interrupted (create, delete or rollback): 'strata doctor --repair' finishes or undoes it as its journal says"}
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
	// Golden images being made or deleted, clones under way.
	running := map[string]bool{} // images of golden operations running now
	if repair {
		fs, err := m.recoverGoldens(ctx)
		if err != nil {
			return out, err
		}
		out = append(out, fs...)
	} else {
		fs, paths, err := m.interruptedGoldens()
		if err != nil {
			return out, err
		}
		out = append(out, fs...)
		for _, p := range paths {
			running[filepath.Clean(p)] = true
		}
	}
	// 2. What the catalog references, and the directories strata writes in
	// (dirs: directory → whether it is a pool's).
	refs := map[string]bool{}
	snaps := map[string]map[string]bool{} // qcow2 path → referenced snapshot names
	dirs := map[string]bool{}
	var vols []storage.Volume
	var points []Point
	journals := map[catalog.TargetKey]journalEntry{} // target key → rollback under way
	err = m.st.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		if vols, err = tx.Volumes(); err != nil {
			return err
		}
		pools, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, p := range pools {
			if p.Path != "" { // not an lvm pool, whose volumes are LVs
				dirs[filepath.Clean(p.Path)] = true
			}
		}
		for _, add := range extraRefs {
			if err := add(tx, refs); err != nil {
				return err
			}
		}
		// Install media: an ISO in a pool that no medium records is left
		// by a crash between the rename of its image and its record.
		isos, err := media.All(tx)
		if err != nil {
			return err
		}
		for _, md := range isos {
			refs[filepath.Clean(md.Path)] = true
		}
		if err := tx.Scan(bJournal, "", func(k string, raw []byte) error {
			var j journalEntry
			if key, err := parsePointTarget(k); err == nil && json.Unmarshal(raw, &j) == nil {
				journals[key] = j
			}
			return nil
		}); err != nil {
			return err
		}
		names := map[catalog.TargetKey]string{}
		return tx.Scan(bPoints, "", func(_ string, raw []byte) error {
			var p Point
			if json.Unmarshal(raw, &p) == nil { // unreadable ones: above
				n, ok := names[p.TargetKey]
				if !ok {
					n = nameOf(tx, p.TargetKey)
					names[p.TargetKey] = n
				}
				p.Target = n
				points = append(points, p)
			}
			return nil
		})
	})
	if err != nil {
		return out, err
	}
	// A rollback moves a full-copy disk's image into its pre-rollback
	// point before it puts the restored one in place: not missing.
	movedAway := map[string]bool{}
	for _, p := range points {
		for _, d := range p.Disks {
			if d.Moved && exists(d.Ref) {
				movedAway[d.VolumeID] = true
			}
		}
	}
	// The volumes of a rollback a journal records: their restored copies
	// (IMAGE.strata-rollback-UID) are the journal's, which --repair
	// finishes or undoes, not orphans (an admin told so might remove one
	// by hand first).
	journaled := map[string]bool{}
	for _, p := range points {
		if j, ok := journals[p.TargetKey]; ok && (p.ID == j.To || p.ID == j.Pre) {
			for _, d := range p.Disks {
				journaled[d.VolumeID] = true
			}
		}
	}
	byID := map[string]storage.Volume{}
	byPath := map[string]storage.Volume{}
	for _, v := range vols {
		byID[v.ID] = v
		if !filepath.IsAbs(v.Path) {
			// A network volume (rbd:...): its driver tells whether its
			// image is there (under its live name or aside mid-rollback);
			// it has no directory to scan for orphans.
			if _, ok, err := m.fingerprint(v); err == nil && !ok && !m.volumeBusy(v) {
				if alt := m.locations(v); len(alt) < 2 || !m.imageThere(v, alt[1]) {
					out = append(out, Finding{Kind: "missing-image", Path: v.Path, Detail: "the image of volume " + v.Name + " is missing: restore it from a backup, or forget the volume with 'strata volume delete " + v.Name + "'"})
				}
			}
			continue
		}
		byPath[filepath.Clean(v.Path)] = v
		refs[filepath.Clean(v.Path)] = true
		if d := filepath.Dir(v.Path); !v.Device && !dirs[d] {
			dirs[d] = false // an in-place import's folder: not a pool
		}
		if !m.volumeThere(v) && !exists(v.Path+dirdriver.ApplyingSuffix) && !movedAway[v.ID] && !m.volumeBusy(v) {
			out = append(out, Finding{Kind: "missing-file", Path: v.Path, Detail: "the image of volume " + v.Name + " is missing: restore it from a backup, or forget the volume with 'strata volume delete " + v.Name + "'"})
		}
	}
	for _, p := range points {
		if p.Memory != nil {
			refs[filepath.Clean(p.Memory.Path)] = true
		}
		for _, d := range p.Disks {
			if m.inVolume(d) {
				if v, ok := byID[d.VolumeID]; ok {
					if snaps[v.Path] == nil {
						snaps[v.Path] = map[string]bool{}
					}
					snaps[v.Path][d.Ref] = true
				}
				continue
			}
			refs[filepath.Clean(d.Ref)] = true
			if p.State == stateReady && !m.pointThere(ctx, byID[d.VolumeID], d) {
				out = append(out, Finding{Kind: "missing-point-data", Path: d.Ref, Target: p.Target, Detail: "restore point " + itoa(p.ID) + " has lost the data of volume " + d.Volume + ": delete the point"})
			}
		}
	}
	// Golden images whose files are gone: their clones cannot read them.
	var gs []goldenRecord
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { gs, err = goldens(tx); return err }); err != nil {
		return out, err
	}
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
	// 3. Orphans: files strata made (by their names, see strataEntry) that
	// nothing references. Any other file is the admin's and never touched.
	// Files are compared by what they are, not how they are spelled: a
	// pool reached through a symlink must not make its images nobody's.
	for r := range refs {
		refs[filepath.Clean(r)] = true
		if real, err := filepath.EvalSymlinks(r); err == nil {
			refs[real] = true
		}
	}
	for p := range running {
		refs[p] = true
	}
	// Who may remove what: in a pool, only a pool whose marker names this
	// home (catalog.MarkerFile) is this home's to clean; a pool without a
	// marker (from before markers) is claimed when it holds nothing this
	// catalog does not know, else its orphans are kept, since another home
	// may share it. In an in-place import's folder, which is the admin's,
	// only a file whose name ties it to one of this catalog's volumes in
	// that folder (its image's name, or its volume ID, a random 64-bit
	// number) is this home's.
	inFolder := map[string]map[string]bool{} // folder → image base names and volume IDs there
	for _, v := range vols {
		d := filepath.Dir(v.Path)
		if inFolder[d] == nil {
			inFolder[d] = map[string]bool{}
		}
		inFolder[d][filepath.Base(v.Path)] = true
		inFolder[d][v.ID] = true
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		// A directory that cannot be read (gone, or not ours to read) has
		// no orphans doctor could remove; the volumes in it are reported
		// missing by the checks above.
		candidates, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn().Err(err).Str("dir", d).Msg("cannot read the directory: its orphans are not looked for")
		}
		var paths []string
		for _, e := range candidates {
			if strataEntry(e, dirs[d]) {
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
		var orphans []string
		for _, p := range paths {
			if real, err := filepath.EvalSymlinks(p); refs[p] || (err == nil && refs[real]) {
				continue
			}
			if base := filepath.Base(p); strings.Contains(base, dirdriver.RollbackSuffix) {
				if v, ok := byPath[filepath.Join(d, base[:strings.Index(base, dirdriver.RollbackSuffix)])]; ok && journaled[v.ID] {
					continue // the interrupted rollback's (reported above)
				}
			}
			if !repair && m.inUseByOperation(p, byPath, byID) {
				// A running point, rollback or flatten is making it.
				log.Info().Str("path", p).Msg("an operation on its volume is running: not checked")
				continue
			}
			orphans = append(orphans, p)
		}
		why := keep // why this folder's orphans stay
		if dirs[d] && why == "" {
			why = m.poolOwnership(d, homeID, repair, len(orphans) == 0)
		}
		for _, p := range orphans {
			f := Finding{Kind: "orphan-file", Path: p, Detail: "a file strata made that no volume or restore point references (left by an interrupted operation)" + why}
			if !dirs[d] && why == "" && !tiedToVolume(p, d, inFolder[d]) {
				f.Detail += " (not removed: it is in the folder of a volume imported in place, and its name does not tie it to a volume of this home: remove it yourself if it is not another program's)"
			} else if repair && why == "" {
				f.Repaired = os.RemoveAll(p) == nil
			}
			out = append(out, f)
		}
	}
	// 4. qcow2 images: internal snapshots strata made that no point
	// references, and qemu-img check.
	for _, v := range vols {
		if v.Format != storage.FormatQcow2 || v.Device {
			continue
		}
		if _, err := os.Stat(v.Path); err != nil {
			continue
		}
		if m.volumeBusy(v) {
			// A point being taken or deleted right now: its internal
			// snapshot is not recorded yet, or no longer.
			log.Info().Str("volume", v.Name).Msg("an operation on this volume is running: its image is not checked")
			continue
		}
		if hs, err := m.st.InUse.Holders(ctx, v.Path); err != nil || len(hs) > 0 {
			// A running guest's image: qemu-img cannot check it (its lock),
			// nor may anything repair it under the guest.
			if err == nil {
				log.Info().Str("volume", v.Name).Str("held_by", hs[0].String()).Msg("volume in use: its image is not checked")
			}
			continue
		}
		names, err := qcow2.Snapshots(ctx, v.Path)
		if err != nil {
			return out, err
		}
		for _, n := range names {
			if strings.HasPrefix(n, "strata-") && !snaps[v.Path][n] && !m.snapshotRecorded(v, n) {
				f := Finding{Kind: "orphan-snapshot", Path: v.Path, Detail: "internal snapshot " + n + " of volume " + v.Name + " belongs to no restore point" + keep}
				if repair && keep == "" {
					f.Repaired = qcow2.DeleteSnapshot(ctx, v.Path, n) == nil
				}
				out = append(out, f)
			}
		}
		if err := qcow2.Check(ctx, v.Path); err != nil {
			f := Finding{Kind: "qcow2-check", Path: v.Path, Detail: "qemu-img check reports problems in volume " + v.Name + ": " + err.Error()}
			if repair {
				_, rerr := qcow2.Repair(ctx, v.Path)
				f.Repaired = rerr == nil
			}
			out = append(out, f)
		}
	}
	for _, f := range out {
		log.Debug().Str("kind", f.Kind).Str("path", f.Path).Bool("repaired", f.Repaired).Msg(f.Detail)
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
	_ = m.st.Catalog.View(func(tx *catalog.Tx) error {
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
