package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"

	diskfs "github.com/diskfs/go-diskfs"
)

// volumeJSON is the documented shape of volume info --output json.
type volumeJSON struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Pool           string  `json:"pool"`
	Format         string  `json:"format"`
	Path           string  `json:"path"`
	VirtualSize    int64   `json:"virtual_size"`
	AllocatedBytes int64   `json:"allocated_bytes"`
	Backing        *string `json:"backing"`
	ImageBacking   *string `json:"image_backing"`
	Imported       bool    `json:"imported"`
	PartitionTable string  `json:"partition_table"`
	Partitions     []struct {
		Index int    `json:"index"`
		Start int64  `json:"start"`
		Size  int64  `json:"size"`
		Type  string `json:"type"`
	} `json:"partitions"`
}

type qemuInfo struct {
	Format        string `json:"format"`
	VirtualSize   int64  `json:"virtual-size"`
	ActualSize    int64  `json:"actual-size"`
	BackingFile   string `json:"backing-filename"`
	BackingFormat string `json:"backing-filename-format"`
}

func qemuImgInfo(t *testing.T, path string) qemuInfo {
	t.Helper()
	var qi qemuInfo
	if err := json.Unmarshal([]byte(storagetest.Cmd(t, "qemu-img", "info", "--output=json", path)), &qi); err != nil {
		t.Fatal(err)
	}
	return qi
}

func TestVolumeCreateRawAndQcow2(t *testing.T) {
	storagetest.NeedTool(t, "qemu-img")
	home := filepath.Join(t.TempDir(), "home")
	for _, tc := range []struct {
		format, size string
		bytes        int64
	}{{"raw", "100G", 100 << 30}, {"qcow2", "20GB", 20e9}, {"raw", "1.5M", 3 << 19}} {
		name := "v-" + tc.format + "-" + tc.size
		var v volumeJSON
		jsonOf(t, home, &v, "volume", "create", name, "--size", tc.size, "--format", tc.format)
		if v.Name != name || v.Format != tc.format || v.VirtualSize != tc.bytes || v.Pool != "default" || v.Backing != nil || v.Partitions == nil {
			t.Errorf("create %s: got %+v", name, v)
		}
		qi := qemuImgInfo(t, v.Path)
		if qi.Format != tc.format || qi.VirtualSize != tc.bytes {
			t.Errorf("qemu-img info %s: format %s size %d; strata said %s %d", v.Path, qi.Format, qi.VirtualSize, v.Format, v.VirtualSize)
		}
		if tc.format == "qcow2" {
			storagetest.Cmd(t, "qemu-img", "check", v.Path)
		}
		if tc.format == "raw" && v.AllocatedBytes >= 1<<20 {
			t.Errorf("raw %s allocates %d bytes: it must be sparse (under 1 MiB)", tc.size, v.AllocatedBytes)
		}
		var again volumeJSON
		jsonOf(t, home, &again, "volume", "info", name)
		if again.Path != v.Path || again.VirtualSize != v.VirtualSize {
			t.Errorf("info after create differs: %+v vs %+v", again, v)
		}
		if st, err := os.Stat(v.Path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("image %s mode %v, %v: want 0600 (state is root-only)", v.Path, st.Mode(), err)
		}
	}
	var list []volumeJSON
	jsonOf(t, home, &list, "volume", "list")
	if len(list) != 3 {
		t.Fatalf("volume list: %d volumes, want 3", len(list))
	}
	// Passable, not listable: libvirt's QEMU user reaches the images
	// libvirt hands it (storage.DirPassable).
	for _, d := range []string{home, filepath.Join(home, "pools"), filepath.Join(home, "pools", "default")} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o711 {
			t.Errorf("%s mode %v: want 0711", d, st.Mode())
		}
	}
}

func TestVolumeLayoutGPTFat32(t *testing.T) {
	storagetest.NeedTool(t, "sfdisk")
	storagetest.NeedTool(t, "mdir")
	home := t.TempDir()
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "drivers", "--size", "64M", "--partition", "gpt", "--fs", "fat32", "--label", "PVDRIVERS")
	if v.PartitionTable != "gpt" || len(v.Partitions) != 1 || v.Partitions[0].Start != 1<<20 || v.Partitions[0].Index != 1 {
		t.Fatalf("strata reports %+v", v)
	}
	// go-diskfs reads the table and the filesystem back.
	d, err := diskfs.Open(v.Path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatalf("go-diskfs finds no filesystem on partition 1: %v", err)
	}
	if got := strings.TrimSpace(fs.Label()); got != "PVDRIVERS" {
		t.Errorf("label %q", got)
	}
	// So do independent tools: sfdisk for the table, mtools for FAT32.
	dump := storagetest.Cmd(t, "sfdisk", "-d", v.Path)
	if !strings.Contains(dump, "label: gpt") || !strings.Contains(dump, "start=        2048") || !strings.Contains(strings.ToUpper(dump), "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7") {
		t.Errorf("sfdisk -d:\n%s", dump)
	}
	if m := regexp.MustCompile(`size=\s*(\d+)`).FindStringSubmatch(dump); m == nil || m[1] != fmt.Sprint(v.Partitions[0].Size/512) {
		size := v.Partitions[0].Size
		t.Errorf("sfdisk size differs from strata's %d bytes:\n%s", size, dump)
	}
	cmd := exec.Command("mdir", "-i", v.Path+"@@1M", "::")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PVDRIVERS") {
		t.Errorf("mdir on partition 1: %v\n%s", err, out)
	}
}

func TestVolumeLayoutMBRFat32Qcow2(t *testing.T) {
	home := t.TempDir()
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "data", "--size", "128M", "--format", "qcow2", "--partition", "mbr", "--fs", "fat32")
	if v.Format != "qcow2" || v.PartitionTable != "mbr" || len(v.Partitions) != 1 || v.Partitions[0].Type != "0x0c" {
		t.Fatalf("strata reports %+v", v)
	}
	raw := filepath.Join(t.TempDir(), "raw.img")
	storagetest.Cmd(t, "qemu-img", "convert", "-O", "raw", v.Path, raw)
	dump := storagetest.Cmd(t, "sfdisk", "-d", raw)
	if !strings.Contains(dump, "label: dos") || !strings.Contains(dump, "type=c") {
		t.Errorf("sfdisk -d:\n%s", dump)
	}
	cmd := exec.Command("minfo", "-i", raw+"@@1M", "::")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "FAT32") {
		t.Errorf("minfo: %v\n%s", err, out)
	}
	storagetest.Cmd(t, "qemu-img", "check", v.Path)
}

// writeAt writes data at offset into a file, creating it with size.
func sparseFile(t *testing.T, path string, size int64, chunks map[int64][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range chunks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVolumeImportCopyKeepsHoles(t *testing.T) {
	home := t.TempDir()
	src := filepath.Join(t.TempDir(), "falstaff.img")
	data := bytes.Repeat([]byte{0x11}, 3<<20)
	zeros := make([]byte, 4<<20) // written zeros: must become holes too
	sparseFile(t, src, 512<<20, map[int64][]byte{0: data, 256 << 20: data, 100 << 20: zeros, (512 << 20) - 4096: bytes.Repeat([]byte{0x22}, 4096)})
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "import", src, "--copy")
	if v.Name != "falstaff" || v.Imported || v.Path == src || v.VirtualSize != 512<<20 || v.Format != "raw" {
		t.Fatalf("import --copy: %+v", v)
	}
	srcInfo := qemuImgInfo(t, src)
	if v.AllocatedBytes > srcInfo.ActualSize || v.AllocatedBytes > 8<<20 {
		t.Errorf("copy allocates %d bytes, source %d: holes were filled", v.AllocatedBytes, srcInfo.ActualSize)
	}
	storagetest.Cmd(t, "cmp", src, v.Path)
	if _, err := os.Stat(src); err != nil {
		t.Errorf("source gone after --copy: %v", err)
	}
	// In place: registered where it is, kept on delete unless --purge.
	var in volumeJSON
	jsonOf(t, home, &in, "volume", "import", src, "--name", "inplace")
	if !in.Imported || in.Path != src {
		t.Errorf("import in place: %+v", in)
	}
	ok(t, home, "volume", "delete", "inplace")
	if _, err := os.Stat(src); err != nil {
		t.Errorf("delete of an imported volume removed its file: %v", err)
	}
	jsonOf(t, home, &in, "volume", "import", src, "--name", "inplace")
	ok(t, home, "volume", "delete", "inplace", "--purge")
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("delete --purge kept the file: %v", err)
	}
	ok(t, home, "volume", "delete", "falstaff")
	if _, err := os.Stat(v.Path); !os.IsNotExist(err) {
		t.Errorf("delete kept the pool image: %v", err)
	}
}

func TestVolumeFormatFromContent(t *testing.T) {
	home := t.TempDir()
	dir := t.TempDir()
	// A qcow2 image named .img, an overlay with a relative backing file,
	// an ISO, and a vmdk.
	q := filepath.Join(dir, "disk.img")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", q, "1G")
	ov := filepath.Join(dir, "overlay.raw")
	cmd := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", "disk.img", "-F", "qcow2", ov)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "import", q)
	if v.Format != "qcow2" || v.VirtualSize != 1<<30 {
		t.Errorf("qcow2 named .img detected as %+v", v)
	}
	jsonOf(t, home, &v, "volume", "import", ov)
	// backing: what strata recorded (resolved); image_backing: the
	// image's own spelling.
	if v.Format != "qcow2" || v.Backing == nil || *v.Backing != q || v.ImageBacking == nil || *v.ImageBacking != "disk.img" {
		t.Errorf("overlay: %+v", v)
	}
	// The base cannot go while the overlay depends on it.
	fails(t, home, 5, []string{`volume "disk" is the backing file of "overlay"`}, "volume", "delete", "disk")
	// A copied overlay keeps pointing at its base (made absolute).
	jsonOf(t, home, &v, "volume", "import", ov, "--copy", "--name", "ovcopy")
	if v.Backing == nil || *v.Backing != q {
		t.Errorf("copied overlay backing %v, want %s", v.Backing, q)
	}
	storagetest.Cmd(t, "qemu-img", "check", v.Path)
	if qemuImgInfo(t, v.Path).BackingFile != q {
		t.Errorf("qemu-img sees another backing file")
	}
	if _, err := exec.LookPath("xorriso"); err == nil {
		iso := filepath.Join(dir, "media.bin")
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.txt"), []byte("x"), 0o600)
		storagetest.Cmd(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "M", "-o", iso, src)
		jsonOf(t, home, &v, "volume", "import", iso)
		if v.Format != "iso" {
			t.Errorf("ISO detected as %s", v.Format)
		}
	}
	vmdk := filepath.Join(dir, "x.vmdk")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "vmdk", vmdk, "16M")
	fails(t, home, 8, []string{"vmdk image", "qemu-img convert"}, "volume", "import", vmdk)
}

func TestVolumeImportBlockDevice(t *testing.T) {
	storagetest.NeedRoot(t)
	home := t.TempDir()
	img := filepath.Join(t.TempDir(), "lv.img")
	sparseFile(t, img, 64<<20, map[int64][]byte{5 << 20: bytes.Repeat([]byte{0x33}, 1<<20)})
	dev := storagetest.Loop(t, img)
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "import", dev, "--name", "falstaff")
	if v.Path != dev || v.VirtualSize != 64<<20 || v.Format != "raw" || !v.Imported {
		t.Errorf("block device import: %+v", v)
	}
	fails(t, home, 8, []string{"lvextend"}, "volume", "resize", "falstaff", "--size", "128M")
	fails(t, home, 8, []string{"never removes"}, "volume", "delete", "falstaff", "--purge")
	// A copy of the device into the pool is sparse: only the written MiB.
	jsonOf(t, home, &v, "volume", "import", dev, "--name", "copy", "--copy")
	if v.AllocatedBytes > 2<<20 {
		t.Errorf("copy of a device allocates %d bytes: zeros were written", v.AllocatedBytes)
	}
	storagetest.Cmd(t, "cmp", dev, v.Path)
	ok(t, home, "volume", "delete", "falstaff")
	if _, err := os.Stat(dev); err != nil {
		t.Errorf("device gone: %v", err)
	}
}

func TestVolumeResize(t *testing.T) {
	home := t.TempDir()
	for _, f := range []string{"raw", "qcow2"} {
		var v volumeJSON
		jsonOf(t, home, &v, "volume", "create", "r"+f, "--size", "1G", "--format", f)
		jsonOf(t, home, &v, "volume", "resize", "r"+f, "--size", "2G")
		if v.VirtualSize != 2<<30 || qemuImgInfo(t, v.Path).VirtualSize != 2<<30 {
			t.Errorf("%s grow: %+v", f, v)
		}
		before := snapshotState(t, home)
		fails(t, home, 2, []string{"--shrink"}, "volume", "resize", "r"+f, "--size", "1G")
		if after := snapshotState(t, home); after != before || qemuImgInfo(t, v.Path).VirtualSize != 2<<30 {
			t.Errorf("refused shrink changed something")
		}
		jsonOf(t, home, &v, "volume", "resize", "r"+f, "--size", "512M", "--shrink")
		if v.VirtualSize != 512<<20 || qemuImgInfo(t, v.Path).VirtualSize != 512<<20 {
			t.Errorf("%s shrink: %+v", f, v)
		}
	}
	ok(t, home, "volume", "create", "parted", "--size", "64M", "--partition", "gpt")
	fails(t, home, 7, []string{"would cut partition 1"}, "volume", "resize", "parted", "--size", "32M", "--shrink")
}

func TestPoolCapabilitiesOnRealFilesystems(t *testing.T) {
	storagetest.NeedRoot(t)
	home := t.TempDir()
	for _, tc := range []struct {
		fs      string
		reflink bool
	}{{"xfs", true}, {"btrfs", true}, {"ext4", false}} {
		mnt := storagetest.LoopFS(t, tc.fs, 512<<20)
		var p struct {
			Name         string `json:"name"`
			Filesystem   string `json:"filesystem"`
			TotalBytes   uint64 `json:"total_bytes"`
			FreeBytes    uint64 `json:"free_bytes"`
			Capabilities struct {
				Reflink, Sparse bool
				O1Snapshots     bool `json:"o1_snapshots"`
			} `json:"capabilities"`
		}
		jsonOf(t, home, &p, "pool", "add", "p-"+tc.fs, "--path", filepath.Join(mnt, "pool"))
		jsonOf(t, home, &p, "pool", "info", "p-"+tc.fs)
		if p.Filesystem != tc.fs || p.Capabilities.Reflink != tc.reflink || p.Capabilities.O1Snapshots != tc.reflink || !p.Capabilities.Sparse {
			t.Errorf("%s: pool info %+v", tc.fs, p)
		}
		if p.TotalBytes == 0 || p.FreeBytes == 0 || p.FreeBytes > p.TotalBytes {
			t.Errorf("%s: sizes %+v", tc.fs, p)
		}
		// Volumes go into the pool; the pool cannot go while it holds one.
		var v volumeJSON
		jsonOf(t, home, &v, "volume", "create", "on-"+tc.fs, "--size", "10G", "--pool", "p-"+tc.fs)
		if !strings.HasPrefix(v.Path, mnt) || v.Pool != "p-"+tc.fs {
			t.Errorf("volume not in pool: %+v", v)
		}
		fails(t, home, 5, []string{"still holds volumes", "on-" + tc.fs}, "pool", "remove", "p-"+tc.fs)
		ok(t, home, "volume", "delete", "on-"+tc.fs)
		ok(t, home, "pool", "remove", "p-"+tc.fs)
	}
	// No probe files are left behind.
	entries, _ := filepath.Glob(filepath.Join(home, "pools", "default", ".strata-*"))
	if len(entries) > 0 && !(len(entries) == 1 && filepath.Base(entries[0]) == ".strata-pool") { // the pool's owner marker stays
		t.Errorf("probe leftovers: %v", entries)
	}
}

func TestConcurrentCreates(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "pool", "list") // the catalog exists; the race is on volumes
	const n = 20
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			format := []string{"raw", "qcow2"}[i%2]
			results[i] = runIn(t, home, nil, "volume", "create", fmt.Sprintf("c%02d", i), "--size", "1G", "--format", format)
		}(i)
	}
	wg.Wait()
	want := map[string]bool{}
	for i, r := range results {
		switch {
		case r.code == 0:
			want[fmt.Sprintf("c%02d", i)] = true
		case r.code == 6 && strings.Contains(r.stderr, "busy"):
		default:
			t.Errorf("create c%02d: exit %d: %s", i, r.code, r.stderr)
		}
	}
	var list []volumeJSON
	jsonOf(t, home, &list, "volume", "list")
	got := map[string]bool{}
	for _, v := range list {
		got[v.Name] = true
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("catalog lists %v, succeeded %v", got, want)
	}
	files, _ := filepath.Glob(filepath.Join(home, "pools", "default", "[0-9a-f]*")) // images, not the pool's marker
	if len(files) != len(want) {
		t.Errorf("%d image files for %d volumes", len(files), len(want))
	}
	t.Logf("%d of %d concurrent creates succeeded", len(want), n)
}

// A fresh home raced by many first commands: the schema is made once.
func TestConcurrentFirstUse(t *testing.T) {
	home := t.TempDir()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if r := runIn(t, home, nil, "volume", "create", fmt.Sprintf("f%d", i), "--size", "1M"); r.code != 0 {
				t.Errorf("first use %d: exit %d: %s", i, r.code, r.stderr)
			}
		}(i)
	}
	wg.Wait()
	var list []volumeJSON
	jsonOf(t, home, &list, "volume", "list")
	if len(list) != 8 {
		t.Errorf("%d volumes, want 8", len(list))
	}
}

// A raw volume stays raw whatever its guest writes at its start: a qcow2
// header naming a host file as its backing file must not make strata open
// the disk as qcow2 (and the host file as its base).
func TestRawVolumeStaysRaw(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "g", "--size", "64M")
	hdr := filepath.Join(t.TempDir(), "hdr.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", hdr, "1G")
	head, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(v.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(head, 0); err != nil { // what the guest writes to its disk
		t.Fatal(err)
	}
	f.Close()
	var got volumeJSON
	jsonOf(t, home, &got, "volume", "info", "g")
	if got.Format != "raw" || got.Backing != nil || got.VirtualSize != 64<<20 {
		t.Errorf("raw volume now reported as %s of %d bytes, backing %v", got.Format, got.VirtualSize, got.Backing)
	}
	ok(t, home, "volume", "resize", "g", "--size", "128M")
	if st, err := os.Stat(v.Path); err != nil || st.Size() != 128<<20 {
		t.Errorf("resize to 128M left the raw image at %v bytes (%v)", st.Size(), err)
	}
}

// An in-place import is refused for strata's own files however the path
// is spelled (here: the state home is reached through a symlink).
func TestImportRefusesStrataFilesThroughSymlink(t *testing.T) {
	real := t.TempDir()
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Symlink(real, home); err != nil {
		t.Fatal(err)
	}
	var a volumeJSON
	jsonOf(t, home, &a, "volume", "create", "a", "--size", "16M")
	resolved, err := filepath.EvalSymlinks(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotState(t, home)
	fails(t, home, 2, []string{"--copy"}, "volume", "import", resolved, "--name", "dup")
	fails(t, home, 2, []string{"state home"}, "volume", "import", filepath.Join(real, "catalog.db"), "--name", "cat")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused import changed the state")
	}
}

// An overlay whose backing name is spelled another way ("a/../b") still
// keeps its base volume from deletion.
func TestBackingSpelledDifferentlyProtectsBase(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var base volumeJSON
	jsonOf(t, home, &base, "volume", "create", "base", "--size", "16M", "--format", "qcow2")
	alt := filepath.Dir(base.Path) + "/../default/" + filepath.Base(base.Path) // not cleaned
	ov := filepath.Join(t.TempDir(), "ov.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", alt, "-F", "qcow2", ov)
	ok(t, home, "volume", "import", ov)
	fails(t, home, 5, []string{"backing file of"}, "volume", "delete", "base")
	fails(t, home, 5, []string{"backing file of"}, "volume", "resize", "base", "--size", "8M", "--shrink")
}

// Shrinking a GPT disk would cut off the backup table: refused, even when
// every partition would fit.
func TestShrinkKeepsGPT(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "g", "--size", "64M", "--partition", "gpt")
	end := v.Partitions[0].Start + v.Partitions[0].Size
	fails(t, home, 7, []string{"GPT partition table", "backup"}, "volume", "resize", "g", "--size", strconv.FormatInt(end, 10), "--shrink")
	if out := storagetest.Cmd(t, "sfdisk", "-d", v.Path); !strings.Contains(out, "label: gpt") {
		t.Errorf("the GPT is gone:\n%s", out)
	}
}

// A FAT32 filesystem too small to be FAT32 (under 65,525 clusters) is
// refused before any file is made; the smallest accepted size is readable.
func TestSmallFAT32Refused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "list")
	before := snapshotState(t, home)
	for _, size := range []string{"1M", "16M", "32M"} {
		fails(t, home, 2, []string{"65,525 clusters", "--size 40M"}, "volume", "create", "f", "--size", size, "--fs", "fat32")
	}
	fails(t, home, 2, []string{"65,525 clusters"}, "volume", "create", "f", "--size", "34M", "--fs", "fat32", "--partition", "gpt")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused layout changed the state")
	}
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "f", "--size", "40M", "--fs", "fat32", "--partition", "mbr")
	img := v.Path + "@@1M"
	if out, err := exec.Command("mdir", "-i", img, "::").CombinedOutput(); err != nil {
		t.Errorf("a 40M FAT32 disk is unreadable: %v\n%s", err, out)
	}
}

// A full pool is still listed (with no capability claimed), and a pool on
// a read-only filesystem is refused before it is recorded.
func TestFullAndReadOnlyPools(t *testing.T) {
	storagetest.NeedRoot(t)
	mnt := t.TempDir()
	storagetest.Cmd(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "full", "--path", filepath.Join(mnt, "p"))
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(mnt, "fill"), "bs=4k").Run()
	for _, args := range [][]string{{"pool", "list"}, {"pool", "info", "full"}} {
		if r := runIn(t, home, nil, args...); r.code != 0 {
			t.Errorf("%v on a full pool: exit %d: %s", args, r.code, r.stderr)
		}
	}
	ro := t.TempDir()
	storagetest.Cmd(t, "mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro)
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	home2 := filepath.Join(t.TempDir(), "home")
	ok(t, home2, "pool", "list")
	before := snapshotState(t, home2)
	fails(t, home2, 7, []string{"not writable"}, "pool", "add", "ro", "--path", ro)
	if after := snapshotState(t, home2); after != before {
		t.Errorf("a refused pool add changed the state")
	}
}

// Importing a FIFO is refused at once (opening it used to block forever,
// holding the operation lock).
func TestImportFIFORefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, strataBinary(t), "--home", home, "volume", "import", fifo).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("import of a FIFO still blocked after 10s")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "neither a regular file nor a block device") {
		t.Errorf("import of a FIFO: %v %s, want exit 2 saying what it is", err, out)
	}
}

// Sizes the filesystem cannot hold are refused alike by create and resize
// (exit 2), and a --label with nothing to label is refused.
func TestResizeTooLargeAndStrayLabel(t *testing.T) {
	mnt := storagetest.LoopFS(t, "ext4", 64<<20) // ext4: files up to 16 TiB
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "e4", "--path", mnt)
	ok(t, home, "volume", "create", "v", "--size", "16M", "--pool", "e4")
	before := snapshotState(t, home)
	fails(t, home, 2, []string{"larger than the pool's filesystem allows"}, "volume", "resize", "v", "--size", "17T")
	fails(t, home, 2, []string{"--label", "add --fs fat32"}, "volume", "create", "w", "--size", "16M", "--label", "DATA")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refusal changed the state")
	}
}
