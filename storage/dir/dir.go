// Package dir is the storage driver for pools that are a directory on a
// local filesystem: volumes are image files named by their stable ID, and
// the driver owns all of their disk work (storage.Driver): restore point
// data, golden images, clones and flattening.
//
// On-disk layout of a pool directory (and of the folder of a volume
// imported in place):
//
//	ID.img, ID.qcow2, ID.iso     a volume or golden image (ID: 16 hex digits)
//	.strata-points/VOLID-UID.EXT a reflink or copy restore point of volume
//	                             VOLID (UID: the point's 12 hex digits;
//	                             EXT: the volume image's extension)
//	IMAGE.strata-rollback-UID    a restored copy about to replace IMAGE
//	IMAGE.strata-applying        a qcow2 image moved aside while qemu-img
//	                             applies one of its internal snapshots
//	.strata-tmp-[P-]NAME[~N]     a temporary: a flatten's copy (P:
//	                             flatten), a new image before its rename,
//	                             an iso build's staging directory
//	                             (storage/atomicfile's one scheme)
//	.strata-probe-*              a capability probe's scratch directory
//
// layout.go states these names as patterns (StrataName, PointDataName,
// PointVolumeID); doctor reads pool directories through them and removes
// nothing else.
//
// Point methods (PointMethods): qcow2-internal (qemu-img snapshot inside a
// qcow2 image; O(1), no backing chain grows), reflink (FICLONE of a raw
// image into .strata-points; O(1) on XFS reflink=1 and btrfs) and copy (a
// sparse full copy; a rollback moves the live image into the pre-rollback
// point instead of copying it). The method is chosen from a probe of the
// volume's directory (Probe), once per directory per process.
package dir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/qcow2"
	"github.com/strata-vm/strata/storage/run"
)

// Driver is the dir driver.
type Driver struct{}

var _ storage.Driver = Driver{}

// Name is the driver's name in pool records.
const Name = "dir"

// Names in the on-disk layout (see the package doc).
const (
	PointsDir      = ".strata-points"
	RollbackSuffix = ".strata-rollback"
	ApplyingSuffix = ".strata-applying"
)

var fsNames = map[int64]string{
	0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
	0x794c7630: "overlay", 0x2fc12fc1: "zfs", 0x6969: "nfs", 0xF2F52010: "f2fs",
	0x858458f6: "ramfs", 0xFF534D42: "cifs", 0x65735546: "fuse",
}

// Status reports the filesystem holding the pool, its space, and what it
// can do, probed with scratch files (FICLONE, a hole).
func (Driver) Status(ctx context.Context, p storage.Pool) (storage.PoolStatus, error) {
	st := storage.PoolStatus{Pool: p}
	var fs unix.Statfs_t
	if err := unix.Statfs(p.Path, &fs); err != nil {
		return st, storage.Errorf(storage.ErrPrecondition, "pool %q: cannot read its directory %q: %w", p.Name, p.Path, err)
	}
	st.Filesystem = fsNames[int64(fs.Type)]
	if st.Filesystem == "" {
		st.Filesystem = fmt.Sprintf("0x%x", fs.Type)
	}
	st.TotalBytes = fs.Blocks * uint64(fs.Bsize)
	st.FreeBytes = fs.Bavail * uint64(fs.Bsize)
	st.Capabilities = capsOf(p.Path) // none claimed where the probe fails
	return st, nil
}

// Probe measures what the filesystem holding dir can do, with scratch files
// in dir: FICLONE and a hole.
func Probe(dir string) (storage.Capabilities, error) {
	var caps storage.Capabilities
	tmp, err := os.MkdirTemp(dir, probePrefix)
	if err != nil {
		return caps, err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "a")
	if err := os.WriteFile(src, make([]byte, 4096), 0o600); err != nil {
		return caps, err
	}
	err = image.Reflink(src, filepath.Join(tmp, "b"))
	caps.Reflink = err == nil
	if err != nil && !errors.Is(err, storage.ErrNotSupported) {
		return caps, err
	}
	hole := filepath.Join(tmp, "c")
	if err := os.WriteFile(hole, nil, 0o600); err != nil {
		return caps, err
	}
	if err := os.Truncate(hole, 16<<20); err != nil {
		return caps, err
	}
	info, err := image.Inspect(hole)
	if err != nil {
		return caps, err
	}
	caps.Sparse = info.AllocatedBytes < 16<<20
	caps.O1Snapshots = caps.Reflink
	return caps, nil
}

// VolumePath implements storage.Driver.
func (Driver) VolumePath(p storage.Pool, id string, f storage.Format) string {
	ext := ".img"
	if f == storage.FormatQcow2 {
		ext = ".qcow2"
	}
	return filepath.Join(p.Path, id+ext)
}

// Create implements storage.Driver. A raw image is a sparse file: it is
// sized with ftruncate and nothing is written.
func (Driver) Create(ctx context.Context, _ storage.Pool, path string, f storage.Format, size int64) error {
	switch f {
	case storage.FormatRaw:
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create %q: %w", path, err)
		}
		if err := fh.Truncate(size); err != nil {
			fh.Close()
			os.Remove(path)
			if errors.Is(err, unix.EFBIG) || errors.Is(err, unix.EINVAL) {
				return storage.Errorf(storage.ErrInvalid, "size %d bytes is larger than the pool's filesystem allows for a file", size)
			}
			return fmt.Errorf("size %q: %w", path, err)
		}
		return fh.Close()
	case storage.FormatQcow2:
		if err := qcow2.Create(ctx, path, size, "", ""); err != nil {
			os.Remove(path)
			return err
		}
		return nil
	}
	return storage.Errorf(storage.ErrNotSupported, "cannot create volumes of format %q", f)
}

// Resize implements storage.Driver.
func (Driver) Resize(ctx context.Context, _ storage.Pool, path string, f storage.Format, size int64, shrink bool) error {
	switch f {
	case storage.FormatRaw:
		err := os.Truncate(path, size)
		if errors.Is(err, unix.EFBIG) || errors.Is(err, unix.EINVAL) {
			return storage.Errorf(storage.ErrInvalid, "size %d bytes is larger than the pool's filesystem allows for a file", size)
		}
		return err
	case storage.FormatQcow2:
		argv := []string{"qemu-img", "resize", "-q", "-f", "qcow2"}
		if shrink {
			argv = append(argv, "--shrink")
		}
		return run.Critical(ctx, append(argv, path, fmt.Sprint(size))...)
	}
	return storage.Errorf(storage.ErrNotSupported, "cannot resize volumes of format %q", f)
}

// Features implements storage.Driver.
func (Driver) Features(ctx context.Context, p storage.Pool) (storage.Features, error) {
	f := storage.Features{Points: pointMethods, LinkedClones: true, FreeSpace: true}
	f.FullCloneO1 = capsOf(p.Path).Reflink
	return f, nil
}

// FreeBytes implements storage.Driver.
func (Driver) FreeBytes(_ context.Context, p storage.Pool) (int64, error) {
	return storage.FreeIn(p.Path)
}

// Delete implements storage.Driver. An image that is no longer the file
// registered is left alone: forgetting a volume whose image was swapped
// is the way out, removing what is there now is not strata's to do.
func (Driver) Delete(_ context.Context, _ storage.Pool, v storage.Volume, purge bool) error {
	if err := image.VerifyImage(v); err != nil {
		log.Warn().Err(err).Msg("the volume is deleted from the catalog; what is at its image's path now is left alone")
		return nil
	}
	if v.Device {
		// Never removed (the store refuses --purge for one): no hint
		// to purge it.
		log.Info().Str("volume", v.Name).Str("path", v.Path).Msg("volume forgotten; its block device is kept (strata never removes one)")
		return nil
	}
	return image.Discard("volume", v.Name, v.Path, v.Imported, purge)
}

// Backing implements storage.Driver: a qcow2 overlay's backing file.
func (Driver) Backing(_ context.Context, _ storage.Pool, v storage.Volume) (string, error) {
	info, err := image.InspectAs(v.Path, v.Format)
	if err != nil {
		return "", err
	}
	return info.BackingFile, nil
}

// Fingerprint implements storage.Driver.
func (Driver) Fingerprint(_ storage.Pool, v storage.Volume) (storage.Fingerprint, bool, error) {
	return storage.FingerprintOf(v.Path)
}

// Locations implements storage.Driver: the live image, and the name a
// qcow2 image has while one of its snapshots is applied.
func (Driver) Locations(_ storage.Pool, v storage.Volume) []string {
	return []string{v.Path, v.Path + ApplyingSuffix}
}
