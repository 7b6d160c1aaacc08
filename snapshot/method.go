package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/run"
)

// Method names.
const (
	MethodQcow2    = "qcow2-internal"
	MethodReflink  = "reflink"
	MethodCopy     = "copy"
	methodMixed    = "mixed"
	pointsDir      = ".strata-points"
	rollbackSuffix = ".strata-rollback"
	// applyingSuffix: a qcow2 image moved away from its live name while
	// qemu-img applies one of its snapshots (see qcow2Internal.restore).
	applyingSuffix = ".strata-applying"
)

// A method captures, restores and removes one disk's state.
type method interface {
	// plan fills in where the point's data will be (before anything is
	// written, so an interrupted take can be cleaned up).
	plan(v storage.Volume, uid string) DiskPoint
	take(ctx context.Context, v storage.Volume, dp *DiskPoint, prog storage.Progress) error
	// restore puts the point's state back under the live name; run again
	// after an interruption, it finishes what it had begun.
	restore(ctx context.Context, v storage.Volume, dp DiskPoint, s restoreStep) error
	// remove deletes the point's data; absent data is not an error.
	remove(ctx context.Context, v storage.Volume, dp DiskPoint) error
	// exists tells whether the point's data is there.
	exists(ctx context.Context, v storage.Volume, dp DiskPoint) (bool, error)
}

// restoreStep is what a restore is told besides the point.
type restoreStep struct {
	prog storage.Progress
	// record is told the state the restored image is in before it takes
	// the live name (the journal keeps it, so that recovery can tell a
	// guest's later writes from strata's own work).
	record func(fingerprint) error
	// moveTo: where the live image goes when the restored one takes its
	// name (it becomes the pre-rollback point's; see DiskPoint.Moved).
	moveTo string
	// done is the state an interrupted run of this step recorded for the
	// restored image (nil: none): a restored copy left in that state
	// under its temporary name is used as it is, not made again.
	done *fingerprint
}

func methodByName(name string) (method, error) {
	switch name {
	case MethodQcow2:
		return qcow2Internal{}, nil
	case MethodReflink:
		return fileCopy{reflink: true}, nil
	case MethodCopy:
		return fileCopy{}, nil
	}
	return nil, storage.Errorf(storage.ErrInvalid, "invalid method %q: use qcow2-internal, reflink or copy", name)
}

// chooser picks methods from the probed capabilities of each volume's
// directory (probed once per directory).
type chooser struct {
	caps map[string]storage.Capabilities
}

func (c *chooser) capsOf(path string) (storage.Capabilities, error) {
	d := filepath.Dir(path)
	if caps, ok := c.caps[d]; ok {
		return caps, nil
	}
	caps, err := dir.Probe(d)
	if err != nil {
		return caps, fmt.Errorf("probe %q: %w", d, err)
	}
	if c.caps == nil {
		c.caps = map[string]storage.Capabilities{}
	}
	c.caps[d] = caps
	return caps, nil
}

// choose returns the method for a volume: the override if it applies,
// else qcow2-internal for qcow2, reflink where the filesystem clones, else
// a sparse copy.
func (c *chooser) choose(v storage.Volume, override string) (string, error) {
	if v.Device {
		return "", storage.Errorf(storage.ErrNotSupported, "volume %q is the block device %q: strata cannot take restore points of block devices yet (LVM snapshots are planned); copy it into a pool with 'strata volume import --copy'", v.Name, v.Path)
	}
	if v.Format != storage.FormatRaw && v.Format != storage.FormatQcow2 {
		return "", storage.Errorf(storage.ErrNotSupported, "volume %q is %s media, which has no restore points", v.Name, v.Format)
	}
	switch override {
	case "":
		if v.Format == storage.FormatQcow2 {
			return MethodQcow2, nil // on any filesystem: no probe needed
		}
		caps, err := c.capsOf(v.Path)
		if err != nil {
			return "", err
		}
		if caps.Reflink {
			return MethodReflink, nil
		}
		return MethodCopy, nil
	case MethodQcow2:
		if v.Format != storage.FormatQcow2 {
			return "", storage.Errorf(storage.ErrInvalid, "method qcow2-internal needs a qcow2 volume; %q is %s", v.Name, v.Format)
		}
	case MethodReflink, MethodCopy:
		if v.Format == storage.FormatQcow2 {
			// The point would be a copy of the whole image, put back over
			// it by a rollback: with it would go every internal snapshot,
			// the other points of this volume.
			return "", storage.Errorf(storage.ErrInvalid, "method %s does not apply to qcow2 volume %q: its restore points are internal snapshots (qcow2-internal), which a copy of the image put back by a rollback would discard; leave --method out", override, v.Name)
		}
		if override == MethodCopy {
			break
		}
		caps, err := c.capsOf(v.Path)
		if err != nil {
			return "", err
		}
		if !caps.Reflink {
			return "", storage.Errorf(storage.ErrInvalid, "method reflink needs a filesystem that supports FICLONE (XFS with reflink=1, btrfs); %q is on one that does not", v.Name)
		}
	default:
		_, err := methodByName(override)
		return "", err
	}
	return override, nil
}

// qcow2Internal keeps points inside the image (qemu-img snapshot), so no
// backing chain grows and taking or applying one is O(1).
type qcow2Internal struct{}

func (qcow2Internal) plan(v storage.Volume, uid string) DiskPoint {
	return DiskPoint{VolumeID: v.ID, Volume: v.Name, Format: v.Format, Method: MethodQcow2, Ref: "strata-" + uid}
}

func (qcow2Internal) take(ctx context.Context, v storage.Volume, dp *DiskPoint, _ storage.Progress) error {
	if err := image.VerifyImage(v); err != nil { // qemu-img follows links
		return err
	}
	return inuse.Without(ctx, v.Path, func() error {
		return run.Critical(ctx, "qemu-img", "snapshot", "-q", "-c", dp.Ref, v.Path)
	})
}

// restore applies the internal snapshot with the image moved away from its
// live name (IMAGE.strata-applying), then moves it back. qemu-img switches
// the active table before it fixes reference counts and copied flags:
// stopped midway (a power cut) it leaves an image in which a write would
// go into clusters the other snapshots share. Moved away, such an image
// cannot be opened by a guest started by hand before strata recovers; the
// next restore finds it there, lets qemu-img repair it (check -r all) and
// applies the snapshot again.
func (qcow2Internal) restore(ctx context.Context, v storage.Volume, dp DiskPoint, s restoreStep) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	applying := v.Path + applyingSuffix
	_, err := os.Lstat(applying)
	resumed := err == nil
	if resumed {
		if _, err := os.Lstat(v.Path); err == nil {
			return storage.Errorf(storage.ErrPrecondition, "volume %q has both an image %q and one being rolled back (%q): strata cannot tell which is the disk; move the one that is not aside, then run strata doctor --repair", v.Name, v.Path, applying)
		}
		if err := inuse.Without(ctx, applying, func() error { _, err := repairQcow2(ctx, applying); return err }); err != nil {
			return err
		}
	} else {
		if err := os.Rename(v.Path, applying); err != nil {
			return fmt.Errorf("move the image of volume %q aside while it is rolled back: %w", v.Name, err)
		}
		if err := image.SyncPath(filepath.Dir(v.Path)); err != nil {
			return err
		}
	}
	crashpoint("rollback:qcow2-moved")
	if err := inuse.Without(ctx, applying, func() error {
		return run.Critical(ctx, "qemu-img", "snapshot", "-q", "-a", dp.Ref, applying)
	}); err != nil {
		return err
	}
	crashpoint("rollback:qcow2-applied")
	fp, _, err := fingerprintOf(applying)
	if err != nil {
		return err
	}
	if err := s.record(fp); err != nil {
		return err
	}
	if err := os.Rename(applying, v.Path); err != nil {
		return fmt.Errorf("move the image of volume %q back: %w", v.Name, err)
	}
	return image.SyncPath(filepath.Dir(v.Path))
}

// repairQcow2 runs qemu-img check on an image and, if it reports anything
// but a clean image, repairs it (-r all: leaked clusters, and reference
// counts or copied flags that a write would trust). repaired tells whether
// it had to.
func repairQcow2(ctx context.Context, path string) (repaired bool, err error) {
	if run.Run(ctx, nil, nil, "qemu-img", "check", "-q", "-f", "qcow2", path) == nil {
		return false, nil
	}
	log.Warn().Str("image", path).Msg("qemu-img check reports errors (an interrupted qemu-img left them): repairing them with qemu-img check -r all")
	if err := run.Critical(ctx, "qemu-img", "check", "-q", "-r", "all", "-f", "qcow2", path); err != nil {
		return true, fmt.Errorf("repair %q: %w", path, err)
	}
	return true, nil
}

func (m qcow2Internal) remove(ctx context.Context, v storage.Volume, dp DiskPoint) error {
	if err := image.VerifyImage(v); err != nil { // qemu-img follows links
		return err
	}
	ok, err := m.exists(ctx, v, dp)
	if err != nil || !ok {
		return err
	}
	return inuse.Without(ctx, v.Path, func() error {
		return run.Critical(ctx, "qemu-img", "snapshot", "-q", "-d", dp.Ref, v.Path)
	})
}

func (qcow2Internal) exists(ctx context.Context, v storage.Volume, dp DiskPoint) (bool, error) {
	if _, err := os.Stat(v.Path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	out, err := run.OutputIsolated(ctx, image.QemuImgRead("info", "--output=json", "-f", "qcow2", v.Path)...)
	if err != nil {
		return false, err
	}
	var info struct {
		Snapshots []struct {
			Name string `json:"name"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return false, fmt.Errorf("qemu-img info %q: %w", v.Path, err)
	}
	for _, s := range info.Snapshots {
		if s.Name == dp.Ref {
			return true, nil
		}
	}
	return false, nil
}

// fileCopy keeps a point as a file beside the volume, in .strata-points/:
// a reflink (O(1), shares extents) or a sparse copy. Restoring materialises
// the point under a temporary name and renames it over the live image.
type fileCopy struct{ reflink bool }

func (m fileCopy) name() string {
	if m.reflink {
		return MethodReflink
	}
	return MethodCopy
}

func (m fileCopy) plan(v storage.Volume, uid string) DiskPoint {
	ext := filepath.Ext(v.Path)
	ref := filepath.Join(filepath.Dir(v.Path), pointsDir, v.ID+"-"+uid+ext)
	return DiskPoint{VolumeID: v.ID, Volume: v.Name, Format: v.Format, Method: m.name(), Ref: ref}
}

func (m fileCopy) take(ctx context.Context, v storage.Volume, dp *DiskPoint, prog storage.Progress) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dp.Ref), 0o700); err != nil {
		return err
	}
	if err := m.materialise(ctx, v.Path, dp.Ref, prog); err != nil {
		return err
	}
	if !m.reflink {
		info, err := image.InspectAs(dp.Ref, v.Format)
		if err != nil {
			return err
		}
		dp.Bytes = &info.AllocatedBytes
	}
	return image.SyncPath(filepath.Dir(dp.Ref))
}

// move makes a point of the live image itself (DiskPoint.Moved, planned
// so before the point is recorded): the image is renamed into the point,
// and the live name holds nothing until the rollback that replaces it puts
// the restored image there (restoreStep.moveTo). No guest started by hand
// after a crash can open, and write over, the point's only copy.
func (m fileCopy) move(_ context.Context, v storage.Volume, dp *DiskPoint, _ storage.Progress) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dp.Ref), 0o700); err != nil {
		return err
	}
	info, err := image.InspectAs(v.Path, v.Format)
	if err != nil {
		return err
	}
	dp.Bytes = &info.AllocatedBytes
	if err := os.Rename(v.Path, dp.Ref); err != nil {
		return fmt.Errorf("move the image of volume %q into its pre-rollback point: %w", v.Name, err)
	}
	crashpoint("rollback:copy-moved")
	if err := image.SyncPath(filepath.Dir(dp.Ref)); err != nil {
		return err
	}
	return image.SyncPath(filepath.Dir(v.Path))
}

// materialise makes dst a copy of src: a reflink if asked and possible,
// else a sparse copy after a free-space check. A fallback from reflink is
// logged at debug level (callers report the method they got).
func (m fileCopy) materialise(ctx context.Context, src, dst string, prog storage.Progress) error {
	if m.reflink {
		err := image.Reflink(src, dst)
		if err == nil || !errors.Is(err, storage.ErrNotSupported) {
			return err
		}
		log.Debug().Str("image", src).Msg("reflink is not possible here; falling back to a full copy")
	}
	if err := checkSpace(src, filepath.Dir(dst)); err != nil {
		return err
	}
	return image.CopyData(ctx, src, dst, prog)
}

// restore materialises the point under a temporary name of its own
// (IMAGE.strata-rollback-UID: never another operation's), gives it the
// live image's owner, mode and extended attributes (a hypervisor running
// as another user, or confined by an SELinux label, must still open it),
// and renames it over the live image.
func (m fileCopy) restore(ctx context.Context, v storage.Volume, dp DiskPoint, s restoreStep) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	if tmp := leftRestored(v, s.done); tmp != "" {
		if err := inuse.Keep(ctx, tmp); err != nil {
			return err
		}
		return m.commitRestored(v, tmp, s)
	}
	tmp := v.Path + rollbackSuffix + "-" + newUID()
	if err := m.materialise(ctx, dp.Ref, tmp, s.prog); err != nil {
		os.Remove(tmp)
		return err
	}
	crashpoint("rollback:copy-made")
	// The image the new one replaces gives it its identity; it may already
	// have been moved into its point by an interrupted run of this step.
	like := v.Path
	if _, err := os.Lstat(like); err != nil && s.moveTo != "" {
		like = s.moveTo
	}
	if err := keepIdentity(like, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	// Held before it can be found under the live name.
	err := inuse.Keep(ctx, tmp)
	var fp fingerprint
	if err == nil {
		fp, _, err = fingerprintOf(tmp)
	}
	if err == nil {
		err = s.record(fp)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	crashpoint("rollback:copy-recorded")
	return m.commitRestored(v, tmp, s)
}

// leftRestored finds the restored image an interrupted run of this step
// left under its temporary name, in the state it recorded.
func leftRestored(v storage.Volume, done *fingerprint) string {
	if done == nil {
		return ""
	}
	left, _ := filepath.Glob(globEscape(v.Path) + rollbackSuffix + "-*")
	for _, tmp := range left {
		if fp, ok, err := fingerprintOf(tmp); err == nil && ok && fp == *done {
			return tmp
		}
	}
	return ""
}

func globEscape(p string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(p)
}

// commitRestored puts the restored image tmp under the live name, the live
// image moving into the pre-rollback point first where it is to.
func (fileCopy) commitRestored(v storage.Volume, tmp string, s restoreStep) error {
	if s.moveTo != "" {
		// The live image becomes the pre-rollback point's, unless an
		// interrupted run moved it already (then the live name holds
		// nothing, or an image this step restored).
		if _, err := os.Lstat(s.moveTo); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(v.Path, s.moveTo); err != nil && !errors.Is(err, os.ErrNotExist) {
				os.Remove(tmp)
				return fmt.Errorf("move the image of volume %q into its pre-rollback point: %w", v.Name, err)
			}
		}
	}
	if err := os.Rename(tmp, v.Path); err != nil {
		os.Remove(tmp)
		return err
	}
	if s.moveTo != "" {
		if err := image.SyncPath(filepath.Dir(s.moveTo)); err != nil {
			return err
		}
	}
	return image.SyncPath(filepath.Dir(v.Path))
}

// keepIdentity gives tmp, about to be renamed over live, live's owner,
// mode and extended attributes: a hypervisor running as another user, or
// confined by an SELinux label (sVirt), must still open the image. Never
// those of a file a symbolic link leads to: whoever planted the link would
// get a copy of the image owned as /etc/shadow is, or worse, as they are.
func keepIdentity(live, tmp string) error {
	st, err := os.Lstat(live)
	if err != nil {
		return nil // nothing to keep
	}
	if !st.Mode().IsRegular() {
		return storage.Errorf(storage.ErrPrecondition, "%q is no longer a regular file (%s): strata does not take the owner and mode of what it is now; put the image back", live, st.Mode().Type())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(tmp, int(sys.Uid), int(sys.Gid)); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, st.Mode().Perm()); err != nil {
		return err
	}
	return copyXattrs(live, tmp)
}

func (fileCopy) remove(_ context.Context, v storage.Volume, dp DiskPoint) error {
	if dp.Moved && v.Path != "" {
		if _, err := os.Lstat(v.Path); errors.Is(err, os.ErrNotExist) {
			// The point holds the live image, moved there by a rollback
			// that never put another in its place: it goes back, never
			// away.
			if err := os.Rename(dp.Ref, v.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("put the image of volume %q back: %w", v.Name, err)
			}
			return image.SyncPath(filepath.Dir(v.Path))
		}
	}
	if err := os.Remove(dp.Ref); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (fileCopy) exists(_ context.Context, _ storage.Volume, dp DiskPoint) (bool, error) {
	_, err := os.Stat(dp.Ref)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// skipSpaceCheck is a test-only switch (STRATA_TEST_SKIP_SPACE_CHECK=1)
// that lets a copy run into a real ENOSPC.
var skipSpaceCheck = os.Getenv("STRATA_TEST_SKIP_SPACE_CHECK") == "1"

// checkSpace refuses a copy that cannot fit: the free space where it goes
// must hold the source's allocated bytes.
func checkSpace(src, dstDir string) error {
	if skipSpaceCheck {
		return nil
	}
	info, err := image.InspectAs(src, storage.FormatRaw) // the bytes it holds, whatever they say
	if err != nil {
		return err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dstDir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * fs.Bsize; info.AllocatedBytes > free {
		return storage.Errorf(storage.ErrPrecondition, "not enough space for a full copy of %q: it holds %s and %q has %s free; free space, or move the volume to a reflink pool (XFS reflink=1, btrfs) or to qcow2 for O(1) restore points",
			src, storage.FormatSize(info.AllocatedBytes), dstDir, storage.FormatSize(free))
	}
	return nil
}

// copyXattrs copies the extended attributes of src to dst (e.g.
// security.selinux, the label sVirt gives a guest's image). A filesystem
// without xattrs has nothing to copy.
func copyXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(src, buf)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			return fmt.Errorf("read xattr %s of %q: %w", name, src, err)
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(src, name, val); err != nil {
			return fmt.Errorf("read xattr %s of %q: %w", name, src, err)
		}
		if err := unix.Lsetxattr(dst, name, val[:vsize], 0); err != nil {
			return fmt.Errorf("copy xattr %s to %q: %w", name, dst, err)
		}
	}
	return nil
}
