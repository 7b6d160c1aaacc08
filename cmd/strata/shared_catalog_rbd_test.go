package main_test

import (
	"fmt"
	"strings"
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

// Twenty strata processes on each host at once take restore points of two
// volumes on the shared rbd pool: the catalog lists exactly the points
// taken and every one rolls back (as on a shared directory above).
func TestSharedCatalogConcurrentProcessesOnTwoHostsOnRBD(t *testing.T) {
	a, b := rbdHosts(t, storagetest.Etcd(t))
	concurrentPointsOnTwoHosts(t, a, b, "ceph")
}

// Host A dies in the middle of an RBD rollback (killed with the image
// renamed aside, and again after rbd snap rollback ran): while its lease
// lives host B is held off naming host A; then B finishes or undoes the
// rollback from the journal: the image is back under its name holding
// the point's bytes or those before, and every point still restores.
// Host A runs its rollback in the strata-rbd helper and host B runs the
// tools (and once the other way round): the state A's journal recorded
// is compared by a process that reads it on the other path.
func TestSharedCatalogRBDRollbackOfACrashedHostIsRecoveredByAnother(t *testing.T) {
	for _, c := range []struct{ step, pathA, pathB string }{
		{"rollback:rbd-moved", "helper", "cli"},
		{"rollback:rbd-applied", "helper", "cli"},
		{"rollback:rbd-applied", "cli", "helper"},
	} {
		step := c.step
		t.Run(step+"/"+c.pathA+"-then-"+c.pathB, func(t *testing.T) {
			a, b := rbdHosts(t, storagetest.Etcd(t)+"?lease=2s")
			a.env = append(a.env, "STRATA_RBD_CLIENT="+c.pathA)
			b.env = append(b.env, "STRATA_RBD_CLIENT="+c.pathB)
			d := newDiskOn(t, a, "v", "ceph")
			d.write(t, 0xa1)
			a.ok(t, "snapshot", "create", "--volume", "v")
			d.write(t, 0xb2)
			r := a.run(t, []string{"STRATA_CRASH_AT=" + step}, "snapshot", "rollback", "--volume", "v", "1")
			if r.code != -1 && r.code != 137 {
				t.Fatalf("host A's rollback with STRATA_CRASH_AT=%s: exit %d, want it killed\n%s", step, r.code, r.stderr)
			}
			killed := time.Now()
			r = b.run(t, []string{"STRATA_LOCK_TIMEOUT=300ms"}, "snapshot", "rollback", "--volume", "v", "1")
			if early := time.Since(killed) < 1500*time.Millisecond; early && (r.code != 6 || !strings.Contains(r.stderr, "host hosta")) {
				t.Fatalf("B while A's lease lives: exit %d, want 6 naming host hosta\n%s", r.code, r.stderr)
			}
			time.Sleep(2500 * time.Millisecond) // A's lease runs out
			b.ok(t, "doctor", "--repair")
			if !d.has(t, 0xa1) && !d.has(t, 0xb2) {
				t.Fatalf("after recovery the volume holds neither the point's bytes nor those before the rollback")
			}
			var pts []struct {
				ID   int
				Kind string
			}
			b.json(t, &pts, "snapshot", "list", "--volume", "v")
			for _, p := range pts {
				b.ok(t, "snapshot", "rollback", "--volume", "v", fmt.Sprint(p.ID))
			}
			b.ok(t, "snapshot", "rollback", "--volume", "v", "1")
			d.expect(t, 0xa1, "point 1 after the recovery")
			if r := a.run(t, nil, "doctor"); r.code != 0 {
				t.Fatalf("doctor on host A: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// newDiskOn is newDisk on host h (its shared catalog).
func newDiskOn(t *testing.T, h host, name, pool string) disk {
	t.Helper()
	var v volumeJSON
	h.json(t, &v, "volume", "create", name, "--size", "32M", "--pool", pool)
	return disk{v.Path, "raw"}
}
