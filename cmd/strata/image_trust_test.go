package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-vm/strata/storage/storagetest"
)

// A host file a guest must never read: stands for /etc/shadow.
func hostSecret(t *testing.T) (path string, marker []byte) {
	t.Helper()
	marker = []byte("HOST-SECRET-root:$6$not-for-guests$")
	path = filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(path, bytes.Repeat(marker, 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, marker
}

// qcow2HeaderNaming returns the first bytes of a real qcow2 image (made by
// qemu-img) whose backing file is backing: what a guest can write at the
// start of its raw disk.
func qcow2HeaderNaming(t *testing.T, backing string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hdr.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", p, "1M")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeAt writes b at the start of an existing file, as a guest writes
// its disk.
func writeAt(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// A guest wrote a qcow2 header naming a host file into its raw disk; the
// config says format=raw. Adopting it must record it raw, and a golden
// image of the guest and its clones must hold the disk's bytes, not the
// host file.
func TestAdoptedRawDiskKeepsDeclaredFormat(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	secret, marker := hostSecret(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "evil.img")
	sparseFile(t, img, 4<<20, map[int64][]byte{0: qcow2HeaderNaming(t, secret)})
	cfg := filepath.Join(dir, "evil.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'evil'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'format=raw,vdev=hda,access=w,target=%s' ]\n", img)), 0o600)
	ok(t, home, "guest", "import", cfg, "--adopt-disks")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "info", "evil-hda")
	if v.Format != "raw" || v.Backing != nil || v.VirtualSize != 4<<20 {
		t.Fatalf("a raw disk declared format=raw was recorded as %+v", v)
	}
	ok(t, home, "golden", "create", "gold", "--from", "evil")
	ok(t, home, "clone", "gold", "c1", "--full")
	ok(t, home, "clone", "gold", "c2")
	var c volumeJSON
	jsonOf(t, home, &c, "volume", "info", "c1-disk1")
	if c.Format != "raw" || c.Backing != nil {
		t.Errorf("clone: %+v", c)
	}
	// Neither the golden image nor a clone holds the host file.
	files, _ := filepath.Glob(filepath.Join(home, "pools", "default", "*"))
	if len(files) < 3 {
		t.Fatalf("pool files: %v", files)
	}
	for _, p := range files {
		if data, _ := os.ReadFile(p); bytes.Contains(data, marker) {
			t.Fatalf("%s holds the host file's bytes", p)
		}
	}
	// What the linked clone reads, through its backing chain, is the disk.
	var l volumeJSON
	jsonOf(t, home, &l, "volume", "info", "c2-disk1")
	flat := filepath.Join(t.TempDir(), "flat")
	storagetest.Cmd(t, "qemu-img", "convert", "-O", "raw", l.Path, flat)
	if data, _ := os.ReadFile(flat); bytes.Contains(data, marker) {
		t.Fatal("the linked clone reads the host file")
	}
	// Without a declared format, the same disk is refused, not probed
	// into a qcow2 image reading the host file.
	img2 := filepath.Join(dir, "evil2.img")
	sparseFile(t, img2, 4<<20, map[int64][]byte{0: qcow2HeaderNaming(t, secret)})
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'evil2'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'vdev=hda,access=w,target=%s' ]\n", img2)), 0o600)
	fails(t, home, 7, []string{"outside strata's pools"}, "guest", "import", cfg, "--adopt-disks")
	fails(t, home, 3, nil, "volume", "info", "evil2-hda")
}

// volume import --copy of an image strata made, or of restore point data,
// takes the format strata recorded, whatever a guest wrote into it.
func TestVolumeImportCopyKeepsRecordedFormat(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	secret, marker := hostSecret(t)
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "r", "--size", "4M")
	writeAt(t, v.Path, qcow2HeaderNaming(t, secret))
	ok(t, home, "snapshot", "create", "--volume", "r")
	var c volumeJSON
	jsonOf(t, home, &c, "volume", "import", "--copy", v.Path, "--name", "copy")
	if c.Format != "raw" || c.Backing != nil || c.VirtualSize != 4<<20 {
		t.Fatalf("a copy of strata's raw image was recorded as %+v", c)
	}
	fails(t, home, 2, []string{"raw"}, "volume", "import", "--copy", v.Path, "--name", "asq", "--format", "qcow2")
	points, _ := filepath.Glob(filepath.Join(filepath.Dir(v.Path), ".strata-points", "*"))
	if len(points) != 1 {
		t.Fatalf("point files: %v", points)
	}
	jsonOf(t, home, &c, "volume", "import", "--copy", points[0], "--name", "pointcopy")
	if c.Format != "raw" || c.Backing != nil {
		t.Fatalf("a copy of restore point data was recorded as %+v", c)
	}
	data, _ := os.ReadFile(c.Path)
	if bytes.Contains(data, marker) {
		t.Fatal("the copy holds the host file's bytes")
	}
}

// Without a declared format, a qcow2 image whose backing file lies outside
// the pools is refused; declared (--format qcow2 --allow-backing) it is
// imported and reported; declared raw it is raw.
func TestProbedBackingOutsidePoolsNeedsDeclaration(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	secret, _ := hostSecret(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "ov.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", img, "1M")
	for _, copy := range [][]string{nil, {"--copy"}} {
		fails(t, home, 7, []string{"outside strata's pools", "--format qcow2 --allow-backing"}, append([]string{"volume", "import", img}, copy...)...)
	}
	fails(t, home, 2, []string{"--format qcow2"}, "volume", "import", img, "--allow-backing")
	if out := ok(t, home, "volume", "list"); strings.Contains(out, "ov") {
		t.Fatalf("a refused import left a volume:\n%s", out)
	}
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "import", img, "--name", "asraw", "--format", "raw")
	if v.Format != "raw" || v.Backing != nil {
		t.Errorf("declared raw: %+v", v)
	}
	ok(t, home, "volume", "delete", "asraw")
	r := runIn(t, home, nil, "--output", "json", "volume", "import", img, "--format", "qcow2", "--allow-backing")
	if r.code != 0 || !strings.Contains(r.stderr, "outside strata's pools") || !strings.Contains(r.stdout, secret) {
		t.Errorf("declared qcow2 with --allow-backing: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// qcow2 images whose data can come from anywhere are refused with the
// reason: an external data file, a json: backing name, a backing file in
// the state home (the catalog keeps console passwords).
func TestQcow2ExternalReferencesAreRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "volume", "list")
	secret, _ := hostSecret(t)
	dir := t.TempDir()
	df := filepath.Join(dir, "df.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+secret+",data_file_raw=on", df, "1M")
	js := filepath.Join(dir, "js.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", js, "1M")
	storagetest.Cmd(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", `json:{"file":{"driver":"file","filename":"`+secret+`"}}`, "-F", "raw", js)
	hb := filepath.Join(dir, "home.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(home, "catalog.db"), "-F", "raw", hb, "1M")
	for _, c := range []struct {
		img  string
		code int
		want string
	}{{df, 8, "external data file"}, {js, 8, "json:"}, {hb, 2, "inside strata's state home"}} {
		for _, extra := range [][]string{nil, {"--copy"}, {"--format", "qcow2", "--allow-backing"}} {
			fails(t, home, c.code, []string{c.want}, append([]string{"volume", "import", c.img}, extra...)...)
		}
	}
	if out := ok(t, home, "volume", "list"); strings.Count(out, "\n") > 1 {
		t.Fatalf("refused imports left volumes:\n%s", out)
	}
	// volume info shows a data file an image has (here one put in place
	// by root after the import).
	plain := filepath.Join(dir, "plain.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", plain, "1M")
	var v struct {
		volumeJSON
		DataFile *string `json:"data_file"`
	}
	jsonOf(t, home, &v, "volume", "import", plain)
	if v.DataFile != nil {
		t.Errorf("data_file of a plain image: %q", *v.DataFile)
	}
	if err := os.Rename(df, plain); err != nil {
		t.Fatal(err)
	}
	jsonOf(t, home, &v, "volume", "info", "plain")
	if v.DataFile == nil || *v.DataFile != secret {
		t.Errorf("data_file: %v, want %s", v.DataFile, secret)
	}
}

// An in-place volume whose image is swapped for a symbolic link to a host
// file (by whoever owns its directory) is never read, written or truncated
// through the link, and a rollback never hands out the host file.
func TestSymlinkSwappedImageIsRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	secret, marker := hostSecret(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	sparseFile(t, img, 1<<20, map[int64][]byte{0: []byte("guest data")})
	ok(t, home, "volume", "import", img, "--name", "d")
	ok(t, home, "snapshot", "create", "--volume", "d")
	os.Rename(img, img+".away")
	if err := os.Symlink(secret, img); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(secret)
	for _, args := range [][]string{
		{"snapshot", "create", "--volume", "d"},
		{"snapshot", "rollback", "--volume", "d", "1"},
		{"volume", "resize", "d", "--size", "4K", "--shrink"},
		{"volume", "info", "d"},
	} {
		fails(t, home, 7, []string{"symbolic link"}, args...)
	}
	after, _ := os.ReadFile(secret)
	if !bytes.Equal(before, after) {
		t.Fatal("the host file behind the link was changed")
	}
	points, _ := filepath.Glob(filepath.Join(dir, ".strata-points", "*"))
	for _, p := range points {
		if data, _ := os.ReadFile(p); bytes.Contains(data, marker) {
			t.Fatalf("restore point data %s holds the host file", p)
		}
	}
	// Deleting the volume forgets it and leaves the link and its target.
	ok(t, home, "snapshot", "delete", "--volume", "d", "1")
	ok(t, home, "volume", "delete", "d", "--purge")
	if _, err := os.Lstat(img); err != nil {
		t.Errorf("delete removed what was at the path: %v", err)
	}
}

// An image replaced by a file of another owner (here nobody's) is not the
// volume's image; strata's own replacements (a rollback renames a new file
// over the image) keep working, rollback after rollback.
func TestReplacedImageIsRefusedButRollbackIsNot(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	sparseFile(t, img, 1<<20, map[int64][]byte{0: []byte("first")})
	ok(t, home, "volume", "import", img, "--name", "d")
	ok(t, home, "snapshot", "create", "--volume", "d")
	writeAt(t, img, []byte("second"))
	ok(t, home, "snapshot", "create", "--volume", "d")
	ok(t, home, "snapshot", "rollback", "--volume", "d", "1")
	ok(t, home, "snapshot", "rollback", "--volume", "d", "2")
	ok(t, home, "snapshot", "rollback", "--volume", "d", "1")
	if data, _ := os.ReadFile(img); !bytes.HasPrefix(data, []byte("first")) {
		t.Fatalf("after rollbacks the image starts %q", data[:8])
	}
	ok(t, home, "volume", "info", "d")
	other := filepath.Join(dir, "other.img")
	sparseFile(t, other, 1<<20, nil)
	os.Chown(other, 65534, 65534)
	os.Rename(other, img)
	for _, args := range [][]string{
		{"snapshot", "create", "--volume", "d"},
		{"volume", "resize", "d", "--size", "2M"},
		{"volume", "info", "d"},
	} {
		fails(t, home, 7, []string{"no longer the file registered"}, args...)
	}
}

// An in-place import from a directory someone other than root can write
// is warned about.
func TestInPlaceImportFromUserDirectoryWarns(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	os.Chown(dir, 65534, 65534)
	img := filepath.Join(dir, "disk.img")
	sparseFile(t, img, 1<<20, nil)
	r := runIn(t, home, nil, "volume", "import", img)
	if r.code != 0 || !strings.Contains(r.stderr, "owned by uid 65534") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// A volume recorded before strata kept image identities (no file_id) is
// not refused: its identity is recorded at first use.
func TestVolumeWithoutRecordedIdentityGetsOne(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v struct {
		volumeJSON
		FileID *struct{ Dev, Ino uint64 } `json:"file_id"`
	}
	jsonOf(t, home, &v, "volume", "create", "old", "--size", "1M")
	if v.FileID == nil {
		t.Fatal("no file_id recorded at create")
	}
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("volumes"))
		var rec map[string]any
		if err := json.Unmarshal(b.Get([]byte(v.ID)), &rec); err != nil {
			return err
		}
		delete(rec, "file_id")
		raw, _ := json.Marshal(rec)
		return b.Put([]byte(v.ID), raw)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ok(t, home, "snapshot", "create", "--volume", "old")
	var list []struct {
		FileID *struct{ Dev, Ino uint64 } `json:"file_id"`
	}
	jsonOf(t, home, &list, "volume", "list")
	if len(list) != 1 || list[0].FileID == nil {
		t.Fatalf("identity not recorded at first use: %+v", list)
	}
}

// guest import --adopt-disks: a disk declared format=qcow2 whose backing
// file lies outside the pools needs --allow-backing.
func TestAdoptedOverlayOutsidePoolsNeedsAllowBacking(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	secret, _ := hostSecret(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "ov.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", img, "1M")
	cfg := filepath.Join(dir, "o.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'o'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'format=qcow2,vdev=hda,access=w,target=%s' ]\n", img)), 0o600)
	fails(t, home, 7, []string{"--allow-backing"}, "guest", "import", cfg, "--adopt-disks")
	fails(t, home, 3, nil, "volume", "info", "o-hda")
	ok(t, home, "guest", "import", cfg, "--adopt-disks", "--allow-backing")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "info", "o-hda")
	if v.Format != "qcow2" || v.Backing == nil || *v.Backing != secret {
		t.Errorf("declared overlay: %+v", v)
	}
}
