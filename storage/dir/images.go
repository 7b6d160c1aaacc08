package dir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/qcow2"
	"github.com/strata-vm/strata/storage/run"
)

// Clone methods of the dir driver, per disk (recorded with each clone).
const (
	CloneLinked  = "linked"  // qcow2 overlay on the golden's image
	CloneReflink = "reflink" // FICLONE of the golden's image (full, O(1))
	CloneCopy    = "copy"    // sparse copy of the golden's image (full)
)

// freezeFrom is the file a golden image is read from, and the internal
// snapshot in it (qcow2-internal points).
func freezeFrom(src storage.FreezeSource) (from, snap string) {
	switch {
	case src.Point == nil:
		return src.Volume.Path, ""
	case src.Point.Method == MethodQcow2:
		return src.Volume.Path, src.Point.Ref
	}
	return src.Point.Ref, ""
}

// FreezeCost implements storage.Driver: a qcow2 image is converted (only
// its data is written: not counted), a raw one is reflinked where the
// pool shares extents with the source, else copied.
func (Driver) FreezeCost(_ context.Context, src storage.FreezeSource, p storage.Pool) (int64, error) {
	from, snap := freezeFrom(src)
	if snap != "" || src.Format == storage.FormatQcow2 {
		return 0, nil
	}
	if capsOf(p.Path).Reflink && sameFS(from, filepath.Join(p.Path, "x")) {
		return 0, nil
	}
	info, err := image.InspectAs(from, storage.FormatRaw)
	if err != nil {
		return 0, err
	}
	return info.AllocatedBytes, nil
}

// Freeze implements storage.Driver: qcow2 through qemu-img convert (only
// the data at that instant: no internal snapshots, no backing chain), raw
// by reflink where possible, else a sparse copy; then made read-only.
func (Driver) Freeze(ctx context.Context, _ storage.Pool, src storage.FreezeSource, dst storage.Image, prog storage.Progress) (int64, int64, error) {
	from, snap := freezeFrom(src)
	if src.Format == storage.FormatQcow2 {
		argv := image.QemuImgRead("convert", "-q", "-f", "qcow2")
		if snap != "" {
			argv = append(argv, "-l", "snapshot.name="+snap)
		}
		argv = append(argv, "-O", "qcow2", from, dst.Path)
		if err := run.Run(ctx, nil, nil, argv...); err != nil {
			os.Remove(dst.Path)
			return 0, 0, err
		}
		if err := image.SyncPath(dst.Path); err != nil {
			return 0, 0, err
		}
	} else if err := (fileCopy{reflink: true}).materialise(ctx, from, dst.Path, prog); err != nil {
		return 0, 0, err
	}
	if err := os.Chmod(dst.Path, 0o400); err != nil {
		return 0, 0, err
	}
	info, err := image.InspectAs(dst.Path, dst.Format)
	if err != nil {
		return 0, 0, err
	}
	return info.VirtualSize, info.AllocatedBytes, image.SyncPath(filepath.Dir(dst.Path))
}

// PlanClone implements storage.Driver: a linked clone is a qcow2 overlay
// on the golden's image; a full one a reflink where the pool shares
// extents with the golden, else a sparse copy.
func (Driver) PlanClone(_ context.Context, golden storage.Image, p storage.Pool, full bool) (storage.ClonePlan, error) {
	if !full {
		return storage.ClonePlan{Method: CloneLinked, Linked: true, Format: storage.FormatQcow2, Backing: golden.Path}, nil
	}
	if capsOf(p.Path).Reflink && sameFS(golden.Path, filepath.Join(p.Path, "x")) {
		return storage.ClonePlan{Method: CloneReflink, Format: golden.Format}, nil
	}
	info, err := image.InspectAs(golden.Path, golden.Format)
	if err != nil {
		return storage.ClonePlan{}, err
	}
	return storage.ClonePlan{Method: CloneCopy, Format: golden.Format, Need: info.AllocatedBytes}, nil
}

// Clone implements storage.Driver.
func (Driver) Clone(ctx context.Context, _ storage.Pool, golden storage.Image, dst storage.Volume, plan storage.ClonePlan, prog storage.Progress) error {
	switch plan.Method {
	case CloneLinked:
		// Absolute backing path and explicit backing format: qemu never
		// probes the golden's format (a raw golden could otherwise be
		// read as whatever its first bytes look like).
		if err := qcow2.Create(ctx, dst.Path, 0, golden.Path, string(golden.Format)); err != nil {
			os.Remove(dst.Path)
			return err
		}
		return nil
	case CloneReflink:
		return image.Reflink(golden.Path, dst.Path)
	}
	return image.CopyData(ctx, golden.Path, dst.Path, prog)
}

// RemoveImages implements storage.Driver.
func (Driver) RemoveImages(_ context.Context, _ storage.Pool, paths []string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := image.SyncPath(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Flatten implements storage.Driver. Point copies beside the image carry
// the same backing file: they are completed in place (qemu-img rebase
// writes the data, then the header, so a crash leaves a copy that still
// reads the same). The image itself is flattened as a copy under a
// temporary name (a reflink where possible) that replaces it by rename
// only when complete.
func (Driver) Flatten(ctx context.Context, _ storage.Pool, v storage.Volume, points []storage.PointRef, prog storage.Progress) (string, error) {
	if v.Device {
		return "", nil
	}
	info, err := image.InspectAs(v.Path, v.Format) // a raw full clone stays raw
	if err != nil {
		return "", err
	}
	if info.BackingFile == "" {
		return "", nil
	}
	if info.Format != storage.FormatQcow2 {
		return "", storage.Errorf(storage.ErrNotSupported, "volume %q is %s with a backing file: only qcow2 overlays can be flattened", v.Name, info.Format)
	}
	for _, p := range points {
		if p.Method == MethodQcow2 {
			continue
		}
		ci, err := image.InspectAs(p.Ref, v.Format) // a raw copy is never read as qcow2
		if err != nil || ci.BackingFile == "" {
			continue
		}
		if err := qimg(ctx, "rebase", "-q", "-f", "qcow2", "-b", "", p.Ref); err != nil {
			return "", err
		}
	}
	tmp := atomicfile.Path(v.Path, atomicfile.PurposeFlatten)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := (fileCopy{reflink: true}).materialise(ctx, v.Path, tmp, prog); err != nil {
		return "", err
	}
	if err := completeImage(ctx, tmp, info); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := keepIdentity(v.Path, tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	storage.Crashpoint("flatten:built")
	if err := os.Rename(tmp, v.Path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := image.SyncPath(filepath.Dir(v.Path)); err != nil {
		return "", err
	}
	storage.Crashpoint("flatten:renamed")
	return info.BackingFile, nil
}

// completeImage makes a qcow2 image self-contained, internal snapshots
// included: each snapshot is applied, completed from the backing file,
// and taken again under its own name (restore points find it by name);
// then the current state, saved first as a temporary snapshot, is
// restored and completed, and the backing file is dropped.
func completeImage(ctx context.Context, path string, info image.Info) error {
	snaps, err := qcow2.Snapshots(ctx, path)
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

// sameFS reports whether two paths' directories are on one filesystem
// (a reflink cannot cross filesystems).
func sameFS(a, b string) bool {
	var sa, sb os.FileInfo
	var err error
	if sa, err = os.Stat(filepath.Dir(a)); err != nil {
		return false
	}
	if sb, err = os.Stat(filepath.Dir(b)); err != nil {
		return false
	}
	return devOf(sa) == devOf(sb)
}

func devOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}
