package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/image"
)

// Catalog buckets: media by ID; media_names name → ID.
const (
	bucketMedia = "media"
	bucketNames = "media_names"
)

// Origins of a medium.
const (
	OriginCapture = "capture"
	OriginBuild   = "build"
	OriginImport  = "import"
)

// Medium is the catalog record of an install medium.
type Medium struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Pool holds the image; "" for a medium imported in place.
	Pool string `json:"pool"`
	Path string `json:"path"`
	// Label is the ISO9660 volume identifier; "" for a raw capture
	// without one.
	Label string `json:"label"`
	// Size is the image file's size in bytes.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Bootable: the image has an El Torito entry with its boot indicator.
	Bootable    bool        `json:"bootable"`
	BootEntries []BootEntry `json:"boot_entries"`
	Created     time.Time   `json:"created"`
	// Origin is how the medium came: capture, build or import.
	Origin string `json:"origin"`
	// Source is the device or file captured, the directory built from, or
	// the file imported.
	Source string `json:"source"`
	// BadSectors are the byte offsets of sectors that could not be read
	// and were zero-filled (capture with --allow-bad-sectors).
	BadSectors []int64 `json:"bad_sectors"`
	// Imported: the image is not strata's; delete keeps it unless purged.
	Imported bool `json:"imported"`
	// Extensions the image has: iso9660, rock_ridge, joliet, el_torito,
	// udf (in that order).
	Extensions []string `json:"extensions"`
	// Files lists the image's contents when asked for (Info with files):
	// the first of Trees, the one Linux reads.
	Files []File `json:"files,omitempty"`
	// Trees holds each tree the image gives when asked for (Info with
	// files): rock_ridge, joliet, iso9660, in that order, as present.
	Trees []Tree `json:"trees,omitempty"`
}

// File is one entry of an image's file tree.
type File struct {
	Path string `json:"path"` // absolute in the image, e.g. /isolinux/isolinux.bin
	Type string `json:"type"` // file, dir or symlink
	Size int64  `json:"size"`
	// Mode is the Rock Ridge mode ("-rw-r--r--"); "" in trees without
	// modes (Joliet, plain ISO9660).
	Mode string `json:"mode"`
	// Target is a symlink's target (Rock Ridge).
	Target string `json:"target,omitempty"`
}

// normalize makes lists empty rather than null in JSON.
func (m *Medium) normalize() {
	if m.BadSectors == nil {
		m.BadSectors = []int64{}
	}
	if m.BootEntries == nil {
		m.BootEntries = []BootEntry{}
	}
	if m.Extensions == nil {
		m.Extensions = []string{}
	}
}

// Manager does the media operations on one catalog.
type Manager struct {
	Catalog *catalog.Catalog
	// Users lists the guest definitions that use the medium called name
	// (hvm/registry.MediaUsers: guests live above this package); Delete
	// refuses to delete a medium in use, and refuses to run without it. It
	// runs inside the deleting transaction, so no guest can start using
	// the medium meanwhile.
	Users func(tx *catalog.Tx, name string) ([]string, error)
}

// New returns a Manager for the catalog c.
func New(c *catalog.Catalog) *Manager { return &Manager{Catalog: c} }

func notFound(name string) error {
	return storage.Errorf(storage.ErrNotFound, "iso %q not found: see 'strata iso list'", name)
}

// get returns the medium called name.
func get(tx *catalog.Tx, name string) (Medium, error) {
	var id string
	ok, err := tx.Get(bucketNames, name, &id)
	if err != nil {
		return Medium{}, err
	}
	if !ok {
		return Medium{}, notFound(name)
	}
	var m Medium
	ok, err = tx.Get(bucketMedia, id, &m)
	if err == nil && !ok {
		err = fmt.Errorf("catalog: iso %q points at missing record %q", name, id)
	}
	m.normalize()
	return m, err
}

func all(tx *catalog.Tx) ([]Medium, error) {
	out := []Medium{}
	err := tx.Scan(bucketMedia, "", func(_ string, raw []byte) error {
		var m Medium
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		m.normalize()
		out = append(out, m)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// add records a new medium; its name and path must be unused.
func add(tx *catalog.Tx, m Medium) error {
	if err := nameFree(tx, m.Name); err != nil {
		return err
	}
	if m.Pool != "" {
		if _, err := tx.Pool(m.Pool); err != nil {
			return err
		}
	}
	media, err := all(tx)
	if err != nil {
		return err
	}
	for _, o := range media {
		if o.Path == m.Path {
			return storage.Errorf(storage.ErrExists, "%q is already registered as iso %q", m.Path, o.Name)
		}
	}
	for _, o := range media {
		if o.SHA256 != "" && o.SHA256 == m.SHA256 {
			// Both are kept (an admin may want two names), but nobody
			// should find out from the disk usage.
			log.Warn().Str("iso", m.Name).Str("same_as", o.Name).Str("sha256", m.SHA256).
				Msgf("iso %q has the same bytes (SHA-256) as iso %q, which is already registered: both are kept; strata iso delete %s removes the new one", m.Name, o.Name, m.Name)
			break
		}
	}
	m.Files, m.Trees = nil, nil
	if err := tx.Put(bucketNames, m.Name, m.ID); err != nil {
		return err
	}
	return tx.Put(bucketMedia, m.ID, m)
}

func nameFree(tx *catalog.Tx, name string) error {
	var id string
	ok, err := tx.Get(bucketNames, name, &id)
	if err == nil && ok {
		err = storage.Errorf(storage.ErrExists, "iso %q already exists: choose another name or delete it first", name)
	}
	return err
}

// InPool lists the media whose images live in the pool called pool, so that
// removing the pool can be refused while it holds any.
func InPool(tx *catalog.Tx, pool string) ([]string, error) {
	media, err := all(tx)
	var out []string
	for _, m := range media {
		if m.Pool == pool {
			out = append(out, m.Name)
		}
	}
	return out, err
}

// Resolve returns the image path of the medium called name, for guest
// definitions that refer to media by name.
func Resolve(tx *catalog.Tx, name string) (string, error) {
	if err := storage.ValidateName("iso", name); err != nil {
		return "", err
	}
	m, err := get(tx, name)
	return m.Path, err
}

// List returns every medium, sorted by name, from the catalog alone.
func (mg *Manager) List(ctx context.Context) ([]Medium, error) {
	var out []Medium
	err := mg.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		out, err = all(tx)
		return err
	})
	return out, err
}

// Get returns the medium called name from the catalog.
func (mg *Manager) Get(ctx context.Context, name string) (Medium, error) {
	if err := storage.ValidateName("iso", name); err != nil {
		return Medium{}, err
	}
	var m Medium
	err := mg.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		m, err = get(tx, name)
		return err
	})
	return m, err
}

// Info describes a registered medium (by name) or any ISO image file (by
// path; a path that is registered shows its record). An unregistered image
// is read in full to compute its SHA-256. With files, the image's file tree
// is listed.
func (mg *Manager) Info(ctx context.Context, nameOrPath string, files bool, prog storage.Progress) (Medium, error) {
	if nameOrPath == "" {
		return Medium{}, storage.Errorf(storage.ErrInvalid, "give the name of an iso or the path of an ISO image")
	}
	var m Medium
	var found bool
	abs := ""
	if strings.ContainsRune(nameOrPath, '/') || storage.ValidateName("iso", nameOrPath) != nil {
		abs = absPath(nameOrPath)
	}
	err := mg.Catalog.View(func(tx *catalog.Tx) error {
		if abs == "" {
			var err error
			m, err = get(tx, nameOrPath)
			if err == nil {
				found = true
				return nil
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			if _, serr := os.Stat(nameOrPath); serr != nil {
				return err
			}
			abs = absPath(nameOrPath)
		}
		media, err := all(tx)
		for _, o := range media {
			if o.Path == abs {
				m, found = o, true
			}
		}
		return err
	})
	if err != nil {
		return Medium{}, err
	}
	if !found {
		m, err = describeFile(ctx, abs, prog)
		if err != nil {
			return Medium{}, err
		}
		m.Source = abs
	}
	h, f, err := openImage(m.Path)
	if err != nil {
		if !files && found {
			// the record stands; only --files needs the image
			log.Warn().Err(err).Str("image", m.Path).Msg("cannot read the image")
			return m, nil
		}
		return m, err
	}
	defer f.Close()
	v, err := openVolume(f, h, m.Path)
	if err != nil {
		return m, err
	}
	m.Extensions = v.Extensions()
	if files {
		if m.Trees, err = readTrees(v); err != nil {
			return m, err
		}
		m.Files = m.Trees[0].Files
	}
	return m, nil
}

// readTrees reads every tree the image has, the preferred first (Rock
// Ridge, then Joliet, then plain ISO9660: what Linux mounts). Any tree that
// cannot be read fails the whole answer.
func readTrees(v *isoVolume) ([]Tree, error) {
	var exts []string
	if v.rockRidge {
		exts = append(exts, ExtRockRidge)
	}
	if v.jolietRt != nil {
		exts = append(exts, ExtJoliet)
	}
	exts = append(exts, ExtISO9660)
	out := make([]Tree, 0, len(exts))
	for _, ext := range exts {
		files, err := v.ReadTree(ext)
		if err != nil {
			return nil, err
		}
		out = append(out, Tree{Extension: ext, Files: files})
	}
	return out, nil
}

func absPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// describeFile reads an image file that is not (yet) a medium: size,
// SHA-256, label and boot entries.
func describeFile(ctx context.Context, path string, prog storage.Progress) (Medium, error) {
	h, f, err := openImage(path)
	if err != nil {
		return Medium{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Medium{}, err
	}
	m := Medium{Path: path, Size: st.Size(), Label: h.Label}
	if err := fillBoot(&m, f, h); err != nil {
		return m, err
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	res, err := copyHashed(ctx, f, m.Size, discard{}, readPolicy{what: path, size: m.Size}, progressOr(prog))
	if err != nil {
		return m, err
	}
	m.SHA256 = res.SHA256
	m.normalize()
	return m, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func progressOr(p storage.Progress) storage.Progress {
	if p == nil {
		return storage.NoProgress{}
	}
	return p
}

// openImage opens an ISO image file (not a device) and reads its header.
func openImage(path string) (Header, *os.File, error) {
	// What it is, before opening it: opening a FIFO would block.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return Header{}, nil, storage.Errorf(storage.ErrInvalid, "%q is not a regular file: give the path of an ISO image file (capture devices with 'strata iso capture')", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return Header{}, nil, openError(path, "an ISO image file", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = storage.Errorf(storage.ErrInvalid, "%q is not a regular file: give the path of an ISO image file (capture devices with 'strata iso capture')", path)
	}
	var h Header
	if err == nil {
		h, err = ReadHeader(f, path)
	}
	if err != nil {
		f.Close()
		return Header{}, nil, err
	}
	return h, f, nil
}

// fillBoot sets a medium's boot entries from its image, naming each boot
// image's file where it is visible in the file tree.
func fillBoot(m *Medium, f *os.File, h Header) error {
	entries, err := ReadBootEntries(f, h, m.Path)
	if err != nil {
		return err
	}
	m.BootEntries = entries
	m.Bootable = false
	for _, e := range entries {
		m.Bootable = m.Bootable || e.Bootable
	}
	if len(entries) == 0 {
		return nil
	}
	v, err := openVolume(f, h, m.Path)
	if err != nil {
		// The boot entries stand without names; a tree strata cannot
		// read must not make the image unusable.
		log.Warn().Err(err).Str("image", m.Path).Msg("cannot name the boot images")
		return nil
	}
	byOffset := v.fileExtents()
	for i := range m.BootEntries {
		m.BootEntries[i].File = byOffset[m.BootEntries[i].Offset]
	}
	return nil
}

func openError(path, want string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return storage.Errorf(storage.ErrNotFound, "%q does not exist: give %s", path, want)
	case errors.Is(err, os.ErrPermission):
		return storage.Errorf(storage.ErrPrecondition, "cannot read %q: permission denied; run strata as a user who can read it", path)
	case errors.Is(err, unix.ENOMEDIUM):
		return storage.Errorf(storage.ErrPrecondition, "no disc in %q: insert one and retry", path)
	}
	return fmt.Errorf("open %q: %w", path, err)
}

// Delete forgets the medium called name and removes its image, unless the
// image was imported (kept unless purge). A medium that a guest definition
// uses is refused. The record goes first, so a crash leaves at worst an
// orphan file. It returns the medium's record as it was (the caller
// tells whether its image was kept: an imported one without purge).
func (mg *Manager) Delete(ctx context.Context, name string, purge bool) (Medium, error) {
	if err := storage.ValidateName("iso", name); err != nil {
		return Medium{}, err
	}
	var m Medium
	err := mg.Catalog.Update(func(tx *catalog.Tx) error {
		var err error
		if m, err = get(tx, name); err != nil {
			return err
		}
		if mg.Users == nil {
			return errors.New("internal error: media.Manager.Delete without Users: the guard against deleting a medium a guest uses is not wired")
		}
		users, err := mg.Users(tx, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return storage.Errorf(storage.ErrInUse, "iso %q is used by guest(s) %s: remove it from their definitions first", name, storage.QuoteList(users))
		}
		if err := tx.Delete(bucketNames, m.Name); err != nil {
			return err
		}
		return tx.Delete(bucketMedia, m.ID)
	})
	if err != nil {
		return Medium{}, err
	}
	return m, image.Discard("iso", name, m.Path, m.Imported, purge)
}

// poolFor returns the pool called name (default: the default pool),
// checking that its driver keeps files in a directory.
func poolFor(tx *catalog.Tx, name string) (storage.Pool, error) {
	if name == "" {
		name = catalog.DefaultPool
	}
	p, err := tx.Pool(name)
	if err != nil {
		return p, err
	}
	if p.Driver != dir.Name {
		return p, storage.Errorf(storage.ErrNotSupported, "pool %q uses driver %q, which cannot hold ISO images: use a dir pool", p.Name, p.Driver)
	}
	return p, nil
}

// imagePaths are a new medium's final and temporary file names in a pool.
func imagePaths(p storage.Pool, id string) (final, tmp string) {
	final = filepath.Join(p.Path, id+".iso")
	return final, atomicfile.Path(final, "")
}

// checkSpace fails unless the pool's driver reports need bytes free.
func checkSpace(ctx context.Context, p storage.Pool, need int64, what string) error {
	err := storage.EnsureSpace(ctx, dir.Driver{}, p, need, func(free int64) error {
		return storage.Errorf(storage.ErrPrecondition, "pool %q has %s free but %s needs %s: free space or use another pool (--pool)", p.Name, storage.FormatSize(free), what, storage.FormatSize(need))
	})
	if err != nil && !errors.Is(err, storage.ErrPrecondition) {
		return storage.Errorf(storage.ErrPrecondition, "pool %q: cannot read its directory %q: %w", p.Name, p.Path, err)
	}
	return err
}

// spaceError explains a failed write of a new image, removed by the caller.
func spaceError(p storage.Pool, path string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if storage.NoSpace(err) {
		return storage.NoSpaceError(err, "pool %q ran out of space writing %q (nothing was kept): free space or use another pool (--pool)", p.Name, path)
	}
	return fmt.Errorf("write %q: %w", path, err)
}

// commit makes a finished temporary image final: sync, rename, sync the
// directory, then record it. On any failure nothing is left behind.
func (mg *Manager) commit(m Medium, tmp string) (Medium, error) {
	if err := atomicfile.Commit(tmp, m.Path, atomicfile.Options{}); err != nil {
		os.Remove(tmp)
		return m, fmt.Errorf("rename %q to %q: %w", tmp, m.Path, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(m.Path)); err != nil {
		os.Remove(m.Path)
		return m, fmt.Errorf("sync %q: %w", filepath.Dir(m.Path), err)
	}
	m.normalize()
	if err := mg.Catalog.Update(func(tx *catalog.Tx) error { return add(tx, m) }); err != nil {
		os.Remove(m.Path)
		return m, err
	}
	return m, nil
}

// All returns every medium in the catalog, sorted by name, within a
// transaction (for callers that combine it with other records).
func All(tx *catalog.Tx) ([]Medium, error) { return all(tx) }
