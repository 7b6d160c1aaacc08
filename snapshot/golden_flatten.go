package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/run"
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
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		t, err := r.resolve(tx)
		if err != nil {
			return err
		}
		targets = append(targets, t)
		if r.Volume {
			v, err := tx.Volume(r.Name)
			if err != nil {
				return err
			}
			vols = []storage.Volume{v}
			names, err := tx.GuestsUsing(v.ID)
			if err != nil {
				return err
			}
			for _, n := range names {
				g, err := tx.Guest(n)
				if err != nil {
					return err
				}
				targets = append(targets, Target{Kind: "guest", Name: g.Name, Key: "g-" + g.ID})
			}
			return nil
		}
		vols, _, err = volumesOf(tx, t)
		for _, v := range vols {
			targets = append(targets, Target{Kind: "volume", Name: v.Name, Key: "v-" + v.ID})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// The restore points of every target that includes these disks must
	// stand still: take every lock, in key order (no deadlock), and finish
	// whatever a dead process left on them.
	sort.Slice(targets, func(i, j int) bool { return targets[i].Key < targets[j].Key })
	for _, t := range targets {
		l, err := lockTarget(m.st.Catalog.Home(), t, m.lockTimeout)
		if err != nil {
			return nil, err
		}
		defer l.unlock()
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

func (m *Manager) flattenVolume(ctx context.Context, v storage.Volume) error {
	if v.Device {
		return nil
	}
	info, err := image.InspectAs(v.Path, v.Format) // a raw full clone stays raw
	if err != nil {
		return err
	}
	if info.BackingFile == "" {
		if v.Backing != "" { // flattened by a process that died before recording it
			v.Backing = ""
			return m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.ReplaceVolume(v) })
		}
		log.Info().Str("volume", v.Name).Msg("volume has no backing file: nothing to flatten")
		return nil
	}
	if info.Format != storage.FormatQcow2 {
		return storage.Errorf(storage.ErrNotSupported, "volume %q is %s with a backing file: only qcow2 overlays can be flattened", v.Name, info.Format)
	}
	// Point copies beside the image carry the same backing file: complete
	// them in place (qemu-img rebase writes the data, then the header, so
	// a crash leaves a copy that still reads the same).
	var copies []string
	if err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		return tx.Scan(bPoints, "", func(_ string, raw []byte) error {
			var p Point
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			for _, d := range p.Disks {
				if d.VolumeID == v.ID && d.Method != MethodQcow2 {
					copies = append(copies, d.Ref)
				}
			}
			return nil
		})
	}); err != nil {
		return err
	}
	for _, c := range copies {
		ci, err := image.InspectAs(c, v.Format) // a raw copy is never read as qcow2
		if err != nil || ci.BackingFile == "" {
			continue
		}
		if err := qimg(ctx, "rebase", "-q", "-f", "qcow2", "-b", "", c); err != nil {
			return err
		}
	}
	tmp := filepath.Join(filepath.Dir(v.Path), ".strata-tmp-flatten-"+filepath.Base(v.Path))
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := (fileCopy{reflink: true}).materialise(ctx, v.Path, tmp, m.Progress); err != nil {
		return err
	}
	if err := completeImage(ctx, tmp, info); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := keepIdentity(v.Path, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	crashpoint("flatten:built")
	if err := os.Rename(tmp, v.Path); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := image.SyncPath(filepath.Dir(v.Path)); err != nil {
		return err
	}
	crashpoint("flatten:renamed")
	v.Backing = ""
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.ReplaceVolume(v) }); err != nil {
		return err
	}
	log.Info().Str("volume", v.Name).Str("was_backed_by", info.BackingFile).Msg("volume flattened: it no longer depends on a backing file")
	return nil
}

// completeImage makes a qcow2 image self-contained, internal snapshots
// included: each snapshot is applied, completed from the backing file,
// and taken again under its own name (restore points find it by name);
// then the current state, saved first as a temporary snapshot, is
// restored and completed, and the backing file is dropped.
func completeImage(ctx context.Context, path string, info image.Info) error {
	snaps, err := qcow2Snapshots(ctx, path)
	if err != nil {
		return err
	}
	current := "strata-flatten-" + newUID()
	if len(snaps) > 0 {
		reattach := []string{"rebase", "-q", "-u", "-f", "qcow2", "-b", info.BackingFile}
		if info.BackingFormat != "" {
			reattach = append(reattach, "-F", info.BackingFormat)
		}
		reattach = append(reattach, path)
		if err := qimg(ctx, "snapshot", "-q", "-c", current, path); err != nil {
			return err
		}
		for _, s := range snaps {
			for _, step := range [][]string{
				{"snapshot", "-q", "-a", s, path},
				{"rebase", "-q", "-f", "qcow2", "-b", "", path},
				{"snapshot", "-q", "-d", s, path},
				{"snapshot", "-q", "-c", s, path},
				reattach,
			} {
				if err := qimg(ctx, step...); err != nil {
					return err
				}
			}
		}
		if err := qimg(ctx, "snapshot", "-q", "-a", current, path); err != nil {
			return err
		}
	}
	if err := qimg(ctx, "rebase", "-q", "-f", "qcow2", "-b", "", path); err != nil {
		return err
	}
	if len(snaps) > 0 {
		if err := qimg(ctx, "snapshot", "-q", "-d", current, path); err != nil {
			return err
		}
	}
	return image.SyncPath(path)
}

func qimg(ctx context.Context, args ...string) error {
	return run.Run(ctx, nil, nil, append([]string{"qemu-img"}, args...)...)
}
