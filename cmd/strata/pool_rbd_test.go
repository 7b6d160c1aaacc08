package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"
)

// TestRBDPoolVolumePointsRollback: a pool added with --driver rbd holds
// volumes as RBD images; restore points and a rollback to the older of
// two points work through the CLI, every point survives it, and the
// volume is deleted with its snapshots.
func TestRBDPoolVolumePointsRollback(t *testing.T) {
	c := storagetest.CephCluster(t)
	ns := c.Namespace(t)
	home := t.TempDir()
	fails(t, home, 2, []string{"--pool"}, "pool", "add", "ceph", "--driver", "rbd")
	fails(t, home, 3, []string{"no ceph pool", "nosuch"}, "pool", "add", "ceph", "--driver", "rbd", "--pool", "nosuch", "--ceph-conf", c.Conf)
	fails(t, home, 3, []string{"no namespace"}, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", "nosuch", "--ceph-conf", c.Conf)
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", ns, "--ceph-conf", c.Conf)
	var pool struct {
		Driver string `json:"driver"`
		RBD    struct {
			Pool, Namespace string
			CephConf        string `json:"ceph_conf"`
		} `json:"rbd"`
		Total uint64 `json:"total_bytes"`
	}
	jsonOf(t, home, &pool, "pool", "info", "ceph")
	if pool.Driver != "rbd" || pool.RBD.Pool != c.Pool || pool.RBD.Namespace != ns || pool.RBD.CephConf != c.Conf || pool.Total != uint64(c.Quota) {
		t.Fatalf("pool info: %+v", pool)
	}
	if out := ok(t, home, "pool", "info", "ceph"); !strings.Contains(out, "ceph pool:") || !strings.Contains(out, ns) {
		t.Fatalf("pool info:\n%s", out)
	}
	if out := ok(t, home, "pool", "list"); !strings.Contains(out, "rbd:"+c.Pool+"/"+ns) {
		t.Fatalf("pool list:\n%s", out)
	}
	fails(t, home, 8, []string{"raw"}, "volume", "create", "q", "--pool", "ceph", "--size", "4M", "--format", "qcow2")
	ok(t, home, "volume", "create", "disk", "--pool", "ceph", "--size", "4M")
	var vol struct {
		Path string `json:"path"`
	}
	jsonOf(t, home, &vol, "volume", "info", "disk")
	if !strings.HasPrefix(vol.Path, "rbd:"+c.Pool+"/"+ns+"/strata-") {
		t.Fatalf("volume path %q", vol.Path)
	}
	write := func(p string) {
		storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P "+p+" 0 64k", vol.Path)
	}
	read := func() byte {
		raw := filepath.Join(t.TempDir(), "r.raw")
		storagetest.Cmd(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", vol.Path, raw)
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	write("0x11")
	ok(t, home, "snapshot", "create", "--volume", "disk", "--name", "one")
	write("0x22")
	ok(t, home, "snapshot", "create", "--volume", "disk", "--name", "two")
	write("0x33")
	ok(t, home, "snapshot", "rollback", "--volume", "disk", "one")
	if got := read(); got != 0x11 {
		t.Fatalf("after a rollback to the first point the volume holds %#x", got)
	}
	ok(t, home, "snapshot", "rollback", "--volume", "disk", "two")
	if got := read(); got != 0x22 {
		t.Fatalf("after a rollback to the second point the volume holds %#x", got)
	}
	list := ok(t, home, "snapshot", "list", "--volume", "disk")
	for _, name := range []string{"one", "two"} {
		if !strings.Contains(list, name) {
			t.Fatalf("point %q is gone after the rollbacks:\n%s", name, list)
		}
	}
	// A golden image of the volume and two linked clones of it: RBD
	// clones, each its own; the golden stays while they depend on it.
	ok(t, home, "golden", "create", "gold", "--volume", "disk")
	ok(t, home, "clone", "gold", "c", "--count", "2")
	var clone struct {
		Path    string  `json:"path"`
		Backing *string `json:"backing"`
	}
	jsonOf(t, home, &clone, "volume", "info", "c-1")
	if !strings.HasPrefix(clone.Path, "rbd:") || clone.Backing == nil || !strings.HasPrefix(*clone.Backing, "rbd:") {
		t.Fatalf("clone: %+v", clone)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x44 0 64k", clone.Path)
	if got := read(); got != 0x22 {
		t.Fatalf("the source holds %#x after its clone was written", got)
	}
	if r := runIn(t, home, nil, "golden", "delete", "gold"); r.code == 0 {
		t.Fatal("a golden image with clones was deleted")
	}
	ok(t, home, "volume", "delete", "c-1")
	ok(t, home, "volume", "delete", "c-2")
	ok(t, home, "golden", "delete", "gold")
	ok(t, home, "snapshot", "delete", "--volume", "disk", "1-4")
	if out := storagetest.Cmd(t, "rbd", "--conf", c.Conf, "snap", "ls", vol.Path[len("rbd:"):strings.Index(vol.Path, ":conf=")]); strings.TrimSpace(out) != "" {
		t.Fatalf("snapshots left after every point was deleted: %s", out)
	}
	ok(t, home, "volume", "delete", "disk")
	if out := storagetest.Cmd(t, "rbd", "--conf", c.Conf, "ls", c.Pool+"/"+ns); strings.TrimSpace(out) != "" {
		t.Fatalf("images left after the volume was deleted: %s", out)
	}
}

// TestDoctorReportsRBDImageDeletedBehindStrata: doctor finds an rbd
// volume whose image was removed with rbd rm (and nothing wrong with one
// whose image is there: an rbd: path is not a missing file).
func TestDoctorReportsRBDImageDeletedBehindStrata(t *testing.T) {
	c := storagetest.CephCluster(t)
	ns := c.Namespace(t)
	home := t.TempDir()
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", ns, "--ceph-conf", c.Conf)
	ok(t, home, "volume", "create", "kept", "--pool", "ceph", "--size", "4M")
	ok(t, home, "volume", "create", "gone", "--pool", "ceph", "--size", "4M")
	ok(t, home, "snapshot", "create", "--volume", "kept")
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor of a healthy rbd pool: exit %d, %+v", code, fs)
	}
	var vol struct {
		Path string `json:"path"`
	}
	jsonOf(t, home, &vol, "volume", "info", "gone")
	spec := strings.TrimPrefix(vol.Path, "rbd:")
	spec = spec[:strings.Index(spec, ":")]
	storagetest.Cmd(t, "rbd", "--conf", c.Conf, "rm", "--no-progress", spec)
	fs, code := doctor(t, home)
	if code != 7 || len(fs) != 1 || fs[0].Kind != "missing-image" || !strings.Contains(fs[0].Detail, "gone") {
		t.Fatalf("doctor after rbd rm: exit %d, %+v", code, fs)
	}
}

// TestRBDVolumeOpenByAClientIsInUse: an RBD image a QEMU has open (a
// watcher, whichever host it runs on) is in use for the CLI's check as
// for the library's: volume delete and a point refuse (exit 5) naming a
// ceph client, and change nothing (delete removed the record, then rbd rm
// refused, leaving the image without its volume).
func TestRBDVolumeOpenByAClientIsInUse(t *testing.T) {
	c := storagetest.CephCluster(t)
	home := t.TempDir()
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", c.Namespace(t), "--ceph-conf", c.Conf)
	ok(t, home, "volume", "create", "held", "--pool", "ceph", "--size", "4M")
	var vol struct {
		Path string `json:"path"`
	}
	jsonOf(t, home, &vol, "volume", "info", "held")
	spec := vol.Path[len("rbd:"):strings.Index(vol.Path, ":conf=")]
	q := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-S", "-display", "none", "-nodefaults",
		"-drive", "file="+vol.Path+",format=raw,if=virtio")
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Process.Kill(); _ = q.Wait() })
	for i := 0; !strings.Contains(storagetest.Cmd(t, "rbd", "--conf", c.Conf, "status", spec), "watcher="); i++ {
		if i == 100 {
			t.Fatal("QEMU never opened the image")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fails(t, home, 5, []string{`volume "held"`, "a ceph client"}, "volume", "delete", "held")
	fails(t, home, 5, []string{`volume "held"`, "a ceph client"}, "snapshot", "create", "--volume", "held")
	if out := ok(t, home, "snapshot", "list", "--volume", "held"); strings.Contains(out, "held") {
		t.Fatalf("a refused point was recorded:\n%s", out)
	}
	// SIGTERM: QEMU closes the image (a killed client's watch lasts
	// until the cluster times it out).
	_ = q.Process.Signal(syscall.SIGTERM)
	_ = q.Wait()
	ok(t, home, "volume", "delete", "held")
}
