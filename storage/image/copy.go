package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/run"
)

const (
	copyChunk = 1 << 20  // bytes read at a time: memory stays constant
	zeroBlock = 64 << 10 // granularity at which zeros become holes
)

var zeros [zeroBlock]byte // in BSS: no allocation at start-up

// CopySparse copies src (file or block device) to dst, a new file that
// must not exist. Holes stay holes: on files it walks only the data
// segments (SEEK_DATA/SEEK_HOLE), and within data, blocks of zeros are
// skipped so they become holes too (as cp --sparse=always does). Memory use
// is constant. dst is synced before CopySparse returns; on error it is
// removed.
func CopySparse(ctx context.Context, src, dst string, prog storage.Progress) error {
	in, err := OpenImage(src, os.O_RDONLY)
	if err != nil {
		return openError(src, err)
	}
	defer in.Close()
	return copySparse(ctx, in, src, dst, CopyOptions{Durable: true, Progress: prog})
}

// CopyOptions say how CopyFile copies.
type CopyOptions struct {
	// Durable: dst is synced before CopyFile returns (a copy a record
	// names next); a scratch copy skips the sync.
	Durable bool
	// Progress is told the bytes copied (nil: nothing).
	Progress storage.Progress
}

// CopyFile copies the file src to dst, a new file (mode 0600) that must
// not exist, sparsely as CopySparse does; for files that are not images
// (a catalog copy, a staged tree's files). On error dst is removed.
func CopyFile(ctx context.Context, src, dst string, o CopyOptions) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return copySparse(ctx, in, src, dst, o)
}

func copySparse(ctx context.Context, in *os.File, src, dst string, o CopyOptions) (err error) {
	size, err := in.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("size %q: %w", dst, err)
	}
	prog := o.Progress
	if prog == nil {
		prog = storage.NoProgress{}
	}
	prog.Start(size, src)
	defer prog.Done()
	buf := make([]byte, copyChunk)
	var done int64
	for off := int64(0); off < size; {
		start, end, err := nextData(in, off, size)
		if err != nil {
			return fmt.Errorf("read %q: %w", src, err)
		}
		prog.Add(start - done)
		done = start
		for p := start; p < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), end-p)
			if _, err := in.ReadAt(buf[:n], p); err != nil && err != io.EOF {
				return fmt.Errorf("read %q at %d: %w", src, p, err)
			}
			if err := writeNonZero(out, buf[:n], p); err != nil {
				return writeError(dst, err)
			}
			p += n
			prog.Add(n)
			done = p
		}
		off = end
	}
	prog.Add(size - done)
	if !o.Durable {
		return nil
	}
	if err := out.Sync(); err != nil {
		return writeError(dst, err)
	}
	return nil
}

// nextData returns the next data segment at or after off. Where SEEK_DATA
// is not supported (block devices, some filesystems) everything is data.
func nextData(f *os.File, off, size int64) (int64, int64, error) {
	fd := int(f.Fd())
	start, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil // only a hole remains
	}
	if err != nil {
		return off, size, nil
	}
	end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil || end > size {
		end = size
	}
	return start, end, nil
}

func writeNonZero(out *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n := min(len(b), zeroBlock)
		if !bytes.Equal(b[:n], zeros[:n]) {
			// Write runs of non-zero blocks in one call.
			m := n
			for m < len(b) {
				k := min(len(b)-m, zeroBlock)
				if bytes.Equal(b[m:m+k], zeros[:k]) {
					break
				}
				m += k
			}
			if _, err := out.WriteAt(b[:m], off); err != nil {
				return err
			}
			n = m
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func writeError(path string, err error) error {
	if storage.NoSpace(err) {
		return storage.NoSpaceError(err, "no space left writing %q: free space in its pool or use another pool (--pool)", path)
	}
	return fmt.Errorf("write %q: %w", path, err)
}

// Reflink makes dst (a new file) share src's extents with FICLONE, in O(1).
// It returns an error wrapping storage.ErrNotSupported where the
// filesystem cannot (ext4, tmpfs, across filesystems); the caller falls
// back to CopySparse.
func Reflink(src, dst string) (err error) {
	in, err := OpenImage(src, os.O_RDONLY)
	if err != nil {
		return openError(src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
			return storage.Errorf(storage.ErrNotSupported, "reflink %q to %q: %w", src, dst, err)
		}
		return fmt.Errorf("reflink %q to %q: %w", src, dst, err)
	}
	return out.Sync()
}

// Convert rewrites an image in another format with qemu-img convert; holes
// stay holes.
func Convert(ctx context.Context, src string, from storage.Format, dst string, to storage.Format) error {
	return run.Run(ctx, nil, nil, "qemu-img", "convert", "-q", "-f", string(from), "-O", string(to), src, dst)
}

// Discard removes the image file of a thing (a volume, an iso) whose
// catalog record is already gone; an imported file is kept unless purge.
func Discard(what, name, path string, imported, purge bool) error {
	if imported && !purge {
		log.Info().Str(what, name).Str("path", path).Msgf("%s forgotten; its image is kept (use --purge to remove it)", what)
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s %q is deleted from the catalog but its image %q could not be removed: %w", what, name, path, err)
	}
	// The commands say what they deleted (cmd/strata reportDeleted).
	log.Debug().Str(what, name).Msgf("%s deleted", what)
	return nil
}

// SyncPath fsyncs a file or directory by path: a file written by another
// process (qemu-img), or a directory after a rename in it.
func SyncPath(path string) error { return atomicfile.SyncDir(path) }

// PunchZeros makes the blocks of zeros in the file at path holes again
// (what a copy that wrote zeros, or allocated them, left): it walks the
// data segments and punches every aligned zeroBlock of zeros. Memory use
// is constant; the file is synced.
func PunchZeros(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	punch := func(off, n int64) error {
		if n <= 0 {
			return nil
		}
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("punch a hole in %q: %w", path, err)
		}
		return nil
	}
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		start, end, err := nextData(f, off, size)
		if err != nil {
			return err
		}
		// What reads as a hole may still hold allocated (unwritten)
		// blocks: fallocate's zeroing leaves those.
		if err := punch(off, start-off); err != nil {
			return err
		}
		start -= start % zeroBlock
		for p := start; p < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), end-p)
			if _, err := f.ReadAt(buf[:n], p); err != nil && err != io.EOF {
				return fmt.Errorf("read %q at %d: %w", path, p, err)
			}
			for k := int64(0); k+zeroBlock <= n; k += zeroBlock {
				if bytes.Equal(buf[k:k+zeroBlock], zeros[:]) {
					if err := punch(p+k, zeroBlock); err != nil {
						return err
					}
				}
			}
			p += n
		}
		off = end
	}
	return f.Sync()
}
