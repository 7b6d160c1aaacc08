package snapshot

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/pattern"
	"github.com/strata-vm/strata/storage/run"
)

// Finding is one problem strata doctor found.
type Finding struct {
	Kind     string `json:"kind"` // interrupted-operation, orphan-file, orphan-snapshot, missing-file, missing-point-data, qcow2-check
	Path     string `json:"path,omitempty"`
	Target   string `json:"target,omitempty"`
	Detail   string `json:"detail"`
	Repaired bool   `json:"repaired"`
}

// extraRefs lets other parts of this package (golden images, clones) add
// the files they reference, so doctor never calls them orphans.
var extraRefs []func(tx *catalog.Tx, refs map[string]bool) error

// Names strata gives the files it makes, by where they are. Doctor reports
// and removes only unreferenced files matching these, never anything else.
var (
	// idImage: a volume, golden or clone image or an ISO named by ID; strata
	// names files so only inside pool directories (an in-place imported
	// volume's folder is the admin's, whatever the names in it).
	idImage = pattern.New(`^[0-9a-f]{16}\.(img|qcow2|iso)$`)
	// tmpName: a temporary copy or staging directory, in any directory.
	tmpName = pattern.New(`^\.strata-tmp-.+$`)
	// probeDir: a capability probe's scratch directory (storage/dir).
	probeDir = pattern.New(`^\.strata-probe-.+$`)
	// rollbackTmp: the new image of a rollback in progress, next to the
	// live image (<image>.strata-rollback-<uid>, or the older
	// <image>.strata-rollback).
	rollbackTmp = pattern.New(`^.+\.strata-rollback(-[0-9a-f]{12})?$`)
	// pointData: a restore point's copy under .strata-points/:
	// <volume id>-<point uid><extension of the volume's image>.
	pointData = pattern.New(`^[0-9a-f]{16}-[0-9a-f]{12}(\.[^.]+)?$`)
)

// strataEntry tells whether a directory entry is a file or directory strata
// names as its own, in a pool directory if pool is set.
func strataEntry(e os.DirEntry, pool bool) bool {
	n := e.Name()
	switch {
	case tmpName.MatchString(n):
		return true // a temporary file, or an iso build's staging directory
	case probeDir.MatchString(n):
		return e.IsDir()
	case e.IsDir():
		return false
	case rollbackTmp.MatchString(n):
		return true
	case pool && idImage.MatchString(n):
		return true
	}
	return false
}

// Doctor checks that the catalog and the files agree. With repair it
// finishes or undoes interrupted operations, removes orphans that strata
// made (never any other file) and repairs qcow2 leaks. The caller holds the
// state home's operation lock exclusively, so nothing is in progress.
func (m *Manager) Doctor(ctx context.Context, repair bool) ([]Finding, error) {
	out := []Finding{}
	// 1. Operations a dead process left: recover them target by target.
	var targets []string
	// unreadable: point records that do not decode. Files and internal
	// snapshots they may name are then never removed as orphans.
	unreadable := map[string]error{}
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		seen := map[string]bool{}
		if err := tx.Scan(bJournal, "", func(k string, _ []byte) error { seen[k] = true; return nil }); err != nil {
			return err
		}
		if err := tx.Scan(bPoints, "", func(k string, raw []byte) error {
			var p Point
			if err := json.Unmarshal(raw, &p); err != nil {
				unreadable[k] = err
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
	sort.Strings(targets)
	keep := "" // why orphans are not removed, if they must not be
	if len(unreadable) > 0 {
		keep = " (not removed: a restore point record strata cannot read may reference it)"
		keys := make([]string, 0, len(unreadable))
		for k := range unreadable {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, Finding{Kind: "unreadable-record", Target: "points/" + k,
				Detail: "the catalog record of a restore point cannot be read (" + unreadable[k].Error() + "): strata leaves it, and any file it may name, alone; restore HOME/catalog.db from a backup, or delete the record if its point is not needed"})
		}
	}
	for _, k := range targets {
		var name string
		_ = m.st.Catalog.View(func(tx *catalog.Tx) error { name = currentName(tx, Point{TargetKey: k, Target: k}); return nil })
		kind, n, _ := strings.Cut(name, ":")
		f := Finding{Kind: "interrupted-operation", Target: name, Detail: "a restore point operation was interrupted (create, delete or rollback)"}
		if repair {
			t := Target{Kind: kind, Name: n, Key: k}
			l, ok := tryLockTarget(m.st.Catalog.Home(), t)
			if ok {
				err := m.recoverTarget(ctx, t)
				l.unlock()
				if err != nil {
					return out, err
				}
				f.Repaired = true
			}
		}
		out = append(out, f)
	}
	// Golden images being made or deleted, clones under way.
	if repair {
		fs, err := m.recoverGoldens(ctx)
		if err != nil {
			return out, err
		}
		out = append(out, fs...)
	} else {
		pending, err := m.pendingGoldens()
		if err != nil {
			return out, err
		}
		for _, g := range pending {
			out = append(out, Finding{Kind: "interrupted-operation", Target: "golden:" + g.Name, Detail: "a golden image or clone operation was interrupted"})
		}
	}
	// 2. What the catalog references, and the directories strata writes in
	// (dirs: directory → whether it is a pool's).
	refs := map[string]bool{}
	snaps := map[string]map[string]bool{} // qcow2 path → referenced snapshot names
	dirs := map[string]bool{}
	var vols []storage.Volume
	var points []Point
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
			dirs[filepath.Clean(p.Path)] = true
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
		return tx.Scan(bPoints, "", func(_ string, raw []byte) error {
			var p Point
			if json.Unmarshal(raw, &p) == nil { // unreadable ones: above
				points = append(points, p)
			}
			return nil
		})
	})
	if err != nil {
		return out, err
	}
	byID := map[string]storage.Volume{}
	for _, v := range vols {
		byID[v.ID] = v
		refs[filepath.Clean(v.Path)] = true
		if d := filepath.Dir(v.Path); !v.Device && !dirs[d] {
			dirs[d] = false // an in-place import's folder: not a pool
		}
		if _, err := os.Stat(v.Path); err != nil {
			out = append(out, Finding{Kind: "missing-file", Path: v.Path, Detail: "the image of volume " + v.Name + " is missing: restore it from a backup, or forget the volume with 'strata volume delete " + v.Name + "'"})
		}
	}
	for _, p := range points {
		for _, d := range p.Disks {
			if d.Method == MethodQcow2 {
				if v, ok := byID[d.VolumeID]; ok {
					if snaps[v.Path] == nil {
						snaps[v.Path] = map[string]bool{}
					}
					snaps[v.Path][d.Ref] = true
				}
				continue
			}
			refs[filepath.Clean(d.Ref)] = true
			if _, err := os.Stat(d.Ref); err != nil && p.State == stateReady {
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
			if _, err := os.Stat(d.Path); err != nil {
				out = append(out, Finding{Kind: "missing-file", Path: d.Path, Target: "golden:" + g.Name, Detail: "an image of golden image " + g.Name + " is missing: its linked clones cannot read their disks; restore it from a backup"})
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
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		candidates, _ := os.ReadDir(d)
		var paths []string
		for _, e := range candidates {
			if strataEntry(e, dirs[d]) {
				paths = append(paths, filepath.Join(d, e.Name()))
			}
		}
		pts, _ := os.ReadDir(filepath.Join(d, pointsDir))
		for _, e := range pts {
			if !e.IsDir() && pointData.MatchString(e.Name()) {
				paths = append(paths, filepath.Join(d, pointsDir, e.Name()))
			}
		}
		for _, p := range paths {
			if real, err := filepath.EvalSymlinks(p); refs[p] || (err == nil && refs[real]) {
				continue
			}
			f := Finding{Kind: "orphan-file", Path: p, Detail: "a file strata made that no volume or restore point references (left by an interrupted operation)" + keep}
			if repair && keep == "" {
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
		names, err := qcow2Snapshots(ctx, v.Path)
		if err != nil {
			return out, err
		}
		for _, n := range names {
			if strings.HasPrefix(n, "strata-") && !snaps[v.Path][n] {
				f := Finding{Kind: "orphan-snapshot", Path: v.Path, Detail: "internal snapshot " + n + " of volume " + v.Name + " belongs to no restore point" + keep}
				if repair && keep == "" {
					f.Repaired = run.Run(ctx, nil, nil, "qemu-img", "snapshot", "-q", "-d", n, v.Path) == nil
				}
				out = append(out, f)
			}
		}
		if err := run.Run(ctx, nil, nil, image.QemuImgRead("check", "-q", "-f", "qcow2", v.Path)...); err != nil {
			f := Finding{Kind: "qcow2-check", Path: v.Path, Detail: "qemu-img check reports problems in volume " + v.Name + ": " + err.Error()}
			if repair {
				f.Repaired = run.Run(ctx, nil, nil, "qemu-img", "check", "-q", "-r", "leaks", "-f", "qcow2", v.Path) == nil
			}
			out = append(out, f)
		}
	}
	for _, f := range out {
		log.Debug().Str("kind", f.Kind).Str("path", f.Path).Bool("repaired", f.Repaired).Msg(f.Detail)
	}
	return out, nil
}

func qcow2Snapshots(ctx context.Context, path string) ([]string, error) {
	out, err := run.Output(ctx, image.QemuImgRead("info", "--output=json", "-f", "qcow2", path)...)
	if err != nil {
		return nil, err
	}
	var info struct {
		Snapshots []struct {
			Name string `json:"name"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, err
	}
	names := make([]string, len(info.Snapshots))
	for i, s := range info.Snapshots {
		names[i] = s.Name
	}
	return names, nil
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
