package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// What a power cut keeps depends on the order of syncs: a new image,
// iso, golden image, clone, point copy or pool directory must be durable
// (its data and its name) before the catalog commit that records it, or
// the record can outlive it. These tests run the real binary under
// strace and check that order (storagetest.FileTrace.CheckDurable).

// traced runs strata under strace and returns its trace and stdout; it
// fails the test unless strata exits 0.
func traced(t *testing.T, home string, args ...string) (storagetest.FileTrace, string) {
	t.Helper()
	cmd := exec.Command(strataBinary(t), append([]string{"--home", home, "--output", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "STRATA_LOCK_TIMEOUT=60s")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	tr, code := storagetest.TraceFiles(t, cmd)
	if code != 0 {
		t.Fatalf("strata %v: exit %d\n%s", args, code, stderr.String())
	}
	return tr, stdout.String()
}

func pathOf(t *testing.T, out string) string {
	t.Helper()
	var v struct{ Path string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Path == "" {
		t.Fatalf("no path in %q: %v", out, err)
	}
	return v.Path
}

func TestVolumeCreateIsDurableBeforeItsRecord(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "catalog.db")
	// The first create also makes the default pool's directory.
	for _, c := range [][]string{
		{"volume", "create", "--size", "64M", "raw1"},
		{"volume", "create", "--size", "64M", "--format", "qcow2", "q1"},
		{"volume", "create", "--size", "64M", "--format", "qcow2", "--partition", "gpt", "--fs", "fat32", "q2"},
		{"volume", "create", "--size", "64M", "--partition", "mbr", "r2"},
	} {
		t.Run(c[len(c)-1], func(t *testing.T) {
			tr, out := traced(t, home, c...)
			tr.CheckDurable(t, pathOf(t, out), db)
		})
	}
}

func TestPoolDirectoryIsDurableBeforeItsRecord(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "catalog.db")
	ok(t, home, "volume", "list")
	dir := filepath.Join(t.TempDir(), "new", "pool")
	tr, _ := traced(t, home, "pool", "add", "p", "--path", dir)
	tr.CheckDurable(t, dir, db)
	tr.CheckDurable(t, filepath.Join(dir, ".strata-pool"), db)
	tr, out := traced(t, home, "volume", "create", "--size", "1M", "--pool", "p", "v")
	tr.CheckDurable(t, pathOf(t, out), db)
}

func TestVolumeImportCopyIsDurableBeforeItsRecord(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "catalog.db")
	src := filepath.Join(t.TempDir(), "disk.img")
	sparseFile(t, src, 8<<20, map[int64][]byte{4096: []byte("data")})
	tr, out := traced(t, home, "volume", "import", "--copy", "--format", "raw", src)
	tr.CheckDurable(t, pathOf(t, out), db)
}

func TestGoldenAndClonesAreDurableBeforeTheirRecords(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "catalog.db")
	ok(t, home, "volume", "create", "--size", "8M", "raw")
	ok(t, home, "volume", "create", "--size", "8M", "--format", "qcow2", "q")
	for _, v := range []string{"raw", "q"} {
		tr, _ := traced(t, home, "golden", "create", "--volume", v, "g-"+v)
		var g struct {
			Disks []struct{ Path string } `json:"disks"`
		}
		jsonOf(t, home, &g, "golden", "show", "g-"+v)
		if len(g.Disks) != 1 {
			t.Fatalf("golden show g-%s: %+v", v, g)
		}
		tr.CheckDurable(t, g.Disks[0].Path, db)
		for _, full := range []bool{false, true} {
			args := []string{"clone", "g-" + v, "c-" + v}
			if full {
				args = []string{"clone", "--full", "g-" + v, "f-" + v}
			}
			tr, _ := traced(t, home, args...)
			var vol struct{ Path string }
			jsonOf(t, home, &vol, "volume", "info", args[len(args)-1])
			tr.CheckDurable(t, vol.Path, db)
		}
	}
}

func TestCopyPointIsDurableBeforeItsRecord(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "catalog.db")
	ok(t, home, "volume", "create", "--size", "8M", "v")
	// The first point also makes the pool's .strata-points directory.
	tr, _ := traced(t, home, "snapshot", "create", "--volume", "v", "--method", "copy")
	var vol struct{ ID string }
	jsonOf(t, home, &vol, "volume", "info", "v")
	matches, _ := filepath.Glob(filepath.Join(home, "pools", "default", ".strata-points", vol.ID+"-*"))
	if len(matches) != 1 {
		t.Fatalf("point copies: %v", matches)
	}
	tr.CheckDurable(t, matches[0], db)
}

func TestIsoImagesAreDurableBeforeTheirRecords(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(home, "catalog.db")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "readme.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, out := traced(t, home, "iso", "build", src, "built")
	built := pathOf(t, out)
	tr.CheckDurable(t, built, db)
	tr, out = traced(t, home, "iso", "capture", built, "captured")
	tr.CheckDurable(t, pathOf(t, out), db)
	tr, out = traced(t, home, "iso", "import", "--name", "imported", "--pool", "default", built)
	tr.CheckDurable(t, pathOf(t, out), db)
}

// A catalog restore keeps the catalog it replaces in HOME/backups: that
// copy's name (and the new backups directory's) is durable before the
// home's directory is synced with the restored catalog in place.
func TestReplacedCatalogCopyIsDurable(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "--size", "1M", "v")
	bk := filepath.Join(t.TempDir(), "bk.db")
	ok(t, home, "catalog", "backup", bk)
	tr, _ := traced(t, home, "catalog", "restore", "--force", bk)
	kept, _ := filepath.Glob(filepath.Join(home, "backups", "catalog-replaced-*.db"))
	if len(kept) != 1 {
		t.Fatalf("the replaced catalog is not kept: %v", kept)
	}
	tr.CheckDurable(t, kept[0], home)
}
