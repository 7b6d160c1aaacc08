package main_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// A restore point shows its target as named now, found in the catalog by
// the point's target key: after 'guest set web name=web2' (guests can be
// renamed; volumes cannot) list, show, pin and prune name web2, never the
// name the point's record stored when it was taken.
func TestSnapshotTargetFollowsGuestRename(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "snapshot", "policy", "web", "--keep-last", "1")
	ok(t, home, "guest", "set", "web", "name=web2")

	const want = "guest:web2"
	var all, one []pointJSON
	jsonOf(t, home, &all, "snapshot", "list")
	jsonOf(t, home, &one, "snapshot", "list", "web2")
	for _, ps := range [][]pointJSON{all, one} {
		if len(ps) != 2 || ps[0].Target != want || ps[1].Target != want {
			t.Errorf("snapshot list after the rename: %+v, want 2 points of %s", ps, want)
		}
	}
	var p pointJSON
	jsonOf(t, home, &p, "snapshot", "show", "web2", "1")
	if p.Target != want {
		t.Errorf("snapshot show: target %q, want %s", p.Target, want)
	}
	jsonOf(t, home, &p, "snapshot", "pin", "web2", "2")
	if p.Target != want {
		t.Errorf("snapshot pin: target %q, want %s", p.Target, want)
	}
	if out := ok(t, home, "snapshot", "list", "web2"); !strings.Contains(out, want) || strings.Contains(out, "guest:web ") {
		t.Errorf("snapshot list (table) after the rename:\n%s", out)
	}
	// The stored policy is found by key and applied to the guest under
	// its new name; the point it decides on is named so too.
	var res []struct {
		Target    string `json:"target"`
		Decisions []struct {
			Point pointJSON `json:"point"`
			Keep  bool      `json:"keep"`
		} `json:"decisions"`
	}
	jsonOf(t, home, &res, "snapshot", "prune", "--all", "--dry-run")
	if len(res) != 1 || res[0].Target != want || len(res[0].Decisions) != 2 {
		t.Fatalf("prune --all after the rename: %+v", res)
	}
	for _, d := range res[0].Decisions {
		if d.Point.Target != want {
			t.Errorf("prune --all: point %d of target %q, want %s", d.Point.ID, d.Point.Target, want)
		}
	}
}
