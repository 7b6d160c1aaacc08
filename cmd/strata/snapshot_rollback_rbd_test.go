package main_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// TestRBDRollbackUndoneWhenALaterDiskFails: a guest's RBD disk rolled
// back to a point whose objects it still has (overwritten in place
// since) keeps its ID, size, modify time and object map; when the
// guest's second disk then fails to roll back, the undo must still see
// the RBD disk as restored and put it back: every disk as it was.
func TestRBDRollbackUndoneWhenALaterDiskFails(t *testing.T) {
	c := storagetest.CephCluster(t)
	ns := c.Namespace(t)
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", ns, "--ceph-conf", c.Conf)
	r := newDisk(t, home, "sys", "raw", "ceph")
	q := newDisk(t, home, "data", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "data")
	r.write(t, 0x0a)
	q.write(t, 0x0a)
	ok(t, home, "snapshot", "create", "web")
	r.write(t, 0x0b)
	q.write(t, 0x0b)
	// The second disk's point goes behind strata's back: its restore
	// fails after the RBD disk's.
	var p pointJSON
	jsonOf(t, home, &p, "snapshot", "show", "web", "1")
	if len(p.Disks) != 2 || !strings.HasPrefix(p.Disks[0].Method, "rbd") {
		t.Fatalf("point 1: %+v", p)
	}
	storagetest.Cmd(t, "qemu-img", "snapshot", "-d", p.Disks[1].Ref, q.path)
	res := runIn(t, home, nil, "snapshot", "rollback", "web", "1")
	if res.code == 0 || !strings.Contains(res.stderr, "nothing was rolled back") {
		t.Fatalf("rollback onto a broken point: exit %d, %s", res.code, res.stderr)
	}
	r.expect(t, 0x0b, "RBD disk after a failed rollback")
	q.expect(t, 0x0b, "qcow2 disk after a failed rollback")
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor after the failed rollback: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
