package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A pool directory carries a marker naming the home that owns it; another
// home cannot add it (two homes sharing a pool deleted each other's
// volumes on doctor --repair).
func TestPoolOfAnotherHomeIsRefused(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	shared := filepath.Join(t.TempDir(), "shared")
	ok(t, a, "pool", "add", "p", "--path", shared)
	raw, err := os.ReadFile(filepath.Join(shared, ".strata-pool"))
	if err != nil || !strings.Contains(string(raw), "home_id") {
		t.Fatalf("marker: %v %s", err, raw)
	}
	fails(t, b, 5, []string{"another strata state home"}, "pool", "add", "p", "--path", shared)
	// A directory holding strata's files without a marker (a pool of a
	// home from before markers) is refused too.
	ok(t, a, "volume", "create", "v", "--size", "1M", "--pool", "p")
	os.Remove(filepath.Join(shared, ".strata-pool"))
	fails(t, b, 5, []string{"no owner marker"}, "pool", "add", "p", "--path", shared)
}

// pool add refuses "/", the state home, its internal folders, and a
// directory that holds the home; a new folder under HOME/pools is fine.
func TestPoolAddRefusesStateHomeAndRoot(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "list")
	for _, p := range []string{"/", home, filepath.Join(home, "locks"), filepath.Join(home, "pools"), filepath.Join(home, "backups"),
		filepath.Join(home, "pools", "default", "sub"), filepath.Dir(home), home + "/./locks/.."} {
		fails(t, home, 2, []string{"invalid path"}, "pool", "add", "x", "--path", p)
	}
	fails(t, home, 4, []string{"already pool \"default\""}, "pool", "add", "x", "--path", filepath.Join(home, "pools", "default"))
	if _, err := os.Stat(filepath.Join(home, "backups")); err == nil {
		t.Errorf("a refused pool add created its directory")
	}
	ok(t, home, "pool", "add", "fast", "--path", filepath.Join(home, "pools", "fast"))
}

// Two homes that shared a pool directory before markers existed: doctor
// --repair in either removes nothing of the other's, since the directory
// has no marker and holds files it does not know. A pool without a
// marker that holds only what the home knows is claimed by doctor, and
// then cleaned as before.
func TestDoctorKeepsFilesOfAnotherHome(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	shared := filepath.Join(t.TempDir(), "shared")
	marker := filepath.Join(shared, ".strata-pool")
	ok(t, a, "pool", "add", "p", "--path", shared)
	os.Remove(marker)
	ok(t, b, "pool", "add", "p", "--path", shared)
	os.Remove(marker)
	var va, vb volumeJSON
	jsonOf(t, a, &va, "volume", "create", "va", "--size", "1M", "--pool", "p")
	jsonOf(t, b, &vb, "volume", "create", "vb", "--size", "1M", "--pool", "p")
	ok(t, a, "snapshot", "create", "--volume", "va")
	for _, h := range []string{a, b} {
		fs, _ := doctor(t, h, "--repair")
		for _, f := range fs {
			if f.Kind == "orphan-file" && (f.Repaired || !strings.Contains(f.Detail, "no owner marker")) {
				t.Errorf("doctor --repair in %s: %+v", h, f)
			}
		}
	}
	for _, p := range []string{va.Path, vb.Path} {
		if !exists(t, p) {
			t.Errorf("doctor --repair removed %s", p)
		}
	}
	if exists(t, marker) {
		t.Fatalf("a shared pool was claimed")
	}
	// Another home's marker: the same.
	ok(t, b, "volume", "delete", "vb")
	ok(t, b, "pool", "remove", "p")
	stray := filepath.Join(shared, "0123456789abcdef.img")
	touch(t, stray)
	os.WriteFile(marker, []byte(`{"home_id":"00000000000000000000000000000000","home":"/elsewhere"}`), 0o600)
	fs, _ := doctor(t, a, "--repair")
	if _, rep := orphanPaths(fs); rep[stray] || !exists(t, stray) {
		t.Errorf("doctor --repair removed a file from another home's pool: %+v", fs)
	}
	// Only this home's files left: doctor --repair claims the pool, and
	// cleans it from then on.
	os.Remove(marker)
	os.Remove(stray)
	if fs, code := doctor(t, a, "--repair"); code != 0 {
		t.Fatalf("doctor --repair: exit %d, %+v", code, fs)
	}
	if !exists(t, marker) {
		t.Fatalf("doctor did not claim the pool")
	}
	touch(t, stray)
	fs, code := doctor(t, a, "--repair")
	if _, rep := orphanPaths(fs); code != 0 || !rep[stray] || exists(t, stray) {
		t.Errorf("an orphan in a claimed pool: exit %d, %+v", code, fs)
	}
}

// A copy of a home (cp -a) keeps its ID but not its path: its doctor does
// not take the original's new volumes, in the pools both records name,
// for orphans.
func TestCopiedHomeKeepsTheOriginalsFiles(t *testing.T) {
	orig := filepath.Join(t.TempDir(), "orig")
	ok(t, orig, "volume", "create", "a", "--size", "1M")
	cp := filepath.Join(t.TempDir(), "copy")
	if out, err := runCmd("cp", "-a", orig, cp); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	var v volumeJSON
	jsonOf(t, orig, &v, "volume", "create", "b", "--size", "1M")
	fs, _ := doctor(t, cp, "--repair")
	if !exists(t, v.Path) {
		t.Fatalf("the copy's doctor --repair removed the original's volume: %+v", fs)
	}
	for _, f := range fs {
		if f.Kind == "orphan-file" && !strings.Contains(f.Detail, "another path") {
			t.Errorf("finding: %+v", f)
		}
	}
}

// In the folder of a volume imported in place, a strata-named file that
// does not name one of this home's volumes there is reported, never
// removed: another home may have imported a file of that folder.
func TestDoctorKeepsUntiedFilesNextToImportedVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	guests := filepath.Join(t.TempDir(), "guests")
	src := filepath.Join(guests, "mine.img")
	touch(t, src)
	ok(t, home, "volume", "import", src, "--name", "mine")
	untied := []string{
		filepath.Join(guests, "theirs.img.strata-rollback-0123456789ab"),
		filepath.Join(guests, ".strata-points", "0123456789abcdef-0123456789ab.img"),
		filepath.Join(guests, ".strata-tmp-flatten-theirs.img"),
	}
	tied := filepath.Join(guests, "mine.img.strata-rollback-0123456789ab")
	for _, p := range append(untied, tied) {
		touch(t, p)
	}
	fs, _ := doctor(t, home, "--repair")
	paths, rep := orphanPaths(fs)
	if len(paths) != 4 {
		t.Fatalf("doctor: %+v", fs)
	}
	for _, p := range untied {
		if rep[p] || !exists(t, p) {
			t.Errorf("doctor --repair removed %s, which no volume of this home names", p)
		}
	}
	if !rep[tied] || exists(t, tied) {
		t.Errorf("the rollback leftover of this home's volume was not removed")
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
