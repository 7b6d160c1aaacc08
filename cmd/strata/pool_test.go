package main_test

import (
	"os"
	"path/filepath"
	"testing"
)

// A pool reached through a symlink to another pool's directory is refused:
// doctor used to see the first pool's images a second time, as nobody's,
// and --repair deleted them.
func TestPoolAliasRefusedAndDoctorKeepsImages(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "keep", "--size", "16M")
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(filepath.Join(home, "pools", "default"), alias); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 4, []string{"is already pool \"default\""}, "pool", "add", "alias", "--path", alias)
	ok(t, home, "doctor", "--repair")
	if _, err := os.Stat(v.Path); err != nil {
		t.Fatalf("doctor --repair deleted the image of volume keep: %v", err)
	}
}
