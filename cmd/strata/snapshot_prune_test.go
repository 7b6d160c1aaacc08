package main_test

import (
	"path/filepath"
	"testing"
)

// A pre/post pair whose disks did not change but whose definition did
// (memory, vcpus, disks) is not empty: its pre point may be the only
// record of the old definition, so --empty-pairs keeps it.
func TestPruneEmptyPairsKeepsAChangedDefinition(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "sys", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--memory", "1024")
	d.write(t, 0x01)
	ok(t, home, "snapshot", "create", "web", "--pre")       // 1
	ok(t, home, "guest", "set", "web", "memory=2048")       // the update changed the definition only
	ok(t, home, "snapshot", "create", "web", "--post", "1") // 2
	ok(t, home, "snapshot", "create", "web", "--pre")       // 3
	ok(t, home, "snapshot", "create", "web", "--post", "3") // 4: nothing changed
	ok(t, home, "snapshot", "prune", "web", "--empty-pairs")
	if got := ids(points(t, home, "web")); got != "1,2" {
		t.Errorf("after --empty-pairs: %s, want 1,2 (the pair that changed the definition stays)", got)
	}
}
