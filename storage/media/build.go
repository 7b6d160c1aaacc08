package media

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/image"
)

// BuildOptions describes an image to build from a directory.
type BuildOptions struct {
	Dir  string // its contents become the image's root
	Name string
	Pool string // default: the default pool
	// Label is the volume identifier; default: Name (up to 32 characters).
	Label     string
	Joliet    bool // Joliet names (Windows: long Unicode names)
	RockRidge bool // Rock Ridge (POSIX names, modes, symlinks, deep trees)
	// Boot is the path, inside Dir, of an El Torito no-emulation boot image
	// for BIOS (e.g. isolinux/isolinux.bin); "" for a non-bootable image.
	Boot string
	// BootCatalog is the path of the boot catalog in the image; default
	// boot.catalog (Rock Ridge) or BOOT.CAT. A file of that name in Dir
	// (an old catalog) is left out of the image.
	BootCatalog string
	// BootInfoTable patches the El Torito boot information table into
	// bytes 8-63 of the boot image in the image (isolinux needs it); the
	// file in Dir is not changed.
	BootInfoTable bool
}

// maxExtent is the largest file one ISO9660 extent holds; go-diskfs v1.9.4
// writes no multi-extent files.
const maxExtent = 1<<32 - 1

// Build makes an ISO9660 image from a directory with go-diskfs and
// registers it. The directory is copied to a staging directory in the pool
// first, because go-diskfs removes the tree it builds from; the source is
// only read.
func (mg *Manager) Build(ctx context.Context, o BuildOptions, prog storage.Progress) (Medium, error) {
	prog = progressOr(prog)
	pl, err := mg.planBuild(ctx, o)
	if err != nil {
		return Medium{}, err
	}
	o = pl.o
	m := Medium{ID: storage.NewID(), Name: o.Name, Pool: pl.pool.Name, Origin: OriginBuild, Source: pl.src}
	var tmp string
	m.Path, tmp = imagePaths(pl.pool, m.ID)
	stage := atomicfile.Path(filepath.Join(pl.pool.Path, m.ID+".d"), "") // a staging directory for ID.iso
	if err := os.Mkdir(stage, 0o700); err != nil {
		return m, fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage) // ours; go-diskfs usually removed it already
	if err := stageTree(ctx, pl.src, stage, o.RockRidge, pl.skip, pl.tree.bytes, prog); err != nil {
		if storage.NoSpace(err) || ctx.Err() != nil {
			return m, spaceError(pl.pool, stage, err)
		}
		return m, fmt.Errorf("copy %q to a staging directory: %w", o.Dir, err)
	}
	if m.Size, m.SHA256, err = pl.writeImage(ctx, stage, tmp, prog); err != nil {
		return m, err
	}
	m.BadSectors = []int64{}
	if err := describeInto(&m, tmp); err != nil {
		os.Remove(tmp)
		return m, err
	}
	m.Created = time.Now().UTC()
	if m, err = mg.commit(m, tmp); err != nil {
		return m, err
	}
	log.Debug().Str("iso", m.Name).Str("dir", pl.src).Int64("size", m.Size).Bool("bootable", m.Bootable).Msg("iso built")
	return m, nil
}

// buildPlan is what Build checked before writing anything: the options
// (with their defaults), the source directory, its boot configuration
// and survey, and the pool, with room for the image and a staged copy.
type buildPlan struct {
	o    BuildOptions
	src  string // the directory, absolute, symlinks resolved
	et   *iso9660.ElTorito
	skip string // an old boot catalog in src, left out
	tree treeStats
	pool storage.Pool
}

// planBuild checks the options and the directory and chooses the pool.
func (mg *Manager) planBuild(ctx context.Context, o BuildOptions) (buildPlan, error) {
	if err := storage.ValidateName("iso", o.Name); err != nil {
		return buildPlan{}, err
	}
	if o.Label == "" {
		o.Label = o.Name[:min(len(o.Name), 32)]
	}
	if err := checkBuildOptions(o); err != nil {
		return buildPlan{}, err
	}
	pl := buildPlan{o: o}
	var err error
	if pl.src, err = buildSource(o.Dir); err != nil {
		return buildPlan{}, err
	}
	if o.Boot != "" {
		if pl.et, pl.skip, err = bootConfig(pl.src, o); err != nil {
			return buildPlan{}, err
		}
	}
	if pl.tree, err = survey(pl.src, o.RockRidge, o.Joliet, pl.skip); err != nil {
		return buildPlan{}, err
	}
	if pl.pool, err = mg.newMediumPool(o.Name, o.Pool); err != nil {
		return buildPlan{}, err
	}
	if inside(absPath(pl.pool.Path), pl.src) {
		return buildPlan{}, storage.Errorf(storage.ErrInvalid, "pool %q (%s) is inside %q, so the build would copy its own staging files: build into a pool elsewhere (--pool)", pl.pool.Name, pl.pool.Path, o.Dir)
	}
	estimate := pl.tree.estimate(o.Joliet, o.Boot != "")
	if err := checkSpace(ctx, pl.pool, estimate+pl.tree.bytes, fmt.Sprintf("building from %q (the image, about %s, and a staged copy of the directory, %s)", o.Dir, storage.FormatSize(estimate), storage.FormatSize(pl.tree.bytes))); err != nil {
		return buildPlan{}, err
	}
	return pl, nil
}

// checkBuildOptions refuses options that contradict each other.
func checkBuildOptions(o BuildOptions) error {
	if err := validateLabel(o.Label); err != nil {
		return err
	}
	if o.Boot == "" && (o.BootCatalog != "" || o.BootInfoTable) {
		return storage.Errorf(storage.ErrInvalid, "--boot-catalog and --boot-info-table apply to a bootable image: give --boot FILE too")
	}
	if o.Joliet && !o.RockRidge {
		return storage.Errorf(storage.ErrInvalid, "a Joliet image carries Rock Ridge too (strata names its Joliet tree from the Rock Ridge one; Windows ignores Rock Ridge): keep Rock Ridge, or build a bare ISO9660 image with --plain")
	}
	if o.Dir == "" {
		return storage.Errorf(storage.ErrInvalid, "give the directory whose contents become the image")
	}
	return nil
}

// buildSource resolves the directory to build from: absolute, symlinks
// resolved, and a directory.
func buildSource(dir string) (string, error) {
	src, err := filepath.Abs(dir)
	if err == nil {
		src, err = filepath.EvalSymlinks(src)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", storage.Errorf(storage.ErrNotFound, "directory %q does not exist: give the directory whose contents become the image", dir)
		}
		return "", storage.Errorf(storage.ErrInvalid, "invalid directory %q: %w", dir, err)
	}
	if st, err := os.Stat(src); err != nil {
		return "", openError(dir, "a directory", err)
	} else if !st.IsDir() {
		return "", storage.Errorf(storage.ErrInvalid, "%q is not a directory: iso build takes a directory whose contents become the image (import an image file with 'strata iso import')", dir)
	}
	return src, nil
}

// writeImage builds the image at tmp from the staged tree and reads it
// back for its size and SHA-256; on failure tmp is removed.
func (pl buildPlan) writeImage(ctx context.Context, stage, tmp string, prog storage.Progress) (size int64, sum string, err error) {
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", fmt.Errorf("create %q: %w", tmp, err)
	}
	fail := func(err error) (int64, string, error) {
		out.Close()
		os.Remove(tmp)
		return 0, "", err
	}
	if err := pl.finalizeInto(out, stage, tmp); err != nil {
		return fail(err)
	}
	h, err := ReadHeader(out, tmp)
	if err != nil {
		return fail(fmt.Errorf("go-diskfs wrote an unreadable image: %w", err))
	}
	// go-diskfs may leave the file longer than the volume (the size given
	// to Create, or padding); the image is what the PVD says.
	if err := out.Truncate(h.Size()); err != nil {
		return fail(spaceError(pl.pool, tmp, err))
	}
	if err := out.Sync(); err != nil {
		return fail(spaceError(pl.pool, tmp, err))
	}
	res, err := copyHashed(ctx, out, h.Size(), discard{}, readPolicy{what: tmp, size: h.Size()}, prog)
	if err != nil {
		return fail(err)
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return 0, "", spaceError(pl.pool, tmp, err)
	}
	return h.Size(), res.SHA256, nil
}

// finalizeInto has go-diskfs write the image into out, then puts the
// boot record first and writes strata's Joliet tree.
func (pl buildPlan) finalizeInto(out *os.File, stage, tmp string) error {
	o := pl.o
	b := &fileBackend{f: out, writable: true}
	// DeepDirectories with Rock Ridge: directories nested deeper than 8
	// stay in place (as mkisofs -D does; Linux and xorriso read them),
	// because go-diskfs v1.9.4's Rock Ridge relocation turns the moved
	// directory into a file and loses its contents.
	if err := finalize(b, stage, iso9660.FinalizeOptions{
		RockRidge: o.RockRidge, Joliet: o.Joliet, VolumeIdentifier: o.Label, ElTorito: pl.et, DeepDirectories: o.RockRidge,
	}); err != nil {
		if b.werr != nil {
			return spaceError(pl.pool, tmp, b.werr)
		}
		return fmt.Errorf("build the image from %q: %w", o.Dir, err)
	}
	if b.werr != nil {
		return spaceError(pl.pool, tmp, b.werr)
	}
	if pl.et != nil {
		if err := bootRecordFirst(out); err != nil {
			return spaceError(pl.pool, tmp, err)
		}
	}
	if o.Joliet {
		if err := jolietFix(out, tmp, o.Label); err != nil {
			if errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrNotSupported) {
				return err
			}
			return spaceError(pl.pool, tmp, err)
		}
	}
	return nil
}

// finalize runs go-diskfs, turning a panic into an error.
func finalize(b *fileBackend, stage string, opts iso9660.FinalizeOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-diskfs failed: %v", r)
		}
	}()
	fsys, err := iso9660.Create(b, 0, 0, sectorSize, stage)
	if err != nil {
		return err
	}
	return fsys.Finalize(opts)
}

// inside tells whether p is dir or below it.
func inside(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func validateLabel(l string) error {
	if len(l) == 0 || len(l) > 32 {
		return storage.Errorf(storage.ErrInvalid, "invalid label %q: a label is 1 to 32 characters", l)
	}
	for _, c := range l {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ' ') {
			return storage.Errorf(storage.ErrInvalid, "invalid label %q: character %q is not allowed; use letters, digits, ' ', '.', '_' and '-'", l, c)
		}
	}
	return nil
}

// imagePath turns a path the user gives for a file in the image
// ("isolinux/isolinux.bin", "/boot.cat") into go-diskfs's form, refusing
// any that would leave the directory.
func imagePath(flag, p string) (string, error) {
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return "", storage.Errorf(storage.ErrInvalid, "invalid %s %q: give a path inside the directory, without '..'", flag, p)
		}
	}
	clean := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(p)), "/")
	if clean == "" {
		return "", storage.Errorf(storage.ErrInvalid, "invalid %s %q: give the path of a file inside the directory", flag, p)
	}
	return clean, nil
}

// bootConfig checks the boot options against the directory and returns
// go-diskfs's El Torito configuration, and the path of an old boot catalog
// in the directory to leave out ("" if none).
func bootConfig(src string, o BuildOptions) (*iso9660.ElTorito, string, error) {
	boot, err := imagePath("--boot", o.Boot)
	if err != nil {
		return nil, "", err
	}
	st, err := os.Lstat(filepath.Join(src, filepath.FromSlash(boot)))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, "", storage.Errorf(storage.ErrNotFound, "boot image %q not found in %q: give its path relative to the directory, e.g. isolinux/isolinux.bin", o.Boot, o.Dir)
	case err != nil:
		return nil, "", fmt.Errorf("boot image %q: %w", o.Boot, err)
	case !st.Mode().IsRegular():
		return nil, "", storage.Errorf(storage.ErrInvalid, "boot image %q is not a regular file", o.Boot)
	case st.Size() == 0:
		return nil, "", storage.Errorf(storage.ErrInvalid, "boot image %q is empty", o.Boot)
	case o.BootInfoTable && st.Size() < 64:
		return nil, "", storage.Errorf(storage.ErrInvalid, "boot image %q is %d bytes, too small for a boot information table (bytes 8-63): drop --boot-info-table", o.Boot, st.Size())
	}
	cat := o.BootCatalog
	if cat == "" {
		cat = "BOOT.CAT"
		if o.RockRidge {
			cat = "boot.catalog"
		}
	}
	if cat, err = imagePath("--boot-catalog", cat); err != nil {
		return nil, "", err
	}
	if cat == boot {
		return nil, "", storage.Errorf(storage.ErrInvalid, "--boot-catalog %q is the boot image itself: give another path", o.BootCatalog)
	}
	if st, err := os.Stat(filepath.Join(src, filepath.FromSlash(path.Dir(cat)))); err != nil || !st.IsDir() {
		return nil, "", storage.Errorf(storage.ErrInvalid, "invalid --boot-catalog %q: its directory %q does not exist in %q", cat, path.Dir(cat), o.Dir)
	}
	skip := ""
	if st, err := os.Lstat(filepath.Join(src, filepath.FromSlash(cat))); err == nil {
		if st.IsDir() {
			return nil, "", storage.Errorf(storage.ErrInvalid, "invalid --boot-catalog %q: it is a directory in %q", cat, o.Dir)
		}
		log.Info().Str("file", cat).Msg("the directory holds a file where the boot catalog goes (an old catalog?); the image gets a new catalog there instead")
		skip = cat
	}
	entry := &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation, BootFile: boot, BootTable: o.BootInfoTable}
	return &iso9660.ElTorito{BootCatalog: cat, Entries: []*iso9660.ElToritoEntry{entry}}, skip, nil
}

// treeStats is what a survey of the source directory found.
type treeStats struct {
	bytes, files, dirs, entries int64
	dataSectors                 int64
}

// estimate is an upper bound of the image size: data rounded to sectors,
// a sector or more per directory and its records (three times with Joliet),
// the system area, volume descriptors and path tables.
func (t treeStats) estimate(joliet, boot bool) int64 {
	trees := int64(1)
	if joliet {
		trees = 3 // go-diskfs's Joliet directories stay, unreferenced, beside strata's
	}
	dirSectors := trees * (t.dirs + (t.entries*256+sectorSize-1)/sectorSize)
	ptSectors := 2 * trees * (1 + t.dirs*64/sectorSize)
	n := 16 + 8 + t.dataSectors + dirSectors + ptSectors
	if boot {
		n++
	}
	return n * sectorSize
}

// survey checks the source tree before anything is written: file sizes
// one extent can hold, depth without Rock Ridge; it warns about entries an
// image cannot hold.
func survey(src string, rockRidge, joliet bool, skip string) (treeStats, error) {
	var t treeStats
	err := filepath.WalkDir(src, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return storage.Errorf(storage.ErrPrecondition, "cannot read %q: %w", p, err)
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			t.dirs++
			return nil
		}
		if filepath.ToSlash(rel) == skip {
			return nil
		}
		t.entries++
		if joliet && (d.IsDir() || d.Type().IsRegular()) {
			if why := checkJolietName(d.Name()); why != "" {
				return storage.Errorf(storage.ErrInvalid, "%q cannot be named in Joliet (what Windows reads): %s; rename it, or build without Joliet (--joliet=false)", filepath.ToSlash(rel), why)
			}
		}
		info, err := d.Info()
		if err != nil {
			return storage.Errorf(storage.ErrPrecondition, "cannot read %q: %w", p, err)
		}
		switch {
		case d.IsDir():
			t.dirs++
			// go-diskfs counts the root as depth 1 and refuses depth > 8
			// in plain ISO9660; with Rock Ridge, deep trees are kept.
			if depth := strings.Count(filepath.ToSlash(rel), "/") + 2; depth > 8 && !rockRidge {
				return storage.Errorf(storage.ErrInvalid, "directory %q is nested deeper than plain ISO9660 allows (8 levels): build with Rock Ridge (without --plain)", rel)
			}
		case info.Mode().IsRegular():
			if info.Size() > maxExtent {
				return storage.Errorf(storage.ErrNotSupported, "file %q is %s, larger than one ISO9660 extent holds (4 GiB - 1 byte), and go-diskfs does not split files into several extents: split the file, or make the image with 'xorriso -as mkisofs -iso-level 3'", rel, storage.FormatSize(info.Size()))
			}
			t.files++
			t.bytes += info.Size()
			t.dataSectors += (info.Size() + sectorSize - 1) / sectorSize
		case info.Mode()&os.ModeSymlink != 0:
			if !rockRidge {
				log.Warn().Str("file", rel).Msg("symlink left out: plain ISO9660 cannot hold symlinks; build with Rock Ridge (without --plain) to keep them")
			}
		default:
			log.Warn().Str("file", rel).Str("type", info.Mode().Type().String()).Msg("special file left out: an image holds files, directories and symlinks")
		}
		return nil
	})
	return t, err
}

// stageTree copies src to dst (an empty directory) with modes, owners (as
// root) and times, which go-diskfs records with Rock Ridge. It copies with
// io.Copy, which uses copy_file_range: a reflink on XFS and btrfs.
func stageTree(ctx context.Context, src, dst string, rockRidge bool, skip string, total int64, prog storage.Progress) error {
	type later struct {
		path string
		info iofs.FileInfo
	}
	var dirs []later
	prog.Start(total, "stage "+src)
	defer prog.Done()
	err := filepath.WalkDir(src, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if filepath.ToSlash(rel) == skip {
			return nil
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel != "." {
				if err := os.Mkdir(to, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, later{to, info})
		case info.Mode().IsRegular():
			// A scratch copy (go-diskfs reads it into the image):
			// sparse, not synced.
			if err := image.CopyFile(ctx, p, to, image.CopyOptions{}); err != nil {
				return err
			}
			prog.Add(info.Size())
			return setAttrs(to, info)
		case info.Mode()&os.ModeSymlink != 0 && rockRidge:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
			return setAttrs(to, info)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Directory times last: filling a directory changes its mtime.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setAttrs(dirs[i].path, dirs[i].info); err != nil {
			return err
		}
	}
	return nil
}

// setAttrs gives a staged entry the source's owner (when strata runs as
// root), mode and times. Symlinks keep their own mode.
func setAttrs(path string, info iofs.FileInfo) error {
	st, _ := info.Sys().(*syscall.Stat_t)
	if st != nil && os.Geteuid() == 0 {
		if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	symlink := info.Mode()&os.ModeSymlink != 0
	if !symlink {
		if err := os.Chmod(path, info.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
	}
	atime := unix.NsecToTimespec(info.ModTime().UnixNano())
	if st != nil {
		atime = unix.Timespec{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec}
	}
	ts := []unix.Timespec{atime, unix.NsecToTimespec(info.ModTime().UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// bootRecordFirst moves the El Torito boot record to sector 17. go-diskfs
// v1.9.4 writes the Joliet descriptor there and the boot record after it,
// but the El Torito specification puts the boot record at sector 17 and
// BIOS firmware (SeaBIOS) looks nowhere else. Volume descriptors are
// self-contained, so their order is free otherwise.
func bootRecordFirst(f *os.File) error {
	var vds [][]byte
	for i := 0; i < 8; i++ {
		sec := make([]byte, sectorSize)
		if _, err := f.ReadAt(sec, int64(17+i)*sectorSize); err != nil {
			return err
		}
		if string(sec[1:6]) != "CD001" || sec[0] == vdTerminator {
			break
		}
		vds = append(vds, sec)
	}
	at := -1
	for i, sec := range vds {
		if sec[0] == vdBoot {
			at = i
			break
		}
	}
	if at <= 0 {
		return nil
	}
	order := append([][]byte{vds[at]}, append(vds[:at:at], vds[at+1:]...)...)
	for i, sec := range order {
		if _, err := f.WriteAt(sec, int64(17+i)*sectorSize); err != nil {
			return err
		}
	}
	return nil
}
