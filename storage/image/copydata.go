package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// copyFileRange is unix.CopyFileRange; tests replace it to see how
// CopyData handles each answer of the kernel.
var copyFileRange = unix.CopyFileRange

// CopyData copies src to dst (a new file) segment by segment: holes
// (SEEK_HOLE) stay holes and each data segment is copied in the kernel
// with copy_file_range, which skips the round trip of every byte through
// user space (and may share extents on XFS or btrfs). Zeros inside data
// segments are copied as they are: use it for images strata keeps (restore
// points, golden images, clones), whose holes are already holes. Where
// copy_file_range does not apply (across filesystems, no SEEK_DATA) it
// falls back to CopySparse. dst is synced before CopyData returns.
func CopyData(ctx context.Context, src, dst string, prog storage.Progress) error {
	fallback, err := copyData(ctx, src, dst, prog)
	if err != nil || !fallback {
		return err
	}
	return CopySparse(ctx, src, dst, prog)
}

// copyData is CopyData with copy_file_range only; fallback tells that it
// does not apply here (dst is removed then, for CopySparse to make).
func copyData(ctx context.Context, src, dst string, prog storage.Progress) (fallback bool, err error) {
	in, err := OpenImage(src, os.O_RDONLY)
	if err != nil {
		return false, openError(src, err)
	}
	defer in.Close()
	size, err := in.Seek(0, io.SeekEnd)
	if err != nil {
		return false, err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("create %q: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil || fallback {
			os.Remove(dst)
		}
	}()
	if err := out.Truncate(size); err != nil {
		return false, fmt.Errorf("size %q: %w", dst, err)
	}
	if prog == nil {
		prog = storage.NoProgress{}
	}
	prog.Start(size, src)
	defer prog.Done()
	fdIn, fdOut := int(in.Fd()), int(out.Fd())
	wb := NewWriteBehind(out)
	var done int64
	first := true // no copy_file_range call made yet
	for off := int64(0); off < size; {
		start, err := unix.Seek(fdIn, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return true, nil // no SEEK_DATA here
		}
		end, err := unix.Seek(fdIn, start, unix.SEEK_HOLE)
		if err != nil || end > size {
			end = size
		}
		prog.Add(start - done)
		for p := start; p < end; {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			ri, wo := p, p
			n, err := copyFileRange(fdIn, &ri, fdOut, &wo, int(min(end-p, 64<<20)), 0)
			if err != nil && first && copyRangeUnsupported(err) {
				// The first call, wherever the first data segment
				// starts, tells whether copy_file_range works between
				// these files at all.
				return true, nil
			}
			first = false
			if err != nil {
				if storage.NoSpace(err) {
					return false, writeError(dst, err)
				}
				return false, fmt.Errorf("copy %q to %q at %d: %w", src, dst, p, err)
			}
			if n == 0 { // src shrank under us: it ends before its data segment
				return false, fmt.Errorf("copy %q to %q at %d: %w", src, dst, p, io.ErrUnexpectedEOF)
			}
			p += int64(n)
			prog.Add(int64(n))
			wb.Reached(p)
		}
		done, off = end, end
	}
	prog.Add(size - done)
	return false, out.Sync()
}

// copyRangeUnsupported tells whether a copy_file_range error means the call
// does not apply to these files (across filesystems before Linux 5.3 or
// between some since 5.19, a kernel without it, a filesystem that refuses
// it), so that a plain copy should be done instead.
func copyRangeUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}

// WriteBehind starts writeback of each window of a large write as soon as
// it is written, and drops the window before it from the page cache once
// it is on disk: the final fsync then has little left to do, and copying
// gigabytes neither builds up dirty pages nor pushes the rest of the page
// cache out. The zero value does nothing.
type WriteBehind struct {
	fd             int
	prev, off, end int64
}

const writeWindow = 16 << 20

// NewWriteBehind follows writes to f.
func NewWriteBehind(f *os.File) WriteBehind { return WriteBehind{fd: int(f.Fd())} }

// Reached records that everything before offset end has been written.
func (w *WriteBehind) Reached(end int64) {
	if w.fd == 0 || end-w.off < writeWindow {
		return
	}
	// Hints that keep the page cache small; the copy's own fsync makes
	// it durable, so a refused hint costs memory, not data.
	_ = unix.SyncFileRange(w.fd, w.off, end-w.off, unix.SYNC_FILE_RANGE_WRITE)
	if w.off > w.prev {
		_ = unix.SyncFileRange(w.fd, w.prev, w.off-w.prev, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		_ = unix.Fadvise(w.fd, w.prev, w.off-w.prev, unix.FADV_DONTNEED)
	}
	w.prev, w.off = w.off, end
}
