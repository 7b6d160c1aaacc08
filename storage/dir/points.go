package dir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/qcow2"
)

// Point methods of the dir driver (recorded in the catalog).
const (
	MethodQcow2   = "qcow2-internal"
	MethodReflink = "reflink"
	MethodCopy    = "copy"
)

// A method captures, restores and removes one disk's state.
type method interface {
	// plan names where the point's data will be (before anything is
	// written, so an interrupted take can be cleaned up).
	plan(v storage.Volume, uid string, o storage.PointOptions) storage.PointRef
	take(ctx context.Context, v storage.Volume, ref *storage.PointRef, prog storage.Progress) error
	// restore puts the point's state back under the live name; run again
	// after an interruption, it finishes what it had begun.
	restore(ctx context.Context, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error
	// remove deletes the point's data; absent data is not an error.
	remove(ctx context.Context, v storage.Volume, ref storage.PointRef) error
	// exists tells whether the point's data is there.
	exists(ctx context.Context, v storage.Volume, ref storage.PointRef) (bool, error)
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

var pointMethods = []storage.PointMethod{
	{Name: MethodQcow2, Formats: []storage.Format{storage.FormatQcow2}, O1Take: true, O1Restore: true, InVolume: true, Live: storage.LiveInternal},
	{Name: MethodReflink, Formats: []storage.Format{storage.FormatRaw}, O1Take: true, O1Restore: true, Live: storage.LiveClone},
	{Name: MethodCopy, Formats: []storage.Format{storage.FormatRaw}, ReplacesLive: true, Live: storage.LiveBackup},
}

// PointMethods implements storage.Driver.
func (Driver) PointMethods() []storage.PointMethod { return pointMethods }

// probes caches the capabilities of each directory holding volumes,
// probed once per directory per process.
var probes sync.Map // directory → storage.Capabilities

// capsOf is the one rule for a capability probe: what the filesystem
// holding d can do, or, when the probe fails (a full or read-only
// filesystem, where it matters most that a command still says what is
// wrong), no capability at all, with a warning. Claiming none is always
// safe: every plan then takes the full-copy way, which checks its space
// and says what is short.
func capsOf(d string) storage.Capabilities {
	if caps, ok := probes.Load(d); ok {
		return caps.(storage.Capabilities)
	}
	caps, err := Probe(d)
	if err != nil {
		log.Warn().Str("dir", d).Err(err).Msg("cannot probe what the filesystem can do (is it full or read-only?): assuming no reflink, so copies are full copies")
		caps = storage.Capabilities{}
	}
	probes.Store(d, caps)
	return caps
}

// copyWarned: volumes (by ID) this process has warned about full-copy
// points.
var copyWarned sync.Map

// PlanPoint implements storage.Driver: the override if it applies, else
// qcow2-internal for qcow2, reflink where the filesystem clones, else a
// sparse copy.
func (Driver) PlanPoint(_ context.Context, _ storage.Pool, v storage.Volume, uid string, o storage.PointOptions) (storage.PointRef, error) {
	name, err := choose(v, o.Method)
	if err != nil {
		return storage.PointRef{}, err
	}
	if _, said := copyWarned.Load(v.ID); name == MethodCopy && o.Method == "" && !said {
		// Once per volume and command: snapshot run takes several points.
		copyWarned.Store(v.ID, true)
		log.Warn().Str("volume", v.Name).Msg("restore points of this raw volume are full copies: for O(1) points use a qcow2 volume or a pool on XFS (reflink=1) or btrfs")
	}
	meth, _ := methodByName(name)
	ref := meth.plan(v, uid, o)
	// Recorded before the take, so that undoing an interrupted one knows
	// the point's file may be the live image.
	ref.Moved = name == MethodCopy && o.ReplacingLive
	if name == MethodCopy && !ref.Moved {
		// The guardrail before anything is recorded (or a guest paused
		// or saved for the point); the copy checks again.
		// (The pool's directory: .strata-points in it may not exist yet.)
		if err := checkSpace(v.Path, filepath.Dir(v.Path)); err != nil {
			return storage.PointRef{}, err
		}
	}
	return ref, nil
}

func choose(v storage.Volume, override string) (string, error) {
	if v.Device {
		return "", storage.Errorf(storage.ErrNotSupported, "volume %q is the block device %q: the dir driver takes restore points of image files only; copy it into a pool with 'strata volume import --copy'", v.Name, v.Path)
	}
	if v.Format != storage.FormatRaw && v.Format != storage.FormatQcow2 {
		return "", storage.Errorf(storage.ErrNotSupported, "volume %q is %s media, which has no restore points", v.Name, v.Format)
	}
	switch override {
	case "":
		if v.Format == storage.FormatQcow2 {
			return MethodQcow2, nil // on any filesystem: no probe needed
		}
		if capsOf(filepath.Dir(v.Path)).Reflink {
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
		if !capsOf(filepath.Dir(v.Path)).Reflink {
			return "", storage.Errorf(storage.ErrInvalid, "method reflink needs a filesystem that supports FICLONE (XFS with reflink=1, btrfs); %q is on one that does not", v.Name)
		}
	default:
		_, err := methodByName(override)
		return "", err
	}
	return override, nil
}

// TakePoint implements storage.Driver.
func (Driver) TakePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref *storage.PointRef, prog storage.Progress) error {
	meth, err := methodByName(ref.Method)
	if err != nil {
		return err
	}
	if fc, ok := meth.(fileCopy); ok && ref.Moved {
		return fc.move(ctx, v, ref, prog)
	}
	return meth.take(ctx, v, ref, prog)
}

// CheckRestore implements storage.Driver.
func (Driver) CheckRestore(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	if ref.Method != MethodQcow2 && v.Format == storage.FormatQcow2 {
		names, err := qcow2.Snapshots(ctx, v.Path)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return storage.Errorf(storage.ErrPrecondition, "it holds qcow2 volume %q as a copy of its image: putting it back would discard the %d internal snapshots the image holds now (other restore points); delete those points first, or roll back to another point", v.Name, len(names))
		}
	}
	if ref.Method == MethodCopy {
		// A full copy is restored by copying the point back: refused now,
		// not halfway, if it cannot fit.
		return checkSpace(ref.Ref, filepath.Dir(v.Path))
	}
	return nil
}

// RestorePoint implements storage.Driver.
func (Driver) RestorePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error {
	meth, err := methodByName(ref.Method)
	if err != nil {
		return err
	}
	return meth.restore(ctx, v, ref, s)
}

// PutBack implements storage.Driver: a rename (O(1), no space needed: a
// rollback that failed for lack of space can always be undone).
func (Driver) PutBack(_ context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	if _, err := os.Lstat(ref.Ref); err != nil {
		return nil
	}
	if err := os.Rename(ref.Ref, v.Path); err != nil {
		return fmt.Errorf("put the image of volume %q back: %w", v.Name, err)
	}
	return image.SyncPath(filepath.Dir(v.Path))
}

// RemovePoint implements storage.Driver. The internal snapshot of a
// volume whose record is gone went with its image.
func (Driver) RemovePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	meth, err := methodByName(ref.Method)
	if err != nil {
		return err
	}
	if ref.Method == MethodQcow2 && v.Path == "" {
		return nil
	}
	return meth.remove(ctx, v, ref)
}

// PointExists implements storage.Driver.
func (Driver) PointExists(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) (bool, error) {
	meth, err := methodByName(ref.Method)
	if err != nil {
		return false, err
	}
	return meth.exists(ctx, v, ref)
}

// SamePoint implements storage.Driver: file points by content; internal
// snapshots are never compared.
func (Driver) SamePoint(_ context.Context, _ storage.Pool, _ storage.Volume, a, b storage.PointRef) (bool, error) {
	if a.Method == MethodQcow2 || b.Method == MethodQcow2 {
		return false, nil
	}
	return image.SameContent(a.Ref, b.Ref)
}

// CleanRestores implements storage.Driver: the temporary restored images
// (IMAGE.strata-rollback-UID) of v.
func (Driver) CleanRestores(_ storage.Pool, v storage.Volume) {
	// Glob fails only on a bad pattern, and globEscape makes none.
	left, _ := filepath.Glob(globEscape(v.Path) + RollbackSuffix + "-*")
	for _, tmp := range left {
		if err := os.Remove(tmp); err != nil {
			log.Warn().Err(err).Str("file", tmp).Msg("could not remove a restored copy an interrupted rollback left; nothing reads it, and the next recovery of the volume tries again")
			continue
		}
		log.Debug().Str("file", tmp).Msg("removed a restored copy an interrupted rollback left")
	}
}

func newUID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes instead)
	return hex.EncodeToString(b)
}

// qcow2Internal keeps points inside the image (qemu-img snapshot), so no
// backing chain grows and taking or applying one is O(1).
type qcow2Internal struct{}

// plan tags the internal snapshot strata-LABEL-UID (strata-12-before-sp3-
// 5f0c2a9e1b7d), so that `qemu-img snapshot -l` says which point it is.
// The UID keeps the tag unique: point numbers are per target, and one
// image may carry points of several (a guest's and its volume's own, or
// of two guests it served), while qemu-img accepts a tag twice and then
// applies the first. Points recorded before labels (strata-UID) keep
// their tags: a recorded Ref is opaque.
func (qcow2Internal) plan(_ storage.Volume, uid string, o storage.PointOptions) storage.PointRef {
	if l := tagLabel(o.Label); l != "" {
		return storage.PointRef{Method: MethodQcow2, Ref: "strata-" + l + "-" + uid}
	}
	return storage.PointRef{Method: MethodQcow2, Ref: "strata-" + uid}
}

// maxTagLabel bounds the label in a tag (qemu-img's listing stays one
// line; QEMU itself takes far longer names).
const maxTagLabel = 40

// tagLabel keeps a label's letters, digits, '.', '_' and '-' (ASCII),
// every other run of characters becomes one '-', and cuts it to
// maxTagLabel bytes: a tag safe in QMP, on a command line and in any
// terminal.
func tagLabel(label string) string {
	var b strings.Builder
	dash := false
	for _, r := range label {
		ok := r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
		switch {
		case ok && !(r == '-' && dash):
			b.WriteRune(r)
			dash = r == '-'
		case !ok && !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= maxTagLabel {
			break
		}
	}
	return strings.Trim(b.String()[:min(b.Len(), maxTagLabel)], "-.")
}

func (qcow2Internal) take(ctx context.Context, v storage.Volume, ref *storage.PointRef, _ storage.Progress) error {
	if err := image.VerifyImage(v); err != nil { // qemu-img follows links
		return err
	}
	return inuse.Without(ctx, v.Path, func() error {
		return qcow2.CreateSnapshot(ctx, v.Path, ref.Ref)
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
func (qcow2Internal) restore(ctx context.Context, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	applying := v.Path + ApplyingSuffix
	_, err := os.Lstat(applying)
	resumed := err == nil
	if resumed {
		if _, err := os.Lstat(v.Path); err == nil {
			return storage.Errorf(storage.ErrPrecondition, "volume %q has both an image %q and one being rolled back (%q): strata cannot tell which is the disk; move the one that is not aside, then run strata doctor --repair", v.Name, v.Path, applying)
		}
		if err := inuse.Without(ctx, applying, func() error { _, err := qcow2.Repair(ctx, applying); return err }); err != nil {
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
	storage.Crashpoint("rollback:qcow2-moved")
	if err := inuse.Without(ctx, applying, func() error {
		return qcow2.ApplySnapshot(ctx, applying, ref.Ref)
	}); err != nil {
		return err
	}
	storage.Crashpoint("rollback:qcow2-applied")
	fp, _, err := storage.FingerprintOf(applying)
	if err != nil {
		return err
	}
	if err := s.Record(fp); err != nil {
		return err
	}
	if err := os.Rename(applying, v.Path); err != nil {
		return fmt.Errorf("move the image of volume %q back: %w", v.Name, err)
	}
	return image.SyncPath(filepath.Dir(v.Path))
}

func (m qcow2Internal) remove(ctx context.Context, v storage.Volume, ref storage.PointRef) error {
	if err := image.VerifyImage(v); err != nil { // qemu-img follows links
		return err
	}
	ok, err := m.exists(ctx, v, ref)
	if err != nil || !ok {
		return err
	}
	return inuse.Without(ctx, v.Path, func() error {
		return qcow2.DeleteSnapshot(ctx, v.Path, ref.Ref)
	})
}

func (qcow2Internal) exists(ctx context.Context, v storage.Volume, ref storage.PointRef) (bool, error) {
	if _, err := os.Stat(v.Path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return qcow2.HasSnapshot(ctx, v.Path, ref.Ref, true)
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

func (m fileCopy) plan(v storage.Volume, uid string, _ storage.PointOptions) storage.PointRef {
	ext := filepath.Ext(v.Path)
	ref := filepath.Join(filepath.Dir(v.Path), PointsDir, v.ID+"-"+uid+ext)
	return storage.PointRef{Method: m.name(), Ref: ref}
}

func (m fileCopy) take(ctx context.Context, v storage.Volume, ref *storage.PointRef, prog storage.Progress) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	if err := atomicfile.MkdirAll(filepath.Dir(ref.Ref), 0o700); err != nil {
		return err
	}
	if err := m.materialise(ctx, v.Path, ref.Ref, prog); err != nil {
		return err
	}
	if !m.reflink {
		info, err := image.InspectAs(ref.Ref, v.Format)
		if err != nil {
			return err
		}
		ref.Bytes = &info.AllocatedBytes
	}
	return image.SyncPath(filepath.Dir(ref.Ref))
}

// move makes a point of the live image itself (PointRef.Moved, planned
// so before the point is recorded): the image is renamed into the point,
// and the live name holds nothing until the rollback that replaces it puts
// the restored image there (RestoreStep.MoveTo). No guest started by hand
// after a crash can open, and write over, the point's only copy.
func (m fileCopy) move(_ context.Context, v storage.Volume, ref *storage.PointRef, _ storage.Progress) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	if err := atomicfile.MkdirAll(filepath.Dir(ref.Ref), 0o700); err != nil {
		return err
	}
	info, err := image.InspectAs(v.Path, v.Format)
	if err != nil {
		return err
	}
	ref.Bytes = &info.AllocatedBytes
	if err := os.Rename(v.Path, ref.Ref); err != nil {
		return fmt.Errorf("move the image of volume %q into its pre-rollback point: %w", v.Name, err)
	}
	storage.Crashpoint("rollback:copy-moved")
	if err := image.SyncPath(filepath.Dir(ref.Ref)); err != nil {
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
func (m fileCopy) restore(ctx context.Context, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error {
	if err := image.VerifyImage(v); err != nil {
		return err
	}
	if tmp := leftRestored(v, s.Done); tmp != "" {
		if err := inuse.Keep(ctx, tmp); err != nil {
			return err
		}
		return m.commitRestored(v, tmp, s)
	}
	tmp := v.Path + RollbackSuffix + "-" + newUID()
	if err := m.materialise(ctx, ref.Ref, tmp, s.Progress); err != nil {
		os.Remove(tmp)
		return err
	}
	storage.Crashpoint("rollback:copy-made")
	// The image the new one replaces gives it its identity; it may already
	// have been moved into its point by an interrupted run of this step.
	like := v.Path
	if _, err := os.Lstat(like); err != nil && s.MoveTo != "" {
		like = s.MoveTo
	}
	if err := keepIdentity(like, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	// Held before it can be found under the live name.
	err := inuse.Keep(ctx, tmp)
	var fp storage.Fingerprint
	if err == nil {
		fp, _, err = storage.FingerprintOf(tmp)
	}
	if err == nil {
		err = s.Record(fp)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	storage.Crashpoint("rollback:copy-recorded")
	return m.commitRestored(v, tmp, s)
}

// leftRestored finds the restored image an interrupted run of this step
// left under its temporary name, in the state it recorded.
func leftRestored(v storage.Volume, done *storage.Fingerprint) string {
	if done == nil {
		return ""
	}
	left, _ := filepath.Glob(globEscape(v.Path) + RollbackSuffix + "-*") // no bad pattern: escaped
	for _, tmp := range left {
		if fp, ok, err := storage.FingerprintOf(tmp); err == nil && ok && fp == *done {
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
func (fileCopy) commitRestored(v storage.Volume, tmp string, s storage.RestoreStep) error {
	if s.MoveTo != "" {
		// The live image becomes the pre-rollback point's, unless an
		// interrupted run moved it already (then the live name holds
		// nothing, or an image this step restored).
		if _, err := os.Lstat(s.MoveTo); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(v.Path, s.MoveTo); err != nil && !errors.Is(err, os.ErrNotExist) {
				os.Remove(tmp)
				return fmt.Errorf("move the image of volume %q into its pre-rollback point: %w", v.Name, err)
			}
		}
	}
	if err := os.Rename(tmp, v.Path); err != nil {
		os.Remove(tmp)
		return err
	}
	if s.MoveTo != "" {
		if err := image.SyncPath(filepath.Dir(s.MoveTo)); err != nil {
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
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing to keep
	}
	if err != nil {
		return fmt.Errorf("read the owner and mode of %q: %w", live, err)
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

func (fileCopy) remove(_ context.Context, v storage.Volume, ref storage.PointRef) error {
	if ref.Moved && v.Path != "" {
		if _, err := os.Lstat(v.Path); errors.Is(err, os.ErrNotExist) {
			// The point holds the live image, moved there by a rollback
			// that never put another in its place: it goes back, never
			// away.
			if err := os.Rename(ref.Ref, v.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("put the image of volume %q back: %w", v.Name, err)
			}
			return image.SyncPath(filepath.Dir(v.Path))
		}
	}
	if err := os.Remove(ref.Ref); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (fileCopy) exists(_ context.Context, _ storage.Volume, ref storage.PointRef) (bool, error) {
	_, err := os.Stat(ref.Ref)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// checkSpace refuses a copy that cannot fit: the free space where it goes
// must hold the source's allocated bytes.
func checkSpace(src, dstDir string) error {
	if storage.SkipSpaceCheck {
		return nil
	}
	info, err := image.InspectAs(src, storage.FormatRaw) // the bytes it holds, whatever they say
	if err != nil {
		return err
	}
	free, err := storage.FreeIn(dstDir)
	if err != nil {
		return err
	}
	if info.AllocatedBytes > free {
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
