package main_test

import (
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// rbdHosts is twoHosts sharing an rbd pool "ceph" too (a namespace of
// its own on the test binary's cluster), added by host A: the set-up of
// two hosts whose guests' disks live on Ceph.
func rbdHosts(t *testing.T, url string) (host, host) {
	t.Helper()
	c := storagetest.CephCluster(t)
	a, b := twoHosts(t, url)
	a.ok(t, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", c.Namespace(t), "--ceph-conf", c.Conf)
	return a, b
}

// Two hosts share the etcd catalog and an rbd pool: a guest defined on
// host A with a disk on Ceph, a point taken on A, is handed over to host
// B (guest move), rolled back there and started by B's qemu driver from
// the same RBD image, in the point's state; meanwhile A's start is
// refused naming host B.
func TestSharedCatalogRBDGuestMovesAndRollsBackOnAnotherHost(t *testing.T) {
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	a, b := rbdHosts(t, storagetest.Etcd(t))
	a.ok(t, "volume", "create", "bs", "--pool", "ceph", "--size", "1M")
	var v struct{ Path string }
	a.json(t, &v, "volume", "info", "bs")
	writeRBDBootSector(t, v.Path, "RBD-HOSTS-POINT", boottest.PowerButton)
	a.ok(t, "guest", "define", "bs", "--disk", "bs", "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu")
	a.ok(t, "snapshot", "create", "bs")
	writeRBDBootSector(t, v.Path, "RBD-HOSTS-LATER", boottest.PowerButton)
	a.ok(t, "guest", "start", "bs", "--wait-serial", "RBD-HOSTS-LATER")
	a.ok(t, "guest", "stop", "bs", "--timeout", "30s")

	// The keeper on A drops the claim within a second of the stop.
	var r result
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = b.run(t, []string{"STRATA_LOCK_TIMEOUT=1s"}, "guest", "move", "bs", "--to", "hostb"); r.code != 5 {
			break
		}
	}
	if r.code != 0 {
		t.Fatalf("guest move to host B: exit %d\n%s", r.code, r.stderr)
	}
	b.ok(t, "snapshot", "rollback", "bs", "1")
	b.ok(t, "guest", "start", "bs", "--wait-serial", "RBD-HOSTS-POINT")
	a.fails(t, 5, "runs on host hostb", "guest", "start", "bs")
	var st struct{ State, Host string }
	a.json(t, &st, "guest", "status", "bs")
	if st.State != "running" || st.Host != "hostb" {
		t.Fatalf("host A's view of the guest host B runs: %+v", st)
	}
	b.ok(t, "guest", "stop", "bs", "--timeout", "30s")
	var pts []struct {
		ID   int
		Kind string
	}
	a.json(t, &pts, "snapshot", "list", "bs")
	if len(pts) != 2 || pts[1].Kind != "pre-rollback" {
		t.Fatalf("points host A sees after B's rollback: %+v", pts)
	}
}
