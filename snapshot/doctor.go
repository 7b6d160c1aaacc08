package snapshot

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	dirdriver "github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/media"
)

// Finding is one problem strata doctor found.
type Finding struct {
	Kind     string `json:"kind"` // interrupted-operation, orphan-file, orphan-image, orphan-snapshot, missing-file, missing-point-data, qcow2-check, in-use
	Path     string `json:"path,omitempty"`
	Target   string `json:"target,omitempty"`
	Detail   string `json:"detail"`
	Repaired bool   `json:"repaired"`
}

// isTemp tells whether a name is a strata temporary (atomicfile's scheme).
func isTemp(name string) bool {
	_, ok := atomicfile.Target(name)
	return ok
}

// Doctor checks that the catalog and the files agree. With repair it
// finishes or undoes interrupted operations, removes orphans that strata
// made (never any other file) and repairs qcow2 leaks. The caller holds the
// state home's operation lock exclusively, so nothing is in progress.
//
// Each step is a plan read from the catalog (planRecovery, orphanPolicy,
// planScan: pure, no file or tool touched) and then the work it calls for
// (doctor_files.go): first the operations a dead process left are
// recovered, then the catalog is read again and the files checked against
// what it references.
func (m *Manager) Doctor(ctx context.Context, repair bool) ([]Finding, error) {
	var rp recoveryPlan
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { rp, err = readRecovery(tx); return err }); err != nil {
		return nil, err
	}
	out := unreadableFindings(rp.unreadable)
	var restored catalog.Restored
	var isRestored bool
	var homeID string
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) {
		if restored, isRestored, err = tx.Restored(); err != nil {
			return err
		}
		homeID, err = tx.HomeID()
		return err
	}); err != nil {
		return nil, err
	}
	keep, fs := orphanPolicy(len(rp.unreadable) > 0, restored, isRestored, readHomeID(m.st.Catalog.Home()), homeID, m.st.Catalog.Home())
	out = append(out, fs...)
	// 1. Operations a dead process left: recovered target by target, and
	// golden images being made or deleted, clones under way.
	fs, err := m.recoverInterrupted(ctx, rp.targets, repair)
	out = append(out, fs...)
	if err != nil {
		return out, err
	}
	fs, running, err := m.doctorGoldens(ctx, repair)
	out = append(out, fs...)
	if err != nil {
		return out, err
	}
	// 2. What the catalog references now, and the directories strata
	// writes in.
	var recs doctorRecords
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { recs, err = readDoctorRecords(tx); return err }); err != nil {
		return out, err
	}
	sp := planScan(recs, m.inVolume)
	out = append(out, m.checkVolumes(recs.vols, sp, m.movedAway(recs.points))...)
	out = append(out, m.checkPoints(ctx, recs.points, sp)...)
	out = append(out, checkGoldenImages(recs.goldens)...)
	// 3. Orphans: files strata made (by their names, see strataEntry) that
	// nothing references. Any other file is the admin's and never touched.
	sp.resolveRefs(running)
	for _, d := range sp.dirList() {
		out = append(out, m.orphansIn(d, sp, repair, keep, homeID)...)
	}
	// And images strata made in pools that are no directories (RBD).
	out = append(out, m.imageOrphans(ctx, recs, running, repair, keep, homeID)...)
	// 4. qcow2 images: internal snapshots strata made that no point
	// references, and qemu-img check.
	fs, err = m.checkImages(ctx, recs.vols, sp.snaps, keep, repair)
	out = append(out, fs...)
	if err != nil {
		return out, err
	}
	for _, f := range out {
		log.Debug().Str("kind", f.Kind).Str("path", f.Path).Bool("repaired", f.Repaired).Msg(f.Detail)
	}
	return out, nil
}

// recoveryPlan is what doctor recovers: the targets with a journal or a
// point not ready (an operation interrupted, or running), in key order,
// and the records it cannot read (by "bucket/key"): files and internal
// snapshots they may name are then never removed as orphans.
type recoveryPlan struct {
	targets    []catalog.TargetKey
	unreadable map[string]error
}

// readRecovery reads the journals and point records and plans doctor's
// recovery from them.
func readRecovery(tx *catalog.Tx) (recoveryPlan, error) {
	var journals []string
	points := map[string][]byte{}
	if err := tx.Scan(bJournal, "", func(k string, _ []byte) error { journals = append(journals, k); return nil }); err != nil {
		return recoveryPlan{}, err
	}
	if err := tx.Scan(bPoints, "", func(k string, raw []byte) error { points[k] = raw; return nil }); err != nil {
		return recoveryPlan{}, err
	}
	return planRecovery(journals, points), nil
}

// planRecovery plans doctor's recovery from the journal keys and the raw
// point records (by key).
func planRecovery(journals []string, points map[string][]byte) recoveryPlan {
	rp := recoveryPlan{unreadable: map[string]error{}}
	seen := map[catalog.TargetKey]bool{}
	for _, k := range journals {
		key, err := parsePointTarget(k)
		if err != nil {
			rp.unreadable[bJournal+"/"+k] = err
			continue
		}
		seen[key] = true
	}
	for k, raw := range points {
		var p Point
		if err := json.Unmarshal(raw, &p); err != nil {
			rp.unreadable[bPoints+"/"+k] = err
			continue
		}
		if p.State != stateReady {
			seen[p.TargetKey] = true
		}
	}
	for k := range seen {
		rp.targets = append(rp.targets, k)
	}
	sort.Slice(rp.targets, func(i, j int) bool { return rp.targets[i].String() < rp.targets[j].String() })
	return rp
}

// unreadableFindings reports the records doctor cannot read, in key order.
func unreadableFindings(unreadable map[string]error) []Finding {
	keys := make([]string, 0, len(unreadable))
	for k := range unreadable {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Finding
	for _, k := range keys {
		out = append(out, Finding{Kind: "unreadable-record", Target: k,
			Detail: "the catalog record of a restore point cannot be read (" + unreadable[k].Error() + "): strata leaves it, and any file it may name, alone; restore HOME/catalog.db from a backup, or delete the record if its point is not needed"})
	}
	return out
}

// orphanPolicy is why no orphan may be removed ("" if they may): a record
// doctor cannot read may name one; a catalog put back from a copy (or
// started empty) over this home may lack records of files that are in the
// pools, so every file is kept until the admin accepts it; a catalog whose
// home ID is not the one the state home's ID file (fileID, at home) says
// may be another home's (a finding).
func orphanPolicy(unreadable bool, restored catalog.Restored, isRestored bool, fileID, homeID, home string) (keep string, out []Finding) {
	if unreadable {
		keep = " (not removed: a restore point record strata cannot read may reference it)"
	}
	if isRestored && keep == "" {
		keep = " (not removed: the catalog was restored from " + restored.From + " on " + restored.At.Format("2006-01-02 15:04") + " UTC and may lack its record: import it again if it is needed; once every such file is dealt with, 'strata catalog accept' lets doctor --repair remove the rest)"
	}
	if fileID != "" && fileID != homeID {
		out = append(out, Finding{Kind: "home-id-mismatch", Path: filepath.Join(home, catalog.HomeIDFile),
			Detail: "the state home's ID file says " + fileID + " but the catalog belongs to home " + homeID + ": the catalog may be another home's; no file is removed until they agree (restore this home's catalog, or fix the file if the catalog is right)"})
		if keep == "" {
			keep = " (not removed: the catalog and the state home's ID disagree)"
		}
	}
	return keep, out
}

// doctorRecords is what doctor's file checks compare the files with, read
// in one transaction after recovery.
type doctorRecords struct {
	vols    []storage.Volume
	pools   []storage.Pool
	extra   map[string]bool // files of golden images and install media
	points  []Point         // readable ones (the others: recoveryPlan), with current target names
	journal map[catalog.TargetKey]journalEntry
	goldens []goldenRecord
}

func readDoctorRecords(tx *catalog.Tx) (doctorRecords, error) {
	r := doctorRecords{extra: map[string]bool{}, journal: map[catalog.TargetKey]journalEntry{}}
	var err error
	if r.vols, err = tx.Volumes(); err != nil {
		return r, err
	}
	if r.pools, err = tx.Pools(); err != nil {
		return r, err
	}
	if err := goldenRefs(tx, r.extra); err != nil {
		return r, err
	}
	// Install media: an ISO in a pool that no medium records is left by a
	// crash between the rename of its image and its record.
	isos, err := media.All(tx)
	if err != nil {
		return r, err
	}
	for _, md := range isos {
		r.extra[filepath.Clean(md.Path)] = true
	}
	if err := tx.Scan(bJournal, "", func(k string, raw []byte) error {
		var j journalEntry
		if key, err := parsePointTarget(k); err == nil && json.Unmarshal(raw, &j) == nil {
			r.journal[key] = j
		}
		return nil
	}); err != nil {
		return r, err
	}
	names := map[catalog.TargetKey]string{}
	if err := tx.Scan(bPoints, "", func(_ string, raw []byte) error {
		var p Point
		if json.Unmarshal(raw, &p) == nil { // unreadable ones: recoveryPlan
			n, ok := names[p.TargetKey]
			if !ok {
				n = nameOf(tx, p.TargetKey)
				names[p.TargetKey] = n
			}
			p.Target = n
			r.points = append(r.points, p)
		}
		return nil
	}); err != nil {
		return r, err
	}
	r.goldens, err = goldens(tx)
	return r, err
}

// scanPlan is what doctor's file checks go by, planned from the catalog
// alone.
type scanPlan struct {
	refs  map[string]bool            // files the catalog references (cleaned paths)
	snaps map[string]map[string]bool // qcow2 image → internal snapshots points reference
	// dirs: the directories strata writes in → whether it is a pool's
	// (false: the folder of a volume imported in place, the admin's).
	dirs   map[string]bool
	byID   map[string]storage.Volume
	byPath map[string]storage.Volume // volumes with a file, by cleaned path
	// journaled: the volumes of a rollback a journal records. Their
	// restored copies (IMAGE.strata-rollback-UID) are the journal's,
	// which --repair finishes or undoes, not orphans (an admin told so
	// might remove one by hand first).
	journaled map[string]bool
	// inFolder: folder → the image base names and volume IDs there; in
	// an in-place import's folder only a file whose name ties it to one
	// of these is this home's.
	inFolder map[string]map[string]bool
}

// planScan plans doctor's file checks from the records; inVolume tells
// whether a disk's point lives inside its volume (an internal snapshot,
// not a file).
func planScan(r doctorRecords, inVolume func(DiskPoint) bool) scanPlan {
	sp := scanPlan{refs: map[string]bool{}, snaps: map[string]map[string]bool{}, dirs: map[string]bool{},
		byID: map[string]storage.Volume{}, byPath: map[string]storage.Volume{}, journaled: map[string]bool{}, inFolder: map[string]map[string]bool{}}
	for p := range r.extra {
		sp.refs[p] = true
	}
	for _, p := range r.pools {
		if p.Path != "" { // not a pool of block devices or network images
			sp.dirs[filepath.Clean(p.Path)] = true
		}
	}
	for _, v := range r.vols {
		sp.byID[v.ID] = v
		d := filepath.Dir(v.Path)
		if sp.inFolder[d] == nil {
			sp.inFolder[d] = map[string]bool{}
		}
		sp.inFolder[d][filepath.Base(v.Path)] = true
		sp.inFolder[d][v.ID] = true
		if !filepath.IsAbs(v.Path) {
			continue // a network volume (rbd:...): no directory to scan
		}
		sp.byPath[filepath.Clean(v.Path)] = v
		sp.refs[filepath.Clean(v.Path)] = true
		if !v.Device && !sp.dirs[d] {
			sp.dirs[d] = false // an in-place import's folder: not a pool
		}
	}
	for _, p := range r.points {
		if p.Memory != nil {
			sp.refs[filepath.Clean(p.Memory.Path)] = true
		}
		j, journaled := r.journal[p.TargetKey]
		journaled = journaled && (p.ID == j.To || p.ID == j.Pre)
		for _, d := range p.Disks {
			if journaled {
				sp.journaled[d.VolumeID] = true
			}
			if !inVolume(d) {
				sp.refs[filepath.Clean(d.Ref)] = true
			} else if v, ok := sp.byID[d.VolumeID]; ok {
				if sp.snaps[v.Path] == nil {
					sp.snaps[v.Path] = map[string]bool{}
				}
				sp.snaps[v.Path][d.Ref] = true
			}
		}
	}
	return sp
}

// resolveRefs adds to the references what each is on disk (files are
// compared by what they are, not how they are spelled: a pool reached
// through a symlink must not make its images nobody's) and the images of
// operations running now (running).
func (sp scanPlan) resolveRefs(running map[string]bool) {
	for r := range sp.refs {
		sp.refs[filepath.Clean(r)] = true
		if real, err := filepath.EvalSymlinks(r); err == nil {
			sp.refs[real] = true
		}
	}
	for p := range running {
		sp.refs[p] = true
	}
}

// dirList is the directories to look for orphans in, in order.
func (sp scanPlan) dirList() []string {
	out := make([]string, 0, len(sp.dirs))
	for d := range sp.dirs {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// referenced tells whether strata file p in directory dir is one the
// catalog knows: by reference, or the restored copy of a journaled
// rollback (reported as the interrupted operation it is).
func (sp scanPlan) referenced(dir, p string) bool {
	if real, err := filepath.EvalSymlinks(p); sp.refs[p] || (err == nil && sp.refs[real]) {
		return true
	}
	base := filepath.Base(p)
	if i := strings.Index(base, dirdriver.RollbackSuffix); i >= 0 {
		v, ok := sp.byPath[filepath.Join(dir, base[:i])]
		return ok && sp.journaled[v.ID]
	}
	return false
}
