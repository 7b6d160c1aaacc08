package main_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// guest screenshot writes FILE through a temporary file of its own
// making: whatever someone put at a predictable temporary name (a hard
// link to another file, a symlink) is never written into, and a
// symlink at FILE is replaced, not followed.
func TestScreenshotNeverWritesThroughAPlantedFile(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "ss", "STRATA-SS", boottest.PowerButton)
	ok(t, home, "guest", "start", "ss", "--wait-serial", "STRATA-SS")
	defer ok(t, home, "guest", "kill", "ss")

	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	if err := os.Link(victim, shot+".strata-tmp"); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.png")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}

	r := runIn(t, home, nil, "guest", "screenshot", "ss", shot)
	t.Logf("screenshot beside a planted temporary file: exit %d %s", r.code, r.stderr)
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the screenshot was written into a file linked at its temporary name: %.20q", b)
	}
	ok(t, home, "guest", "screenshot", "ss", link)
	if b, _ := os.ReadFile(other); string(b) != "other\n" {
		t.Errorf("the screenshot was written through the symlink FILE: %.20q", b)
	}
	if st, err := os.Lstat(link); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		t.Errorf("FILE after the screenshot: %v %v", st, err)
	}
}

// A FILE that names a directory is refused (exit 2) and leaves no
// temporary file beside it.
func TestScreenshotToADirectoryLeavesNothing(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "sd", "STRATA-SD", boottest.PowerButton)
	ok(t, home, "guest", "start", "sd", "--wait-serial", "STRATA-SD")
	defer ok(t, home, "guest", "kill", "sd")
	parent := t.TempDir()
	dir := filepath.Join(parent, "shots")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 2, []string{dir}, "guest", "screenshot", "sd", dir)
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Fatalf("a refused screenshot left files beside FILE: %v", ents)
	}
}
