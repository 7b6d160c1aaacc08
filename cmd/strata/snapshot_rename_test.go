package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
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

// Catalog keys of restore point state are target keys, read only by the
// key parser: a journal or policy under a key of no known target (a
// damaged or hand-edited catalog) is reported by doctor and skipped by
// prune --all, never taken apart as a string (a one-letter key used to
// crash both) nor read as some other target.
func TestSnapshotMalformedTargetKeys(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "qcow2", "")
	ok(t, home, "snapshot", "create", "--volume", "v")
	ok(t, home, "snapshot", "policy", "--volume", "v", "--keep-last", "5")
	var g struct {
		ID string `json:"id"`
	}
	jsonOf(t, home, &g, "golden", "create", "base", "--volume", "v")
	setMeta(t, home, func(tx *bolt.Tx) error {
		for _, k := range []string{"x", "gold", "gold-" + g.ID} { // a golden is not a target of points
			if err := tx.Bucket([]byte("policies")).Put([]byte(k), []byte(`{"keep_last":1}`)); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucketIfNotExists([]byte("journal"))
		if err != nil {
			return err
		}
		return b.Put([]byte("x"), []byte(`{"op":"rollback","to":1,"pre":2}`))
	})
	fs, code := doctor(t, home)
	if code != 7 || kinds(fs) != "unreadable-record" || fs[0].Target != "journal/x" {
		t.Errorf("doctor over a journal of key x: exit %d, %+v", code, fs)
	}
	var res []struct {
		Target    string            `json:"target"`
		Decisions []json.RawMessage `json:"decisions"`
	}
	jsonOf(t, home, &res, "snapshot", "prune", "--all", "--dry-run")
	if len(res) != 1 || res[0].Target != "volume:v" || len(res[0].Decisions) != 1 {
		t.Errorf("prune --all with policies of keys x, gold and a golden's: %+v, want only volume:v's", res)
	}
}
