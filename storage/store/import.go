package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/pattern"
	"github.com/strata-vm/strata/storage/qcow2"
)

// ImportOptions describes an existing image or device to register.
type ImportOptions struct {
	Path string
	Name string // default: the file name without extension
	Copy bool   // copy into Pool instead of registering in place
	Pool string
	// Format is the format the admin declares (a config's format=raw,
	// --format); "" lets strata find it (see ImportVolume).
	Format storage.Format
	// AllowBacking accepts a qcow2 image (declared as qcow2) whose backing
	// file lies outside strata's pools.
	AllowBacking bool
}

// ImportVolume registers an existing image file or block device, in place
// or (Copy) as a sparse copy in a pool.
//
// The format of an image strata did not make is the one declared; for a
// file strata made (a volume, restore point data, a golden image) it is
// the one strata recorded; only else is it probed from the content. A raw
// disk's guest can write any bytes at its start, a qcow2 header naming a
// host file as its backing file among them: probing must never turn such a
// disk into a qcow2 image that reads /etc/shadow. So a probed qcow2 image
// whose backing file lies outside strata's pools needs --format qcow2
// --allow-backing, and images whose data is elsewhere in ways strata cannot
// vouch for (an external data file, a json: backing name, a backing file
// in the state home) are refused. The image is read in full (header and
// partition table) before it is registered: an image strata cannot read
// leaves no volume behind.
func (s *Store) ImportVolume(ctx context.Context, o ImportOptions, prog storage.Progress) (storage.VolumeInfo, error) {
	pl, err := s.planImport(o)
	if err != nil {
		return storage.VolumeInfo{}, err
	}
	o, abs, info := pl.o, pl.abs, pl.info
	v := storage.Volume{ID: storage.NewID(), Name: o.Name, Pool: o.Pool, Format: info.Format, Path: abs, Created: time.Now().UTC()}
	backing := resolveBacking(abs, info.BackingFile)
	if o.Copy {
		if v.Path, err = s.copyImport(ctx, pl, v, backing, prog); err != nil {
			return storage.VolumeInfo{}, err
		}
	} else {
		v.Imported, v.Device = true, info.Device
	}
	v.Backing = backing
	vi, err := s.registerImport(ctx, v, o)
	if err != nil {
		if o.Copy {
			os.Remove(v.Path)
		}
		return storage.VolumeInfo{}, err
	}
	log.Debug().Str("volume", v.Name).Str("path", v.Path).Str("format", string(v.Format)).Bool("copied", o.Copy).Msg("volume imported")
	if !o.Copy && !v.Device {
		if w, why := image.WritableByOthers(abs); w {
			log.Warn().Str("volume", v.Name).Str("path", abs).Msgf("the image is registered in place but %s: whoever can write there can replace it (strata refuses to use a replaced image or one behind a symbolic link, but the guest's data is theirs to change); copy it into a pool with 'strata volume import --copy' to keep it safe", why)
		}
	}
	return vi, nil
}

// importPlan is what ImportVolume checked before writing anything: the
// options with their defaults (name, pool, format), the image's path
// and header, and the pool a copy goes to.
type importPlan struct {
	o    ImportOptions
	abs  string
	info image.Info
	pool storage.Pool
}

// planImport checks the path, the image and its backing file, the name
// and the pool.
func (s *Store) planImport(o ImportOptions) (importPlan, error) {
	abs, err := importPath(o.Path)
	if err != nil {
		return importPlan{}, err
	}
	if o.Format != "" && o.Format != storage.FormatRaw && o.Format != storage.FormatQcow2 {
		return importPlan{}, storage.Errorf(storage.ErrInvalid, "invalid format %q: use raw or qcow2", o.Format)
	}
	if !o.Copy {
		if err := s.checkForeign(abs); err != nil {
			return importPlan{}, err
		}
	}
	var trust backingTrust
	if err := s.Catalog.View(func(tx *catalog.Tx) (err error) {
		if o.Format, err = s.formatOf(tx, abs, o.Format); err != nil {
			return err
		}
		trust, err = s.trustOf(tx)
		return err
	}); err != nil {
		return importPlan{}, err
	}
	info, err := inspectDeclared(abs, o.Format)
	if err != nil {
		return importPlan{}, err
	}
	if err := trust.check(abs, info, o); err != nil {
		return importPlan{}, err
	}
	if o.Name == "" {
		o.Name = strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
		if err := storage.ValidateName("volume", o.Name); err != nil {
			return importPlan{}, storage.Errorf(storage.ErrInvalid, "%q does not make a valid volume name: give one with --name", filepath.Base(abs))
		}
	}
	if err := storage.ValidateName("volume", o.Name); err != nil {
		return importPlan{}, err
	}
	if o.Copy && o.Pool == "" {
		o.Pool = catalog.DefaultPool
	}
	pl := importPlan{o: o, abs: abs, info: info}
	err = s.Catalog.View(func(tx *catalog.Tx) error {
		if _, err := tx.Volume(o.Name); err == nil {
			return storage.Errorf(storage.ErrExists, "volume %q already exists: choose another name with --name", o.Name)
		}
		if o.Pool == "" {
			return nil
		}
		var err error
		pl.pool, err = tx.Pool(o.Pool)
		return err
	})
	return pl, err
}

// importPath is the path to import as strata records it: absolute, and
// with symlinks resolved except a logical volume's /dev/VG/LV.
func importPath(path string) (string, error) {
	if path == "" {
		return "", storage.Errorf(storage.ErrInvalid, "give the path of an image file or block device to import")
	}
	abs, err := filepath.Abs(path)
	if _, _, isLV := lvm.SplitDevPath(abs); isLV {
		// /dev/VG/LV is a logical volume's stable name (LVM keeps the
		// link; the dm-N it leads to changes with each activation).
		_, err = os.Stat(abs)
	} else if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		if os.IsNotExist(err) {
			return "", storage.Errorf(storage.ErrNotFound, "%q does not exist: give the path of an image file or block device", path)
		}
		return "", storage.Errorf(storage.ErrInvalid, "invalid path %q: %w", path, err)
	}
	return abs, nil
}

// copyImport copies the image into the plan's pool as volume v's image
// and returns its path; a relative backing name is made absolute.
func (s *Store) copyImport(ctx context.Context, pl importPlan, v storage.Volume, backing string, prog storage.Progress) (string, error) {
	d, err := s.Driver(pl.pool)
	if err != nil {
		return "", err
	}
	path := d.VolumePath(pl.pool, v.ID, v.Format)
	if err := copyInto(ctx, d, pl.abs, path, pl.pool, pl.info, prog); err != nil {
		return "", err
	}
	if backing != pl.info.BackingFile {
		// A relative backing name would break in the new directory.
		if err := qcow2.SetBacking(ctx, path, backing, backingFormat(pl.info)); err != nil {
			os.Remove(path)
			return "", err
		}
	}
	return path, nil
}

// registerImport reads the image as strata will (header, partition
// table) before it has a name, so that an image that fails here is not
// registered, then records the volume.
func (s *Store) registerImport(ctx context.Context, v storage.Volume, o ImportOptions) (storage.VolumeInfo, error) {
	id, err := image.Identify(v.Path)
	if err != nil {
		return storage.VolumeInfo{}, err
	}
	v.File = &id
	vi, err := s.describe(ctx, v, true)
	if err != nil {
		return storage.VolumeInfo{}, fmt.Errorf("%q was not imported: %w", o.Path, err)
	}
	if err := s.Catalog.Update(func(tx *catalog.Tx) error { return tx.AddVolume(v) }); err != nil {
		return storage.VolumeInfo{}, err
	}
	return vi, nil
}

// formatOf is the format an import takes: the declared one, else the one
// strata recorded for a file it made, else "" (probe). A declared format
// that contradicts strata's record is refused.
func (s *Store) formatOf(tx *catalog.Tx, path string, declared storage.Format) (storage.Format, error) {
	recorded, what, err := s.recordedFormat(tx, path)
	if err != nil || recorded == "" {
		return declared, err
	}
	if declared != "" && declared != recorded {
		return "", storage.Errorf(storage.ErrInvalid, "%q is %s, which strata keeps as a %s image: import it as %s (or leave --format out)", path, what, recorded, recorded)
	}
	return recorded, nil
}

// recordedFormat is the format strata knows a file it manages to have,
// and what the file is; "" for a file strata did not make.
func (s *Store) recordedFormat(tx *catalog.Tx, path string) (storage.Format, string, error) {
	vols, err := tx.Volumes()
	if err != nil {
		return "", "", err
	}
	for _, v := range vols {
		if v.Path == path {
			return v.Format, fmt.Sprintf("the image of volume %q", v.Name), nil
		}
	}
	// Restore point data is a copy of a raw volume (qcow2 volumes keep
	// their points inside the image).
	if filepath.Base(filepath.Dir(path)) == ".strata-points" {
		return storage.FormatRaw, "restore point data", nil
	}
	pools, err := tx.Pools()
	if err != nil {
		return "", "", err
	}
	for _, p := range pools {
		if filepath.Dir(path) != storage.RealPath(p.Path) {
			continue
		}
		// Images strata names by ID carry their format as extension
		// (volumes, golden images: dir.Driver.VolumePath).
		if m := poolImageName.FindStringSubmatch(filepath.Base(path)); m != nil {
			what := fmt.Sprintf("a file strata made in pool %q", p.Name)
			if m[1] == "qcow2" {
				return storage.FormatQcow2, what, nil
			}
			return storage.FormatRaw, what, nil
		}
	}
	home := storage.RealPath(s.Catalog.Home())
	if strings.HasPrefix(path, home+string(filepath.Separator)) {
		return "", "", storage.Errorf(storage.ErrInvalid, "%q is part of strata's state home, not an image: strata does not import it", path)
	}
	return "", "", nil
}

var poolImageName = pattern.New(`^[0-9a-f]{16}\.(img|qcow2)$`)

// inspectDeclared reads an image's header as the format says: a raw image
// is never probed, a declared qcow2 image must be one.
func inspectDeclared(path string, format storage.Format) (image.Info, error) {
	switch format {
	case storage.FormatRaw:
		return image.InspectAs(path, storage.FormatRaw)
	case storage.FormatQcow2:
		info, err := image.Inspect(path)
		if err == nil && info.Format != storage.FormatQcow2 {
			err = storage.Errorf(storage.ErrInvalid, "%q was declared qcow2 but it is not a qcow2 image (it has no qcow2 header): declare its format as it is", path)
		}
		return info, err
	}
	return image.Inspect(path)
}

// backingTrust is what an import needs to judge where a qcow2 image's data
// comes from: strata's pools, its registered volumes and its state home.
type backingTrust struct {
	home    string
	pools   []string
	volumes map[string]storage.Format // image path → recorded format
}

func (s *Store) trustOf(tx *catalog.Tx) (backingTrust, error) {
	t := backingTrust{home: storage.RealPath(s.Catalog.Home()), volumes: map[string]storage.Format{}}
	pools, err := tx.Pools()
	if err != nil {
		return t, err
	}
	for _, p := range pools {
		t.pools = append(t.pools, storage.RealPath(p.Path))
	}
	vols, err := tx.Volumes()
	for _, v := range vols {
		t.volumes[v.Path] = v.Format
	}
	return t, err
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// check refuses a qcow2 image whose data strata cannot vouch for.
func (t backingTrust) check(path string, info image.Info, o ImportOptions) error {
	if info.Format != storage.FormatQcow2 {
		return nil
	}
	convert := fmt.Sprintf("if you trust it, make a self-contained copy with 'qemu-img convert -O qcow2 %s NEW.qcow2' and import that", path)
	if info.DataFile != "" {
		return storage.Errorf(storage.ErrNotSupported, "%q is a qcow2 image whose data lives in the external data file %q, which strata does not follow (it could be any host file): %s", path, info.DataFile, convert)
	}
	if info.BackingFile == "" {
		return nil
	}
	if strings.HasPrefix(info.BackingFile, "json:") {
		return storage.Errorf(storage.ErrNotSupported, "%q is a qcow2 image whose backing file is given as a json: specification (%q), which can name any host file or protocol: %s", path, info.BackingFile, convert)
	}
	backing := resolveBacking(path, info.BackingFile)
	if !strings.Contains(backing, ":") && under(backing, t.home) && !t.inPool(backing) {
		return storage.Errorf(storage.ErrInvalid, "%q is a qcow2 image whose backing file %q is inside strata's state home (which holds the catalog and its console passwords): strata refuses it", path, info.BackingFile)
	}
	if info.BackingFormat == "" {
		return storage.Errorf(storage.ErrPrecondition, "%q is a qcow2 image whose backing file %q has no recorded format, so QEMU would probe it (a raw disk can look like anything): record it with 'qemu-img rebase -u -b %s -F raw|qcow2 %s', then import", path, info.BackingFile, info.BackingFile, path)
	}
	if f, ok := t.volumes[backing]; ok {
		if string(f) != info.BackingFormat {
			return storage.Errorf(storage.ErrPrecondition, "%q is a qcow2 image that reads its backing file %q (volume image) as %s, but strata keeps that volume as %s: fix it with 'qemu-img rebase -u -b %s -F %s %s'", path, backing, info.BackingFormat, f, backing, f, path)
		}
		return nil
	}
	if t.inPool(backing) {
		return nil
	}
	if o.Format != storage.FormatQcow2 || !o.AllowBacking {
		return storage.Errorf(storage.ErrPrecondition, "%q looks like a qcow2 image whose backing file %q lies outside strata's pools: a guest can write such a header at the start of a raw disk to read host files. If you made this image, declare it and allow its backing file: --format qcow2 --allow-backing (for guest import, format=qcow2 in the config and --allow-backing); if it is a raw disk, declare it raw", path, info.BackingFile)
	}
	log.Warn().Str("image", path).Str("backing", backing).Msg("importing a qcow2 image whose backing file lies outside strata's pools, as declared (--format qcow2 --allow-backing)")
	return nil
}

func (t backingTrust) inPool(path string) bool {
	for _, p := range t.pools {
		if under(path, p) {
			return true
		}
	}
	return false
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
func copyInto(ctx context.Context, d storage.Driver, src, dst string, pool storage.Pool, info image.Info, prog storage.Progress) error {
	need := info.AllocatedBytes
	err := storage.EnsureSpace(ctx, d, pool, need, func(free int64) error {
		return storage.Errorf(storage.ErrPrecondition, "pool %q has %s free but %q holds %s of data: free space or copy into another pool (--pool)", pool.Name, storage.FormatSize(free), src, storage.FormatSize(need))
	})
	if err != nil && !errors.Is(err, storage.ErrPrecondition) {
		return storage.Errorf(storage.ErrPrecondition, "pool %q: %w", pool.Name, err)
	}
	if err != nil {
		return err
	}
	tmp := atomicfile.Path(dst, "")
	if err := image.CopySparse(ctx, src, tmp, prog); err != nil {
		return err
	}
	if err := atomicfile.Commit(tmp, dst, atomicfile.Options{Durable: true}); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// checkForeign refuses to register in place a file strata manages itself
// (the state home, a golden image, an iso, restore point data): as a
// volume it could be resized or purged under its owner.
func (s *Store) checkForeign(path string) error {
	return s.Catalog.View(func(tx *catalog.Tx) error { return tx.CheckUnmanaged(s.Catalog.Home(), path) })
}
