package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// SameContent reports whether two image files hold the same bytes. It
// reads only where either file has data (SEEK_DATA/SEEK_HOLE): holes in
// both are equal without being read.
func SameContent(a, b string) (bool, error) {
	fa, err := OpenImage(a, os.O_RDONLY)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := OpenImage(b, os.O_RDONLY)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	sa, err := fa.Seek(0, io.SeekEnd)
	if err != nil {
		return false, err
	}
	sb, err := fb.Seek(0, io.SeekEnd)
	if err != nil {
		return false, err
	}
	if sa != sb {
		return false, nil
	}
	ra, err := dataRanges(fa, sa)
	if err != nil {
		return false, err
	}
	rb, err := dataRanges(fb, sb)
	if err != nil {
		return false, err
	}
	bufA, bufB := make([]byte, copyChunk), make([]byte, copyChunk)
	for _, r := range union(ra, rb) {
		for off := r[0]; off < r[1]; {
			n := min(int64(len(bufA)), r[1]-off)
			if _, err := fa.ReadAt(bufA[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return false, fmt.Errorf("read %q: %w", a, err)
			}
			if _, err := fb.ReadAt(bufB[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return false, fmt.Errorf("read %q: %w", b, err)
			}
			if !bytes.Equal(bufA[:n], bufB[:n]) {
				return false, nil
			}
			off += n
		}
	}
	return true, nil
}

// dataRanges lists a file's data segments [start, end).
func dataRanges(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil { // no SEEK_DATA: all of it is data
			return [][2]int64{{0, size}}, nil
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil || end > size {
			end = size
		}
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out, nil
}

// union merges two lists of ranges, each sorted by start, into one sorted
// list of disjoint ranges; overlapping and adjacent ranges are joined. It
// is linear in the total length (a merge, as in merge sort).
func union(a, b [][2]int64) [][2]int64 {
	out := make([][2]int64, 0, len(a)+len(b))
	add := func(r [2]int64) {
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[1])
			return
		}
		out = append(out, r)
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i][0] <= b[j][0] {
			add(a[i])
			i++
		} else {
			add(b[j])
			j++
		}
	}
	for ; i < len(a); i++ {
		add(a[i])
	}
	for ; j < len(b); j++ {
		add(b[j])
	}
	return out
}
