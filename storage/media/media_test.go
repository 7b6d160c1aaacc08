package media_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/run"
)

func need(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s is not installed (apt-get install -y %s)", tool, pkg)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
}

// newManager returns a Manager on a fresh state home, with the default
// pool under it.
func newManager(t *testing.T) (*media.Manager, storage.Pool) {
	t.Helper()
	c, err := catalog.Open(t.TempDir(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var p storage.Pool
	if err := c.Update(func(tx *catalog.Tx) error {
		var err error
		p, err = tx.Pool(catalog.DefaultPool)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mg := media.New(c)
	mg.Users = func(*catalog.Tx, string) ([]string, error) { return nil, nil } // no guests here
	return mg, p
}

func addPool(t *testing.T, mg *media.Manager, name, dir string) {
	t.Helper()
	p := storage.Pool{Name: name, Driver: "dir", Path: dir, Created: time.Now()}
	if err := mg.Catalog.Update(func(tx *catalog.Tx) error { return tx.AddPool(p) }); err != nil {
		t.Fatal(err)
	}
}

// randomTree fills dir with a few files of pseudo-random content, total
// about size bytes.
func randomTree(t *testing.T, dir string, size int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, uint64(size)))
	files := map[string]int{"a.txt": 100, "sub/b.bin": size / 2, "sub/deep/c.bin": size - size/2 - 100}
	for name, n := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// xorrisoISO makes an ISO of about size bytes with xorriso, the
// independent writer, and returns its path.
func xorrisoISO(t *testing.T, label string, size int, extra ...string) string {
	t.Helper()
	need(t, "xorriso", "xorriso")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	randomTree(t, src, size)
	out := filepath.Join(dir, "x.iso")
	argv := append([]string{"xorriso", "-as", "mkisofs", "-R", "-J", "-V", label, "-o", out}, extra...)
	if _, err := run.Output(context.Background(), append(argv, src)...); err != nil {
		t.Fatal(err)
	}
	return out
}

func sha(t *testing.T, b []byte) string {
	t.Helper()
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// poolFiles lists the pool directory, to prove nothing is left behind.
func poolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != "lost+found" && e.Name() != "filler" && e.Name() != catalog.MarkerFile {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestReadHeaderOfXorrisoImage(t *testing.T) {
	iso := xorrisoISO(t, "HDR_TEST", 50_000)
	f, err := os.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := media.ReadHeader(f, iso)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if h.Label != "HDR_TEST" || h.BlockSize != 2048 || h.Size() != st.Size() || h.CatalogOffset != 0 {
		t.Fatalf("header %+v, file size %d", h, st.Size())
	}
	entries, err := media.ReadBootEntries(f, h, iso)
	if err != nil || entries == nil || len(entries) != 0 {
		t.Fatalf("boot entries of a plain image: %v, %v", entries, err)
	}
}

func TestCaptureFileTrimsPadding(t *testing.T) {
	iso := xorrisoISO(t, "PADDED", 200_000)
	orig := read(t, iso)
	padded := filepath.Join(t.TempDir(), "padded.img")
	if err := os.WriteFile(padded, append(bytes.Clone(orig), make([]byte, 1<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	mg, pool := newManager(t)
	m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: padded, Name: "padded"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != int64(len(orig)) || m.SHA256 != sha(t, orig) || m.Label != "PADDED" || m.Pool != pool.Name {
		t.Fatalf("captured %+v; want size %d sha %s", m, len(orig), sha(t, orig))
	}
	if got := read(t, m.Path); !bytes.Equal(got, orig) {
		t.Fatal("captured image differs from the original")
	}
	if m.Path != filepath.Join(pool.Path, m.ID+".iso") || len(poolFiles(t, pool.Path)) != 1 {
		t.Fatalf("path %q, pool holds %v", m.Path, poolFiles(t, pool.Path))
	}
	_ = mg.Catalog.View(func(tx *catalog.Tx) error {
		if names, err := media.InPool(tx, pool.Name); err != nil || len(names) != 1 || names[0] != "padded" {
			t.Errorf("InPool: %v, %v", names, err)
		}
		return nil
	})
}

// A hybrid image with an EFI partition appended after the filesystem (as
// xorriso -append_partition makes): the capture keeps the partition.
func TestCaptureHybridKeepsAppendedPartition(t *testing.T) {
	need(t, "xorriso", "xorriso")
	efi := filepath.Join(t.TempDir(), "efi.img")
	efiData := bytes.Repeat([]byte("EFI!"), 256<<10/4)
	if err := os.WriteFile(efi, efiData, 0o600); err != nil {
		t.Fatal(err)
	}
	iso := xorrisoISO(t, "HYBRID", 100_000, "-append_partition", "2", "0xef", efi)
	orig := read(t, iso)
	f, _ := os.Open(iso)
	h, err := media.ReadHeader(f, iso)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	mg, _ := newManager(t)
	m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "hybrid"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, m.Path)
	if m.Size <= h.Size() || !bytes.Contains(got, efiData) {
		t.Fatalf("filesystem %d bytes, captured %d of %d; EFI partition kept: %t", h.Size(), m.Size, len(orig), bytes.Contains(got, efiData))
	}
	// xorriso pads after the appended partition: the vendor's SHA256SUMS
	// cover the padding, so the capture must too.
	if !bytes.Equal(got, orig) || m.SHA256 != sha(t, orig) {
		t.Fatalf("captured %d of the file's %d bytes: the SHA-256 differs from the file's", len(got), len(orig))
	}
}

// Bytes after an image file that are not padding (data, or more zeros
// than any ISO tool pads with) are left out, and the capture says so and
// how to get the file's bytes; --raw takes them.
func TestCaptureLeavesOutWhatFollowsAnImageUnlessRaw(t *testing.T) {
	for name, tail := range map[string][]byte{
		"data":       bytes.Repeat([]byte("junk"), 1024),
		"many zeros": make([]byte, media.MaxPadding+2048),
	} {
		t.Run(name, func(t *testing.T) {
			iso := xorrisoISO(t, "TAIL", 50_000)
			orig := read(t, iso)
			withTail := append(append([]byte{}, orig...), tail...)
			if err := os.WriteFile(iso, withTail, 0o600); err != nil {
				t.Fatal(err)
			}
			mg, _ := newManager(t)
			var logged bytes.Buffer
			log.Logger = zerolog.New(&logged)
			defer func() { log.Logger = zerolog.Nop() }()
			m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "tail"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.SHA256 != sha(t, orig) || !strings.Contains(logged.String(), "--raw") {
				t.Fatalf("captured %d bytes (image %d, file %d); log: %s", m.Size, len(orig), len(withTail), logged.String())
			}
			raw, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "tail-raw", Raw: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if raw.SHA256 != sha(t, withTail) {
				t.Fatalf("--raw captured %d of %d bytes", raw.Size, len(withTail))
			}
		})
	}
}

// faulty fails reads that touch a listed offset, as many times as listed
// (-1: always).
type faulty struct {
	r     io.ReaderAt
	mu    sync.Mutex
	fails map[int64]int
	reads map[int64]int // failed attempts per offset
}

func newFaulty(r io.ReaderAt, fails map[int64]int) *faulty {
	return &faulty{r: r, fails: fails, reads: map[int64]int{}}
}

func (f *faulty) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for at, n := range f.fails {
		if at >= off && at < off+int64(len(p)) && n != 0 {
			f.fails[at] = n - 1
			f.reads[at]++
			return 0, unix.EIO
		}
	}
	return f.r.ReadAt(p, off)
}

func TestCaptureRetriesThenSucceeds(t *testing.T) {
	iso := xorrisoISO(t, "RETRY", 3<<20)
	orig := read(t, iso)
	bad := int64(40 * 2048)
	var fr *faulty
	defer media.SetWrapSource(func(r io.ReaderAt) io.ReaderAt {
		fr = newFaulty(r, map[int64]int{bad: 3})
		return fr
	})()
	mg, _ := newManager(t)
	m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "retry", Retries: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(t, orig) || len(m.BadSectors) != 0 {
		t.Fatalf("sha %s bad %v; want %s and no bad sectors", m.SHA256, m.BadSectors, sha(t, orig))
	}
	if fr.reads[bad] != 3 {
		t.Fatalf("the bad sector failed %d times, want 3", fr.reads[bad])
	}
}

func TestCaptureBadSectorsFailWithoutAllow(t *testing.T) {
	iso := xorrisoISO(t, "BAD", 3<<20)
	bad := int64(700 * 2048)
	defer media.SetWrapSource(func(r io.ReaderAt) io.ReaderAt { return newFaulty(r, map[int64]int{bad: -1}) })()
	mg, pool := newManager(t)
	_, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "bad", Retries: 2}, nil)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "at byte 1433600 (sector 700) after 3 attempts") || !strings.Contains(err.Error(), "--allow-bad-sectors") {
		t.Fatalf("error %v; want a precondition error naming the offset", err)
	}
	if left := poolFiles(t, pool.Path); len(left) != 0 {
		t.Fatalf("files left in the pool: %v", left)
	}
	if list, _ := mg.List(context.Background()); len(list) != 0 {
		t.Fatalf("media registered: %v", list)
	}
}

func TestCaptureBadSectorsZeroFilledAndRecorded(t *testing.T) {
	iso := xorrisoISO(t, "BADOK", 3<<20)
	orig := read(t, iso)
	bad := []int64{100 * 2048, 1000 * 2048}
	defer media.SetWrapSource(func(r io.ReaderAt) io.ReaderAt {
		return newFaulty(r, map[int64]int{bad[0]: -1, bad[1]: -1})
	})()
	mg, _ := newManager(t)
	m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "badok", Retries: 1, AllowBadSectors: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(orig)
	for _, o := range bad {
		clear(want[o : o+2048])
	}
	got := read(t, m.Path)
	if !bytes.Equal(got, want) {
		t.Fatal("the image is not the original with the bad sectors zero-filled")
	}
	rec, err := mg.Get(context.Background(), "badok")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.BadSectors) != 2 || rec.BadSectors[0] != bad[0] || rec.BadSectors[1] != bad[1] || rec.SHA256 != sha(t, got) {
		t.Fatalf("record %+v; want bad sectors %v and the SHA-256 of the zero-filled image", rec, bad)
	}
}

// flaky returns different bytes on the second read of one offset: a drive
// that reads unstable data.
type flaky struct {
	r    io.ReaderAt
	mu   sync.Mutex
	seen bool
	at   int64
}

func (f *flaky) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.r.ReadAt(p, off)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at >= off && f.at < off+int64(n) {
		if f.seen {
			p[f.at-off] ^= 0xff
		}
		f.seen = true
	}
	return n, err
}

func TestCaptureVerify(t *testing.T) {
	iso := xorrisoISO(t, "VERIFY", 1<<20)
	mg, pool := newManager(t)
	if _, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "good", Verify: true}, nil); err != nil {
		t.Fatal(err)
	}
	defer media.SetWrapSource(func(r io.ReaderAt) io.ReaderAt { return &flaky{r: r, at: 60000} })()
	_, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "unstable", Verify: true}, nil)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "verification failed") {
		t.Fatalf("error %v; want verification failed", err)
	}
	if left := poolFiles(t, pool.Path); len(left) != 1 {
		t.Fatalf("pool holds %v; want the first image only", left)
	}
}

func TestCaptureRefusesNonISO(t *testing.T) {
	src := filepath.Join(t.TempDir(), "disk.img")
	data := bytes.Repeat([]byte("not an iso "), 10000)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mg, pool := newManager(t)
	_, err := mg.Capture(context.Background(), media.CaptureOptions{Source: src, Name: "x"}, nil)
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "has no ISO9660 filesystem") || !strings.Contains(err.Error(), "--raw") {
		t.Fatalf("error %v", err)
	}
	if left := poolFiles(t, pool.Path); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
	m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: src, Name: "x", Raw: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != int64(len(data)) || m.SHA256 != sha(t, data) || m.Label != "" || m.Bootable {
		t.Fatalf("raw capture %+v", m)
	}
}

func TestCaptureRefusesUDFOnlyAndTruncated(t *testing.T) {
	dir := t.TempDir()
	udf := make([]byte, 1<<20)
	for i, id := range []string{"BEA01", "NSR02", "TEA01"} {
		copy(udf[32768+i*2048:], "\x00"+id+"\x01")
	}
	udfPath := filepath.Join(dir, "udf.img")
	os.WriteFile(udfPath, udf, 0o600)
	mg, _ := newManager(t)
	_, err := mg.Capture(context.Background(), media.CaptureOptions{Source: udfPath, Name: "udf"}, nil)
	if !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "UDF") {
		t.Fatalf("UDF: %v", err)
	}
	iso := read(t, xorrisoISO(t, "CUT", 500_000))
	cut := filepath.Join(dir, "cut.iso")
	os.WriteFile(cut, iso[:len(iso)/2], 0o600)
	_, err = mg.Capture(context.Background(), media.CaptureOptions{Source: cut, Name: "cut"}, nil)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated: %v", err)
	}
}

// mountSmall mounts a 20 MiB ext4 filesystem and returns its mount point.
func mountSmall(t *testing.T) string {
	t.Helper()
	needRoot(t)
	need(t, "mkfs.ext4", "e2fsprogs")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	ctx := context.Background()
	for _, argv := range [][]string{{"truncate", "-s", "20M", img}, {"mkfs.ext4", "-q", img}, {"mount", "-o", "loop", img, mnt}} {
		if _, err := run.Output(ctx, argv...); err != nil {
			t.Skipf("cannot make a small filesystem: %v", err)
		}
	}
	t.Cleanup(func() {
		if _, err := run.Output(ctx, "umount", mnt); err != nil {
			t.Errorf("umount: %v", err)
		}
	})
	return mnt
}

// The free-space check passes, then the disk fills up (another writer):
// the capture meets a real ENOSPC, and leaves nothing.
func TestCaptureENOSPC(t *testing.T) {
	mnt := mountSmall(t)
	iso := xorrisoISO(t, "FULL", 8<<20)
	mg, _ := newManager(t)
	addPool(t, mg, "small", mnt)
	defer media.SetAfterSpaceCheck(func(pool string) {
		f, err := os.Create(filepath.Join(pool, "filler"))
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		chunk := make([]byte, 1<<20)
		for {
			if _, err := f.Write(chunk); err != nil {
				break
			}
		}
		f.Sync()
	})()
	_, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "full", Pool: "small"}, nil)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "ran out of space") || !strings.Contains(err.Error(), "nothing was kept") {
		t.Fatalf("error %v; want ran out of space", err)
	}
	if left := poolFiles(t, mnt); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
	if list, _ := mg.List(context.Background()); len(list) != 0 {
		t.Fatalf("registered: %v", list)
	}
}

func TestDeleteRefusedWhileInUse(t *testing.T) {
	iso := xorrisoISO(t, "USED", 10_000)
	mg, _ := newManager(t)
	m, err := mg.Capture(context.Background(), media.CaptureOptions{Source: iso, Name: "used"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mg.Users = nil
	if _, err := mg.Delete(context.Background(), "used", false); err == nil || errors.Is(err, storage.ErrInUse) {
		t.Fatalf("a delete with no Users wired: %v; want an internal error", err)
	}
	mg.Users = func(tx *catalog.Tx, name string) ([]string, error) {
		if name == "used" {
			return []string{"web1", "web2"}, nil
		}
		return nil, nil
	}
	_, err = mg.Delete(context.Background(), "used", false)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `"web1", "web2"`) {
		t.Fatalf("error %v; want in use by web1, web2", err)
	}
	if _, err := os.Stat(m.Path); err != nil {
		t.Fatal("the image went away")
	}
	mg.Users = func(*catalog.Tx, string) ([]string, error) { return nil, nil }
	if _, err := mg.Delete(context.Background(), "used", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Path); !os.IsNotExist(err) {
		t.Fatal("the image is still there")
	}
}

func TestImportResolveDelete(t *testing.T) {
	iso := xorrisoISO(t, "IMPORTED", 30_000)
	mg, _ := newManager(t)
	m, err := mg.Import(context.Background(), media.ImportOptions{Path: iso}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "x" || m.Path != iso || !m.Imported || m.SHA256 != sha(t, read(t, iso)) || m.Label != "IMPORTED" || m.Pool != "" {
		t.Fatalf("imported %+v", m)
	}
	if _, err := mg.Import(context.Background(), media.ImportOptions{Path: iso, Name: "again"}, nil); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second import of the same file: %v", err)
	}
	_ = mg.Catalog.View(func(tx *catalog.Tx) error {
		if p, err := media.Resolve(tx, "x"); err != nil || p != iso {
			t.Errorf("Resolve: %q, %v", p, err)
		}
		if _, err := media.Resolve(tx, "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Resolve of an unknown name: %v", err)
		}
		return nil
	})
	if _, err := mg.Delete(context.Background(), "x", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(iso); err != nil {
		t.Fatal("delete removed an imported image without --purge")
	}
	c, err := mg.Import(context.Background(), media.ImportOptions{Path: iso, Name: "copied", Pool: "default"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Imported || c.Path == iso || !bytes.Equal(read(t, c.Path), read(t, iso)) {
		t.Fatalf("copied import %+v", c)
	}
}

// snapshot records everything about a tree that building must not change.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		v := fi.Mode().String() + " " + fi.ModTime().String()
		switch {
		case fi.Mode().IsRegular():
			v += " " + sha(t, read(t, p))
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildListsFilesAndLeavesSourceAlone(t *testing.T) {
	src := t.TempDir()
	randomTree(t, src, 100_000)
	os.Symlink("a.txt", filepath.Join(src, "link"))
	os.WriteFile(filepath.Join(src, "BOOT.CAT"), []byte("stale catalog"), 0o644)
	os.WriteFile(filepath.Join(src, "boot.img"), bytes.Repeat([]byte{0x90}, 2048), 0o644)
	before := snapshot(t, src)
	mg, pool := newManager(t)
	m, err := mg.Build(context.Background(), media.BuildOptions{Dir: src, Name: "built", RockRidge: true, Joliet: true, Boot: "/boot.img", BootCatalog: "BOOT.CAT", BootInfoTable: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, src); len(after) != len(before) {
		t.Fatalf("source changed: %d entries, was %d", len(after), len(before))
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("source changed: %s: %s, was %s", k, after[k], v)
			}
		}
	}
	if m.Label != "built" || !m.Bootable || len(m.BootEntries) != 1 || m.BootEntries[0].File != "/boot.img" || m.BootEntries[0].Emulation != "none" {
		t.Fatalf("built %+v", m)
	}
	info, err := mg.Info(context.Background(), "built", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]media.File{}
	for _, f := range info.Files {
		got[f.Path] = f
	}
	for p, want := range map[string]media.File{
		"/a.txt":          {Type: "file", Size: 100},
		"/sub/deep/c.bin": {Type: "file", Size: 100_000 - 50_000 - 100},
		"/sub":            {Type: "dir"},
		"/link":           {Type: "symlink", Target: "a.txt"},
		"/BOOT.CAT":       {Type: "file", Size: 64}, // the new catalog, not the stale file
	} {
		if g := got[p]; g.Type != want.Type || g.Size != want.Size || g.Target != want.Target {
			t.Errorf("%s: %+v, want %+v", p, g, want)
		}
	}
	if left := poolFiles(t, pool.Path); len(left) != 1 {
		t.Fatalf("pool holds %v; want the image only (no staging left)", left)
	}
}

func TestBuildRefusesFilesOneExtentCannotHold(t *testing.T) {
	src := t.TempDir()
	f, _ := os.Create(filepath.Join(src, "huge.img"))
	f.Truncate(4 << 30) // sparse: costs nothing
	f.Close()
	mg, pool := newManager(t)
	_, err := mg.Build(context.Background(), media.BuildOptions{Dir: src, Name: "huge"}, nil)
	if !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "huge.img") {
		t.Fatalf("error %v", err)
	}
	if left := poolFiles(t, pool.Path); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
}

func TestBuildRefusesPoolInsideSource(t *testing.T) {
	mg, pool := newManager(t)
	home := filepath.Dir(filepath.Dir(pool.Path)) // the state home holds the default pool
	os.WriteFile(filepath.Join(home, "note.txt"), []byte("x"), 0o600)
	_, err := mg.Build(context.Background(), media.BuildOptions{Dir: home, Name: "self"}, nil)
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "is inside") {
		t.Fatalf("error %v", err)
	}
}

// An image as go-diskfs v1.9.4 writes it with Joliet (subdirectory records
// of the Joliet tree point into the ISO9660 tree) is refused by Info with
// files: its Joliet tree is unreadable, not a list of garbled names.
// strata's own builds are not affected (TestBuildJolietTreeIsItsOwn).
func TestInfoRefusesAJolietTreeCrossLinkedIntoISO9660(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub", "deeper"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "deeper", "c.txt"), []byte("c"), 0o644)
	img := filepath.Join(t.TempDir(), "diskfs.iso")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, 2048, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{Joliet: true, VolumeIdentifier: "DISKFS"}); err != nil {
		t.Fatal(err)
	}
	mg, _ := newManager(t)
	_, err = mg.Info(context.Background(), img, true, nil)
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "Joliet tree") || !strings.Contains(err.Error(), "cross-linked") {
		t.Fatalf("Info of a cross-linked Joliet tree: %v", err)
	}
	m, err := mg.Info(context.Background(), img, false, nil)
	if err != nil || !slices.Contains(m.Extensions, media.ExtJoliet) {
		t.Fatalf("Info without files: %+v, %v", m, err)
	}
}

// strata's Joliet tree has directories of its own, in Joliet order, and
// names every file and directory the Rock Ridge tree has (symlinks aside).
func TestBuildJolietTreeIsItsOwn(t *testing.T) {
	src := t.TempDir()
	randomTree(t, src, 10_000)
	os.MkdirAll(filepath.Join(src, "Zeta", "alpha", "Ωmega"), 0o755)
	os.WriteFile(filepath.Join(src, "Zeta", "alpha", "Ωmega", "résumé.txt"), []byte("r"), 0o644)
	os.Symlink("a.txt", filepath.Join(src, "link"))
	mg, _ := newManager(t)
	if _, err := mg.Build(context.Background(), media.BuildOptions{Dir: src, Name: "own", RockRidge: true, Joliet: true}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := mg.Info(context.Background(), "own", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Trees) != 3 || m.Trees[0].Extension != media.ExtRockRidge || m.Trees[1].Extension != media.ExtJoliet || m.Trees[2].Extension != media.ExtISO9660 {
		t.Fatalf("trees %+v", m.Trees)
	}
	var rr, joliet []string
	for _, f := range m.Trees[0].Files {
		if f.Type != "symlink" {
			rr = append(rr, f.Path+" "+f.Type)
		}
	}
	for _, f := range m.Trees[1].Files {
		joliet = append(joliet, f.Path+" "+f.Type)
	}
	if !slices.Equal(rr, joliet) || !slices.Contains(joliet, "/Zeta/alpha/Ωmega/résumé.txt file") {
		t.Fatalf("Rock Ridge %v\nJoliet %v", rr, joliet)
	}
}

// Builds refuse Joliet without Rock Ridge (the Joliet tree is named from
// it) with a hint, before writing anything.
func TestBuildJolietNeedsRockRidge(t *testing.T) {
	src := t.TempDir()
	randomTree(t, src, 1000)
	mg, pool := newManager(t)
	_, err := mg.Build(context.Background(), media.BuildOptions{Dir: src, Name: "j", Joliet: true}, nil)
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "--plain") {
		t.Fatalf("error %v", err)
	}
	if left := poolFiles(t, pool.Path); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
}
