package main_test

import (
	"path/filepath"
	"testing"
)

// The first command after a crash may be snapshot create on the target
// itself: it finishes or undoes what the dead process left, then plans
// its point from the catalog as recovered (which disks, in what state),
// never from what it read before recovering.
func TestSnapshotCreateRightAfterACrashRecoversFirst(t *testing.T) {
	for _, s := range []struct {
		args     []string
		step     string
		now      byte   // what the disks hold once recovered
		wantIDs  string // the points then, the new one last
		newPoint string
	}{
		{[]string{"snapshot", "create", "web"}, "create:recorded", 0x0c, "1,2,4", "4"},
		{[]string{"snapshot", "create", "web"}, "create:disk-2", 0x0c, "1,2,4", "4"},
		{[]string{"snapshot", "delete", "web", "1"}, "delete:marked", 0x0c, "2,3", "3"},
		{[]string{"snapshot", "rollback", "web", "1"}, "rollback:pre-point", 0x0a, "1,2,3,4", "4"},
		{[]string{"snapshot", "rollback", "web", "1"}, "create:disk-1", 0x0c, "1,2,4", "4"},
		{[]string{"snapshot", "rollback", "web", "1"}, "rollback:disk-1", 0x0a, "1,2,3,4", "4"},
	} {
		t.Run(s.step, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			r, q := guestWithTwoDisks(t, home)
			crash(t, home, s.step, s.args...)
			ok(t, home, "snapshot", "create", "web")
			if got := ids(points(t, home, "web")); got != s.wantIDs {
				t.Errorf("points after a crash at %s and a create: %s, want %s", s.step, got, s.wantIDs)
			}
			if res := runIn(t, home, nil, "doctor"); res.code != 0 {
				t.Errorf("doctor: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			r.write(t, 0x0e)
			q.write(t, 0x0e)
			ok(t, home, "snapshot", "rollback", "web", s.newPoint)
			r.expect(t, s.now, "raw disk rolled back to the point made after recovery")
			q.expect(t, s.now, "qcow2 disk rolled back to the point made after recovery")
		})
	}
}

// A rollback that died gives the guest back its disks at the point (one
// disk fewer here) once it is finished: a point made by the first command
// after the crash covers the disks the guest has then.
func TestSnapshotCreateAfterACrashedRollbackCoversTheRestoredDisks(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "raw", "")
	newDisk(t, home, "data", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "guest", "attach", "web", "--disk", "data")
	ok(t, home, "snapshot", "create", "web")
	crash(t, home, "rollback:disk-1", "snapshot", "rollback", "web", "1")
	ok(t, home, "snapshot", "create", "web")
	var p pointJSON
	jsonOf(t, home, &p, "snapshot", "show", "web", "4")
	if len(p.Disks) != 1 || p.Disks[0].Volume != "sys" {
		t.Errorf("the point made after the rollback was finished covers %+v, want sys only (the guest's disks at point 1)", p.Disks)
	}
	if res := runIn(t, home, nil, "doctor"); res.code != 0 {
		t.Errorf("doctor: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}
