package image_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/strata-vm/strata/storage/image"
)

// CopyFile (the one copy of files that are not images: a catalog
// restored from a copy, an iso build's staged tree) keeps holes holes,
// turns blocks of zeros into holes, copies the data exactly, refuses to
// write over a file, and leaves nothing behind when it fails.
func TestCopyFileIsSparseAndExact(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("strata"), 1000)
	for _, off := range []int64{0, 8 << 20, 16<<20 - int64(len(data))} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	// Written zeros: data on disk, a hole in the copy.
	if _, err := f.WriteAt(make([]byte, 1<<20), 4<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, durable := range []bool{false, true} {
		dst := filepath.Join(dir, "dst")
		os.Remove(dst)
		if err := image.CopyFile(context.Background(), src, dst, image.CopyOptions{Durable: durable}); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(src)
		b, _ := os.ReadFile(dst)
		if !bytes.Equal(a, b) {
			t.Fatalf("durable=%v: the copy differs from the source", durable)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(dst, &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Blocks * 512; got > 1<<20 {
			t.Errorf("durable=%v: the copy of 16 MiB holding 18 KB of data allocates %d bytes: holes and zeros were written", durable, got)
		}
		if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
			t.Errorf("durable=%v: mode %v, want 0600", durable, fi.Mode().Perm())
		}
	}
	if err := image.CopyFile(context.Background(), src, filepath.Join(dir, "dst"), image.CopyOptions{}); !errors.Is(err, os.ErrExist) {
		t.Errorf("a copy over an existing file: %v, want it refused", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := filepath.Join(dir, "cancelled")
	if err := image.CopyFile(ctx, src, gone, image.CopyOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled copy: %v", err)
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed copy left %s: %v", gone, err)
	}
}
