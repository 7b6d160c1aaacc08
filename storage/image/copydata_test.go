package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage/storagetest"
)

// holeFirst writes a raw image of 8 MiB whose only data is 1 MiB of random
// bytes at 4 MiB: its first data segment is not at offset 0.
func holeFirst(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "src.img")
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 4<<20); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// checkCopy checks that dst holds src's bytes and keeps its leading hole.
func checkCopy(t *testing.T, src, dst string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	copy(want[4<<20:], data)
	if !bytes.Equal(got, want) {
		t.Fatalf("the copy differs from the source")
	}
	if same, err := SameContent(src, dst); err != nil || !same {
		t.Fatalf("SameContent: %v %v", same, err)
	}
	info, err := Inspect(dst)
	if err != nil {
		t.Fatal(err)
	}
	if info.AllocatedBytes > 2<<20 {
		t.Errorf("the copy is not sparse: %d bytes allocated for 1 MiB of data", info.AllocatedBytes)
	}
}

// otherFS returns a directory on a filesystem other than t.TempDir's: a
// tmpfs (/dev/shm) where there is one, else a loop-mounted ext4.
func otherFS(t *testing.T) string {
	t.Helper()
	var a, b unix.Stat_t
	if err := unix.Stat(t.TempDir(), &a); err != nil {
		t.Fatal(err)
	}
	if d, err := os.MkdirTemp("/dev/shm", "strata-test-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		if unix.Stat(d, &b) == nil && a.Dev != b.Dev {
			return d
		}
	}
	mnt := storagetest.LoopFS(t, "ext4", 64<<20)
	d := filepath.Join(mnt, "src")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// An image that starts with a hole, copied across filesystems: the first
// copy_file_range call is at 4 MiB, and its EXDEV (or any sign that the
// call does not apply) must lead to the plain sparse copy, not a failure.
func TestCopyDataAcrossFilesystemsHoleFirst(t *testing.T) {
	src, data := holeFirst(t, otherFS(t))
	dst := filepath.Join(t.TempDir(), "dst.img")
	if err := CopyData(context.Background(), src, dst, nil); err != nil {
		t.Fatalf("CopyData across filesystems: %v", err)
	}
	checkCopy(t, src, dst, data)
}

// fakeCopyFileRange makes copy_file_range answer with answer for the test.
func fakeCopyFileRange(t *testing.T, answer func(off int64) (int, error)) *[]int64 {
	t.Helper()
	var calls []int64
	real := copyFileRange
	copyFileRange = func(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
		calls = append(calls, *roff)
		return answer(*roff)
	}
	t.Cleanup(func() { copyFileRange = real })
	return &calls
}

// Whatever the first call's offset, an error meaning "does not apply"
// falls back to CopySparse; the same error after data was copied fails.
func TestCopyDataFallsBackOnFirstCall(t *testing.T) {
	for _, e := range []error{unix.EXDEV, unix.ENOSYS, unix.EOPNOTSUPP, unix.EINVAL} {
		t.Run(e.Error(), func(t *testing.T) {
			dir := t.TempDir()
			src, data := holeFirst(t, dir)
			calls := fakeCopyFileRange(t, func(int64) (int, error) { return 0, e })
			dst := filepath.Join(dir, "dst.img")
			if err := CopyData(context.Background(), src, dst, nil); err != nil {
				t.Fatalf("CopyData: %v", err)
			}
			if len(*calls) != 1 || (*calls)[0] != 4<<20 {
				t.Errorf("copy_file_range calls at %v, want one at 4 MiB", *calls)
			}
			checkCopy(t, src, dst, data)
		})
	}
}

func TestCopyDataErrorAfterFirstCall(t *testing.T) {
	dir := t.TempDir()
	src, _ := holeFirst(t, dir)
	fakeCopyFileRange(t, func(off int64) (int, error) {
		if off == 4<<20 {
			return 4096, nil // a short copy: the next call continues
		}
		return 0, unix.EXDEV
	})
	dst := filepath.Join(dir, "dst.img")
	err := CopyData(context.Background(), src, dst, nil)
	if !errors.Is(err, unix.EXDEV) {
		t.Fatalf("CopyData: %v, want EXDEV after a first successful call", err)
	}
	if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
		t.Errorf("the failed copy was kept: %v", serr)
	}
}

// copy_file_range copying nothing before the segment's end (the source
// shrank) is an unexpected end of file, with a readable message.
func TestCopyDataShortCopy(t *testing.T) {
	dir := t.TempDir()
	src, _ := holeFirst(t, dir)
	fakeCopyFileRange(t, func(int64) (int, error) { return 0, nil })
	dst := filepath.Join(dir, "dst.img")
	err := CopyData(context.Background(), src, dst, nil)
	if err == nil || strings.Contains(err.Error(), "%!") || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("CopyData with a short copy: %v", err)
	}
	if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
		t.Errorf("the failed copy was kept: %v", serr)
	}
}

// The plain case, on one filesystem, still copies in the kernel.
func TestCopyDataSameFilesystem(t *testing.T) {
	dir := t.TempDir()
	src, data := holeFirst(t, dir)
	dst := filepath.Join(dir, "dst.img")
	if err := CopyData(context.Background(), src, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, src, dst, data)
}
