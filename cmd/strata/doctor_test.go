package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-vm/strata/storage/storagetest"
)

type findingOut struct {
	Kind, Path, Target, Detail string
	Repaired                   bool
}

func doctor(t *testing.T, home string, args ...string) ([]findingOut, int) {
	t.Helper()
	r := runIn(t, home, nil, append([]string{"--output", "json", "doctor"}, args...)...)
	var fs []findingOut
	if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil {
		t.Fatalf("doctor output: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return fs, r.code
}

func kinds(fs []findingOut) string {
	var k []string
	for _, f := range fs {
		k = append(k, f.Kind)
	}
	return strings.Join(k, ",")
}

// doctor reports what does not agree and repairs only what strata made.
func TestDoctorFindsAndRepairs(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	q := newDisk(t, home, "q", "qcow2", "")
	r := newDisk(t, home, "gone", "raw", "")
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("a fresh home: exit %d, %+v", code, fs)
	}
	pool := filepath.Dir(q.path)
	orphan := filepath.Join(pool, ".strata-tmp-0123456789abcdef.img")
	os.WriteFile(orphan, []byte("half a copy"), 0o600)
	admins := filepath.Join(pool, "notes.txt") // not strata's: never touched
	os.WriteFile(admins, []byte("mine"), 0o600)
	storagetest.Cmd(t, "qemu-img", "snapshot", "-c", "strata-deadbeef0000", q.path) // a point nobody records
	storagetest.Cmd(t, "qemu-img", "snapshot", "-c", "admins-own", q.path)
	os.Remove(r.path)
	fs, code := doctor(t, home)
	if code != 7 || kinds(fs) != "missing-file,orphan-file,orphan-snapshot" {
		t.Fatalf("doctor: exit %d, %s\n%+v", code, kinds(fs), fs)
	}
	fs, code = doctor(t, home, "--repair")
	for _, f := range fs {
		if f.Repaired == (f.Kind == "missing-file") {
			t.Errorf("repair of %s: repaired=%v", f.Kind, f.Repaired)
		}
	}
	if code != 7 {
		t.Errorf("a missing image cannot be repaired: exit %d, want 7", code)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan kept")
	}
	if _, err := os.Stat(admins); err != nil {
		t.Errorf("doctor removed a file strata did not make: %v", err)
	}
	out := storagetest.Cmd(t, "qemu-img", "snapshot", "-l", q.path)
	if strings.Contains(out, "strata-deadbeef0000") || !strings.Contains(out, "admins-own") {
		t.Errorf("internal snapshots after repair:\n%s", out)
	}
	ok(t, home, "volume", "delete", "gone")
	if fs, code := doctor(t, home); code != 0 {
		t.Errorf("after forgetting the missing volume: exit %d %+v", code, fs)
	}
}

// A golden image whose file is gone is reported.
func TestDoctorMissingGoldenImage(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "src", "raw", "")
	var g struct {
		Disks []struct {
			Path string `json:"path"`
		} `json:"disks"`
	}
	jsonOf(t, home, &g, "golden", "create", "base", "--volume", "src")
	os.Remove(g.Disks[0].Path)
	fs, code := doctor(t, home)
	if code != 7 || kinds(fs) != "missing-file" || fs[0].Target != "golden:base" {
		t.Errorf("exit %d, %+v", code, fs)
	}
}

// touch writes a small file, making its directory.
func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("content of "+filepath.Base(path)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// orphanPaths lists the paths of the orphan-file findings, sorted, and
// whether each was repaired.
func orphanPaths(fs []findingOut) (paths []string, repaired map[string]bool) {
	repaired = map[string]bool{}
	for _, f := range fs {
		if f.Kind == "orphan-file" {
			paths = append(paths, f.Path)
			repaired[f.Path] = f.Repaired
		}
	}
	sort.Strings(paths)
	return paths, repaired
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// The folder of a volume imported in place is the admin's: files there
// named like strata's pool images, and files of their own under
// .strata-points/, are neither reported nor removed. Only names strata
// gives in any folder (a temporary copy, a rollback's new image, a point's
// data file) are its orphans.
func TestDoctorKeepsAdminFilesNextToImportedVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	guests := filepath.Join(t.TempDir(), "guests")
	src := filepath.Join(guests, "falstaff.img")
	touch(t, src)
	if err := os.Truncate(src, 32<<20); err != nil {
		t.Fatal(err)
	}
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "import", src, "--name", "falstaff")
	if !v.Imported || v.Path != src {
		t.Fatalf("import in place: %+v", v)
	}
	var p pointJSON
	jsonOf(t, home, &p, "snapshot", "create", "--volume", "falstaff") // its data file is referenced
	if len(p.Disks) != 1 {
		t.Fatalf("point: %+v", p)
	}
	pointData := p.Disks[0].Ref

	admins := []string{
		filepath.Join(guests, "0123456789abcdef.img"), // an ID-like name, outside any pool
		filepath.Join(guests, "0123456789abcdef.qcow2"),
		filepath.Join(guests, "0123456789abcdef.iso"),
		filepath.Join(guests, ".strata-points", "notes.txt"),
		filepath.Join(guests, ".strata-points", "0123456789abcdef"),
		filepath.Join(guests, "falstaff.img.strata-rollback-notes"),
	}
	for _, a := range admins {
		touch(t, a)
	}
	id := filepath.Base(pointData)[:16]
	orphans := []string{
		filepath.Join(guests, ".strata-tmp-"+id+".img"),
		filepath.Join(guests, "falstaff.img.strata-rollback"),
		filepath.Join(guests, "falstaff.img.strata-rollback-0123456789ab"),
		filepath.Join(guests, ".strata-points", id+"-0123456789ab.img"),
	}
	for _, o := range orphans {
		touch(t, o)
	}
	sort.Strings(orphans)

	fs, code := doctor(t, home)
	got, _ := orphanPaths(fs)
	if code != 7 || kinds(fs) != strings.TrimSuffix(strings.Repeat("orphan-file,", len(orphans)), ",") || strings.Join(got, "\n") != strings.Join(orphans, "\n") {
		t.Fatalf("doctor: exit %d, %s\n got: %q\nwant: %q", code, kinds(fs), got, orphans)
	}
	fs, code = doctor(t, home, "--repair")
	got, repaired := orphanPaths(fs)
	if code != 0 || strings.Join(got, "\n") != strings.Join(orphans, "\n") {
		t.Fatalf("doctor --repair: exit %d, %+v", code, fs)
	}
	for _, o := range orphans {
		if !repaired[o] || exists(t, o) {
			t.Errorf("orphan %s: repaired=%v, still there=%v", o, repaired[o], exists(t, o))
		}
	}
	for _, a := range append(admins, src, pointData) {
		if !exists(t, a) {
			t.Errorf("doctor --repair removed %s", a)
		}
	}
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Errorf("after repair: exit %d, %+v", code, fs)
	}
}

// In a pool, an ISO named by ID that no medium records (a crash between
// the commit's rename and its catalog record) and a capability probe's
// leftover directory are orphans; a registered medium's image is not.
func TestDoctorPoolISOAndProbeOrphans(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	src := filepath.Join(t.TempDir(), "src")
	touch(t, filepath.Join(src, "README.TXT"))
	ok(t, home, "iso", "build", src, "inst")
	var m struct{ Path string }
	jsonOf(t, home, &m, "iso", "info", "inst")
	pool := filepath.Join(home, "pools", "default")
	if filepath.Dir(m.Path) != pool {
		t.Fatalf("iso image %q is not in the default pool %q", m.Path, pool)
	}
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("a registered iso: exit %d, %+v", code, fs)
	}

	iso := filepath.Join(pool, "0123456789abcdef.iso")
	touch(t, iso)
	probe := filepath.Join(pool, ".strata-probe-x")
	touch(t, filepath.Join(probe, "a"))
	admins := filepath.Join(pool, "notes.iso")
	touch(t, admins)
	want := []string{probe, iso}
	sort.Strings(want)

	fs, code := doctor(t, home)
	got, _ := orphanPaths(fs)
	if code != 7 || kinds(fs) != "orphan-file,orphan-file" || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("doctor: exit %d, %+v", code, fs)
	}
	fs, code = doctor(t, home, "--repair")
	got, repaired := orphanPaths(fs)
	if code != 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("doctor --repair: exit %d, %+v", code, fs)
	}
	for _, o := range want {
		if !repaired[o] || exists(t, o) {
			t.Errorf("orphan %s: repaired=%v, still there=%v", o, repaired[o], exists(t, o))
		}
	}
	for _, k := range []string{m.Path, admins} {
		if !exists(t, k) {
			t.Errorf("doctor --repair removed %s", k)
		}
	}
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Errorf("after repair: exit %d, %+v", code, fs)
	}
	ok(t, home, "iso", "info", "inst")
}

// A restore point record that cannot be read is reported by doctor, and
// while it exists --repair removes no orphan: the record may name it.
func TestDoctorUnreadablePointRecord(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "raw", "")
	ok(t, home, "snapshot", "create", "--volume", "v", "--method", "copy")
	var ps []pointJSON
	jsonOf(t, home, &ps, "snapshot", "list", "--volume", "v")
	orphan := ""
	setMeta(t, home, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("points"))
		k, raw := b.Cursor().First()
		var p struct {
			Disks []struct{ Ref string } `json:"disks"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		orphan = p.Disks[0].Ref
		return b.Put(k, []byte("{damaged"))
	})
	r := runIn(t, home, nil, "--output", "json", "doctor", "--repair")
	if r.code != 7 {
		t.Errorf("doctor --repair: exit %d, want 7 (something left to repair)\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, `"unreadable-record"`) || !strings.Contains(r.stdout, "not removed") {
		t.Errorf("doctor did not report the unreadable record and the kept file:\n%s", r.stdout)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("doctor --repair removed %s, which the unreadable record names: %v", orphan, err)
	}
}

// A healthy home gets one line saying what was checked, not an empty
// table.
func TestDoctorOfAHealthyHomeSaysWhatItChecked(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "create", "v", "--size", "16M")
	ok(t, h, "guest", "define", "g", "--disk", "v")
	r := runIn(t, h, nil, "doctor")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no problems: the catalog's 1 pool, 1 volume, 1 guest, 0 restore points") {
		t.Fatalf("doctor of a healthy home: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// doctor -o json of a healthy home prints an empty array, as every other
// listing does, never null.
func TestDoctorJSONOfAHealthyHomeIsAnEmptyArray(t *testing.T) {
	h := t.TempDir()
	r := runIn(t, h, nil, "--output", "json", "doctor")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("doctor -o json of a healthy home: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
