package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// DefaultRetries is how often a capture retries an unreadable sector.
const DefaultRetries = 3

// CaptureOptions describes a capture.
type CaptureOptions struct {
	// Source is a block device (/dev/sr0, a loop device) or an image file.
	Source string
	Name   string
	Pool   string // default: the default pool
	// Verify re-reads the source after the copy and compares SHA-256s.
	Verify bool
	// Retries is how often an unreadable sector is read again.
	Retries int
	// AllowBadSectors zero-fills sectors that stay unreadable and records
	// them on the medium, instead of failing.
	AllowBadSectors bool
	// Raw copies the whole source, for sources without ISO9660.
	Raw bool
}

// Test hooks, set only by tests (export_test.go): wrap the source reader
// (fault injection) and run something between the free-space check and the
// copy (fill the disk to reach a real ENOSPC).
var (
	wrapSource      func(io.ReaderAt) io.ReaderAt
	afterSpaceCheck func(poolPath string)
)

// source is an open capture source.
type source struct {
	f      *os.File
	r      io.ReaderAt
	path   string
	size   int64
	device bool
}

func openSource(path string) (*source, error) {
	if path == "" {
		return nil, storage.Errorf(storage.ErrInvalid, "give a source: a block device (e.g. /dev/sr0) or an ISO image file")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, storage.Errorf(storage.ErrInvalid, "invalid source %q: %w", path, err)
	}
	const want = "a block device (e.g. /dev/sr0) or an ISO image file"
	// What it is, before opening it: opening a FIFO would block.
	if st, err := os.Stat(abs); err == nil && !st.Mode().IsRegular() && (st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0) {
		return nil, storage.Errorf(storage.ErrInvalid, "%q is neither a block device nor a regular file: give %s", path, want)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, openError(path, want, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &source{f: f, r: f, path: abs}
	switch {
	case st.Mode().IsRegular():
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		s.device = true
	default:
		f.Close()
		return nil, storage.Errorf(storage.ErrInvalid, "%q is neither a block device nor a regular file: give %s", path, want)
	}
	if s.size, err = f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("size of %q: %w", path, err)
	}
	if s.size == 0 {
		f.Close()
		if s.device {
			return nil, storage.Errorf(storage.ErrPrecondition, "%q reports a size of 0: insert a disc (or wait until the drive has read it) and retry", path)
		}
		return nil, storage.Errorf(storage.ErrInvalid, "%q is empty: give %s", path, want)
	}
	if wrapSource != nil {
		s.r = wrapSource(s.r)
	}
	return s, nil
}

func (s *source) Close() error { return s.f.Close() }

// extent is how many bytes of the source to copy, and the image header
// (zero for a raw capture of a source without ISO9660).
func (s *source) extent(raw bool) (int64, Header, error) {
	h, err := ReadHeader(s.r, s.path)
	if raw {
		if err != nil {
			h = Header{}
		}
		return s.size, h, nil
	}
	if err != nil {
		return 0, h, err
	}
	if h.Size() > s.size {
		return 0, h, storage.Errorf(storage.ErrPrecondition, "%q is truncated: its ISO9660 filesystem is %d bytes but the source has only %d; use --raw to capture what is there", s.path, h.Size(), s.size)
	}
	size := ImageSize(s.r, h, s.size)
	if size > h.Size() {
		log.Info().Str("source", s.path).Int64("filesystem", h.Size()).Int64("image", size).Msg("hybrid image: partitions follow the filesystem; capturing them too")
	}
	if s.device || size == s.size {
		// A device's bytes after the image are the rest of the disc or
		// stick, not the vendor's: nothing tells where those ended.
		return size, h, nil
	}
	tail := s.size - size
	if tail <= MaxPadding && zeros(s.r, size, tail) {
		// xorriso pads after appended partitions (300 KiB by default);
		// the vendor's SHA256SUMS cover those bytes, so the copy does too.
		log.Info().Str("source", s.path).Int64("padding", tail).Msg("zero padding follows the image; capturing it too")
		return s.size, h, nil
	}
	log.Warn().Str("source", s.path).Int64("image", size).Int64("file", s.size).
		Msg("the file has bytes after the image that are not padding: capturing the image only, so its SHA-256 differs from the file's; use --raw to capture the file byte for byte")
	return size, h, nil
}

// MaxPadding is the most zero bytes after an image file's last structure
// that a capture takes as the image's padding: xorriso pads 300 KiB by
// default (isohybrid's 1 MiB alignment is inside its MBR partition, which
// ImageSize follows). More zeros are a dump of a bigger device.
const MaxPadding = 512 << 10

// zeros reports whether n bytes at off are all zero (a read error: no).
func zeros(r io.ReaderAt, off, n int64) bool {
	buf := make([]byte, 64<<10)
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		if _, err := r.ReadAt(b, off); err != nil {
			return false
		}
		for _, c := range b {
			if c != 0 {
				return false
			}
		}
		off += int64(len(b))
		n -= int64(len(b))
	}
	return true
}

// Capture copies an ISO image from a block device or image file into a
// pool and registers it: exactly the image's bytes (see ImageSize), hashed
// while copied.
func (mg *Manager) Capture(ctx context.Context, o CaptureOptions, prog storage.Progress) (Medium, error) {
	if err := storage.ValidateName("iso", o.Name); err != nil {
		return Medium{}, err
	}
	if o.Retries < 0 || o.Retries > 1000 {
		return Medium{}, storage.Errorf(storage.ErrInvalid, "invalid --retries %d: give 0 to 1000", o.Retries)
	}
	src, err := openSource(o.Source)
	if err != nil {
		return Medium{}, err
	}
	defer src.Close()
	size, _, err := src.extent(o.Raw)
	if err != nil {
		return Medium{}, err
	}
	pool, err := mg.newMediumPool(o.Name, o.Pool)
	if err != nil {
		return Medium{}, err
	}
	m := Medium{Name: o.Name, Pool: pool.Name, Origin: OriginCapture, Source: src.path}
	policy := readPolicy{what: src.path, size: size, retries: o.Retries, allowBad: o.AllowBadSectors}
	m, err = mg.copyIn(ctx, src, size, pool, m, policy, o.Verify, prog)
	if err != nil {
		return m, err
	}
	log.Debug().Str("iso", m.Name).Str("source", src.path).Int64("size", m.Size).Str("sha256", m.SHA256).Msg("iso captured")
	if len(m.BadSectors) > 0 {
		log.Warn().Str("iso", m.Name).Int("count", len(m.BadSectors)).Msg("unreadable sectors were zero-filled at byte offsets " + formatOffsets(m.BadSectors))
	}
	return m, nil
}

// newMediumPool checks that name is free and returns the pool a new medium
// goes to.
func (mg *Manager) newMediumPool(name, poolName string) (storage.Pool, error) {
	var pool storage.Pool
	err := mg.Catalog.View(func(tx *catalog.Tx) error {
		if err := nameFree(tx, name); err != nil {
			return err
		}
		var err error
		pool, err = poolFor(tx, poolName)
		return err
	})
	if err != nil {
		return pool, err
	}
	if err := storage.MkdirPassable(pool.Path); err != nil {
		return pool, storage.Errorf(storage.ErrPrecondition, "pool %q: cannot create its directory %q: %w", pool.Name, pool.Path, err)
	}
	return pool, nil
}

// copyIn copies size bytes of src into a new image in pool, then commits
// it as m.
func (mg *Manager) copyIn(ctx context.Context, src *source, size int64, pool storage.Pool, m Medium, policy readPolicy, verify bool, prog storage.Progress) (Medium, error) {
	prog = progressOr(prog)
	m.ID = storage.NewID()
	var tmp string
	m.Path, tmp = imagePaths(pool, m.ID)
	if err := checkSpace(ctx, pool, size, fmt.Sprintf("the image of %q", src.path)); err != nil {
		return m, err
	}
	if afterSpaceCheck != nil {
		afterSpaceCheck(pool.Path)
	}
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return m, fmt.Errorf("create %q: %w", tmp, err)
	}
	fail := func(err error) (Medium, error) {
		out.Close()
		os.Remove(tmp)
		return m, err
	}
	_ = unix.Fadvise(int(src.f.Fd()), 0, size, unix.FADV_SEQUENTIAL) // a hint: refused, the read is only slower
	policy.what = src.path
	res, err := copyHashed(ctx, src.r, size, out, policy, prog)
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return fail(spaceError(pool, tmp, we.err))
		}
		return fail(err)
	}
	if err := out.Sync(); err != nil {
		return fail(spaceError(pool, tmp, err))
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return m, spaceError(pool, tmp, err)
	}
	if verify {
		// Drop the source's cached pages so that the second read comes
		// from the drive, not from memory.
		// A hint: refused, the second read may come from memory and
		// prove less, which is all a failed hint costs.
		_ = unix.Fadvise(int(src.f.Fd()), 0, 0, unix.FADV_DONTNEED)
		policy.what = src.path + " (verify)"
		again, err := copyHashed(ctx, src.r, size, discard{}, policy, prog)
		if err == nil && again.SHA256 != res.SHA256 {
			err = storage.Errorf(storage.ErrPrecondition, "verification failed: a second read of %q has SHA-256 %s, the capture %s; the drive returns unstable data: clean the disc and capture again (nothing was kept)", src.path, again.SHA256, res.SHA256)
		}
		if err != nil {
			os.Remove(tmp)
			return m, err
		}
		log.Debug().Str("source", src.path).Str("sha256", res.SHA256).Msg("verified: a second read matches")
	}
	m.Size, m.SHA256, m.BadSectors = size, res.SHA256, res.BadSectors
	if err := describeInto(&m, tmp); err != nil {
		os.Remove(tmp)
		return m, err
	}
	m.Created = time.Now().UTC()
	return mg.commit(m, tmp)
}

// describeInto sets label and boot entries from a new image file; an image
// without ISO9660 (a raw capture) has neither.
func describeInto(m *Medium, path string) error {
	h, f, err := openImage(path)
	if err != nil {
		if errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrNotSupported) {
			return nil
		}
		return err
	}
	defer f.Close()
	m.Label = h.Label
	final := m.Path
	m.Path = path
	err = fillBoot(m, f, h)
	m.Path = final
	if err != nil {
		return err
	}
	if v, err := openVolume(f, h, path); err == nil {
		m.Extensions = v.Extensions()
	}
	return nil
}

// ImportOptions describes an existing ISO image file to register.
type ImportOptions struct {
	Path string
	Name string // default: the file name without extension
	// Pool, when set, copies the file (as it is, byte for byte) into that
	// pool; else the file is registered in place.
	Pool string
}

// Import registers an existing ISO image file, in place (computing its
// SHA-256) or copied into a pool.
func (mg *Manager) Import(ctx context.Context, o ImportOptions, prog storage.Progress) (Medium, error) {
	if o.Path == "" {
		return Medium{}, storage.Errorf(storage.ErrInvalid, "give the path of an ISO image file to import")
	}
	abs := absPath(o.Path)
	if o.Name == "" {
		base := filepath.Base(abs)
		o.Name = strings.TrimSuffix(base, filepath.Ext(base))
		if storage.ValidateName("iso", o.Name) != nil {
			return Medium{}, storage.Errorf(storage.ErrInvalid, "%q does not make a valid iso name: give one with --name", base)
		}
	}
	if err := storage.ValidateName("iso", o.Name); err != nil {
		return Medium{}, err
	}
	_, f, err := openImage(abs)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return Medium{}, storage.Errorf(storage.ErrNotFound, "%q does not exist: give the path of an ISO image file", o.Path)
		}
		return Medium{}, err
	}
	f.Close()
	if o.Pool != "" {
		src, err := openSource(abs)
		if err != nil {
			return Medium{}, err
		}
		defer src.Close()
		pool, err := mg.newMediumPool(o.Name, o.Pool)
		if err != nil {
			return Medium{}, err
		}
		m := Medium{Name: o.Name, Pool: pool.Name, Origin: OriginImport, Source: abs}
		m, err = mg.copyIn(ctx, src, src.size, pool, m, readPolicy{size: src.size}, false, prog)
		if err == nil {
			log.Debug().Str("iso", m.Name).Str("path", m.Path).Msg("iso imported (copied)")
		}
		return m, err
	}
	if err := mg.Catalog.View(func(tx *catalog.Tx) error {
		if err := nameFree(tx, o.Name); err != nil {
			return err
		}
		// In place, it must not be a file strata manages (a volume's
		// image, one of its isos, point data): iso delete --purge would
		// remove it under its owner.
		if err := tx.CheckUnmanaged(mg.Catalog.Home(), abs); err != nil {
			return err
		}
		media, err := all(tx)
		for _, x := range media {
			if x.Path == abs {
				return storage.Errorf(storage.ErrExists, "%q is already registered as iso %q", abs, x.Name)
			}
		}
		return err
	}); err != nil {
		return Medium{}, err
	}
	m, err := describeFile(ctx, abs, prog)
	if err != nil {
		return Medium{}, err
	}
	m.ID, m.Name, m.Origin, m.Source, m.Imported = storage.NewID(), o.Name, OriginImport, abs, true
	m.Created = time.Now().UTC()
	if err := mg.Catalog.Update(func(tx *catalog.Tx) error { return add(tx, m) }); err != nil {
		return Medium{}, err
	}
	log.Debug().Str("iso", m.Name).Str("path", m.Path).Msg("iso imported in place")
	return m, nil
}
