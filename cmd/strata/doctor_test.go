package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
