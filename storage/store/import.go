package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/run"
)

// ImportOptions describes an existing image or device to register.
type ImportOptions struct {
	Path string
	Name string // default: the file name without extension
	Copy bool   // copy into Pool instead of registering in place
	Pool string
}

// ImportVolume registers an existing image file or block device, in place
// or (Copy) as a sparse copy in a pool.
func (s *Store) ImportVolume(ctx context.Context, o ImportOptions, prog storage.Progress) (storage.VolumeInfo, error) {
	if o.Path == "" {
		return storage.VolumeInfo{}, storage.Errorf(storage.ErrInvalid, "give the path of an image file or block device to import")
	}
	abs, err := filepath.Abs(o.Path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		if os.IsNotExist(err) {
			return storage.VolumeInfo{}, storage.Errorf(storage.ErrNotFound, "%q does not exist: give the path of an image file or block device", o.Path)
		}
		return storage.VolumeInfo{}, storage.Errorf(storage.ErrInvalid, "invalid path %q: %w", o.Path, err)
	}
	if !o.Copy {
		if err := s.checkForeign(abs); err != nil {
			return storage.VolumeInfo{}, err
		}
	}
	info, err := image.Inspect(abs)
	if err != nil {
		return storage.VolumeInfo{}, err
	}
	if o.Name == "" {
		o.Name = strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
		if err := storage.ValidateName("volume", o.Name); err != nil {
			return storage.VolumeInfo{}, storage.Errorf(storage.ErrInvalid, "%q does not make a valid volume name: give one with --name", filepath.Base(abs))
		}
	}
	if err := storage.ValidateName("volume", o.Name); err != nil {
		return storage.VolumeInfo{}, err
	}
	if o.Copy && o.Pool == "" {
		o.Pool = catalog.DefaultPool
	}
	var pool storage.Pool
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		if _, err := tx.Volume(o.Name); err == nil {
			return storage.Errorf(storage.ErrExists, "volume %q already exists: choose another name with --name", o.Name)
		}
		if o.Pool == "" {
			return nil
		}
		var err error
		pool, err = tx.Pool(o.Pool)
		return err
	}); err != nil {
		return storage.VolumeInfo{}, err
	}
	v := storage.Volume{ID: dir.NewID(), Name: o.Name, Pool: o.Pool, Format: info.Format, Path: abs, Created: time.Now().UTC()}
	backing := resolveBacking(abs, info.BackingFile)
	if o.Copy {
		d, err := s.Driver(pool)
		if err != nil {
			return storage.VolumeInfo{}, err
		}
		v.Path = d.VolumePath(pool, v.ID, v.Format)
		if err := copyInto(ctx, abs, v.Path, pool, info, prog); err != nil {
			return storage.VolumeInfo{}, err
		}
		if backing != info.BackingFile {
			// A relative backing name would break in the new directory.
			if err := run.Run(ctx, nil, nil, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", backing, "-F", backingFormat(info), v.Path); err != nil {
				os.Remove(v.Path)
				return storage.VolumeInfo{}, err
			}
		}
	} else {
		v.Imported, v.Device = true, info.Device
	}
	v.Backing = backing
	if err := s.Catalog.Update(func(tx *catalog.Tx) error { return tx.AddVolume(v) }); err != nil {
		if o.Copy {
			os.Remove(v.Path)
		}
		return storage.VolumeInfo{}, err
	}
	log.Info().Str("volume", v.Name).Str("path", v.Path).Bool("copied", o.Copy).Msg("volume imported")
	return s.info(ctx, v, true)
}

func backingFormat(info image.Info) string {
	if info.BackingFormat != "" {
		return info.BackingFormat
	}
	return "raw"
}

// resolveBacking makes a qcow2 backing file name absolute (qemu resolves a
// relative one against the overlay's directory).
func resolveBacking(image, backing string) string {
	if backing == "" || strings.Contains(backing, ":") {
		return backing
	}
	if !filepath.IsAbs(backing) {
		backing = filepath.Join(filepath.Dir(image), backing)
	}
	// One spelling per file ("a/../b", symlinks), so that the volume it is
	// is found as the backing file of this one and kept from deletion.
	return storage.RealPath(backing)
}

// copyInto copies src sparsely into the pool: first into a temporary name,
// then renamed, so no half image ever carries a volume's name. The free
// space is checked first.
func copyInto(ctx context.Context, src, dst string, pool storage.Pool, info image.Info, prog storage.Progress) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(pool.Path, &fs); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "pool %q: %w", pool.Name, err)
	}
	need := info.AllocatedBytes
	if free := int64(fs.Bavail) * fs.Bsize; need > free {
		return storage.Errorf(storage.ErrPrecondition, "pool %q has %s free but %q holds %s of data: free space or copy into another pool (--pool)", pool.Name, storage.FormatSize(free), src, storage.FormatSize(need))
	}
	tmp := filepath.Join(filepath.Dir(dst), ".strata-tmp-"+filepath.Base(dst))
	if err := image.CopySparse(ctx, src, tmp, prog); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return image.SyncPath(filepath.Dir(dst))
}

// checkForeign refuses to register in place a file strata manages itself
// (the state home, a golden image, an iso, restore point data): as a
// volume it could be resized or purged under its owner.
func (s *Store) checkForeign(path string) error {
	return s.Catalog.View(func(tx *catalog.Tx) error { return tx.CheckUnmanaged(s.Catalog.Home(), path) })
}
