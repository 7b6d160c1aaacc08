package main_test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A qcow2 point's internal snapshot is tagged with the point's number and
// name (or its automatic kind), cut to a bounded length, and made unique by the point's UID: `qemu-img snapshot -l` says
// which point each is. Rollback and delete go by the recorded tag, so a
// point recorded with the tag of an older strata (strata-UID) still rolls
// back and is deleted.
func TestQcow2PointTagsCarryNumberAndName(t *testing.T) {
	home := t.TempDir()
	d := newDisk(t, home, "tv", "qcow2", "")
	d.write(t, 0x11)
	ok(t, home, "snapshot", "create", "--volume", "tv", "--name", "before-sp3")
	d.write(t, 0x22)
	ok(t, home, "snapshot", "create", "--volume", "tv")
	ok(t, home, "snapshot", "create", "--volume", "tv", "--name", "a_name.far-longer-than-any-tag-should-carry-along-in-qemu-img")
	ok(t, home, "snapshot", "rollback", "--volume", "tv", "before-sp3") // 4: pre-rollback
	d.expect(t, 0x11, "rollback to a labelled point")
	ps := points(t, home, "--volume", "tv")
	uid := `-[0-9a-f]{12}$`
	want := []*regexp.Regexp{
		regexp.MustCompile(`^strata-1-before-sp3` + uid),
		regexp.MustCompile(`^strata-2` + uid),
		regexp.MustCompile(`^strata-3-a_name.far-longer-than-any-tag-should` + uid),
		regexp.MustCompile(`^strata-4-pre-rollback` + uid),
	}
	if len(ps) != len(want) {
		t.Fatalf("points: %+v", ps)
	}
	out, err := exec.Command("qemu-img", "snapshot", "-l", d.path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img snapshot -l: %v: %s", err, out)
	}
	for i, p := range ps {
		tag := p.Disks[0].Ref
		if !want[i].MatchString(tag) || len(tag) > 7+40+13 {
			t.Fatalf("point %d (%q) is tagged %q, want %s", p.ID, p.Name, tag, want[i])
		}
		if !strings.Contains(string(out), tag) {
			t.Fatalf("qemu-img snapshot -l does not list %q:\n%s", tag, out)
		}
	}
	t.Logf("qemu-img snapshot -l:\n%s", out)

	// Point 2 as an older strata recorded it: tagged strata-UID.
	old := "strata-0123456789ab"
	run := func(args ...string) {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, out)
		}
	}
	run("snapshot", "-a", ps[1].Disks[0].Ref, d.path)
	run("snapshot", "-c", old, d.path)
	run("snapshot", "-d", ps[1].Disks[0].Ref, d.path)
	d.write(t, 0x33) // the live state again differs from point 2
	setMeta(t, home, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("points"))
		return b.ForEach(func(k, v []byte) error {
			var p map[string]any
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			if p["id"].(float64) != 2 {
				return nil
			}
			p["disks"].([]any)[0].(map[string]any)["ref"] = old
			nv, err := json.Marshal(p)
			if err != nil {
				return err
			}
			return b.Put(k, nv)
		})
	})
	ok(t, home, "snapshot", "rollback", "--volume", "tv", "2")
	d.expect(t, 0x22, "rollback to a point with an old-style tag")
	ok(t, home, "snapshot", "delete", "--volume", "tv", "2")
	if strings.Contains(strings.Join(internalSnapshots(t, d.path), " "), old) {
		t.Fatalf("delete of a point with an old-style tag left %s", old)
	}
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor: exit %d, %+v", code, fs)
	}
}
