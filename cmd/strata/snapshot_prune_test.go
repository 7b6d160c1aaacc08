package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// Passwords stay out of prune output and of error messages.
func TestPasswordNotInPruneOrErrors(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("S3cretPW"), 0o600)
	ok(t, home, "guest", "define", "g1", "--disk", "sys", "--vnc", "--vncpasswd-file", pw)
	ok(t, home, "snapshot", "create", "g1")
	r := runIn(t, home, nil, "-o", "json", "snapshot", "prune", "g1", "--keep-last", "10", "--dry-run")
	r2 := runIn(t, home, nil, "guest", "set", "g1", "vncpasswd=An0therPW", "memory=abc")
	cfg := filepath.Join(t.TempDir(), "x.cfg")
	os.WriteFile(cfg, []byte("name = 'x'\nbuilder = 'hvm'\nmemory = 256\nvncpasswd=TopSecret3\n"), 0o600)
	r3 := runIn(t, home, nil, "guest", "import", cfg)
	for _, out := range []string{r.stdout + r.stderr, r2.stdout + r2.stderr, r3.stdout + r3.stderr} {
		for _, secret := range []string{"S3cretPW", "An0therPW", "TopSecret3"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows a password:\n%s", out)
			}
		}
	}
	if r2.code != 2 || r3.code != 2 {
		t.Errorf("exit codes %d %d, want 2 2", r2.code, r3.code)
	}
}

// --older-than overflows time.Duration: 213504d (585 years) wraps to
// about 25 minutes, and prune deletes every point older than that.
func TestPruneOlderThanOverflow(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "qcow2", "")
	for day := 1; day <= 3; day++ {
		if r := runIn(t, home, []string{fmt.Sprintf("STRATA_TEST_NOW=2026-11-%02dT12:00:00Z", day)}, "snapshot", "create", "--volume", "v"); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	r := runIn(t, home, []string{"STRATA_TEST_NOW=2026-11-04T12:00:00Z"}, "snapshot", "prune", "--volume", "v", "--older-than", "213504d")
	if r.code != 2 {
		t.Errorf("--older-than 213504d: exit %d, want 2 (refused)", r.code)
	}
	if got := ids(points(t, home, "--volume", "v")); got != "1,2,3" {
		t.Errorf("points %q after prune --older-than 213504d, want 1,2,3 (all younger than 585 years)", got)
	}
}
