package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// TestRBDGuestBootsUnderLibvirtWithCephx: a guest whose disk is an RBD
// image of a cluster with cephx on boots under the real libvirtd, whose
// QEMU runs as libvirt-qemu: strata defines the libvirt secret the
// disk's <auth> names and puts the client's key in it (read from the
// root-only keyring the pool's ceph.conf names; the key is never on a
// command line, in the domain XML or in strata's output), QEMU reads the
// ceph.conf (0644, as /etc/ceph's) and gets the key from libvirt.
func TestRBDGuestBootsUnderLibvirtWithCephx(t *testing.T) {
	home, name := libvirtHome(t)
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	c := storagetest.CephxCluster(t)
	usage := "client." + c.Client + " secret"
	t.Cleanup(func() { undefineSecret(usage) })
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--ceph-conf", c.Conf, "--id", c.Client)
	ok(t, home, "volume", "create", name, "--pool", "ceph", "--size", "1M")
	var v struct{ Path string }
	jsonOf(t, home, &v, "volume", "info", name)
	if !strings.Contains(v.Path, ":id="+c.Client) {
		t.Fatalf("volume path %q names no cephx client", v.Path)
	}
	writeRBDBootSector(t, v.Path, "STRATA-LV-RBD", boottest.PowerButton)
	ok(t, home, "guest", "define", name, "--disk", name, "--memory", "16", "--boot", "c", "--os", "other", "--driver", "libvirt")
	ok(t, home, "guest", "set", name, "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+(os.Getpid()+3)%50))

	xml := ok(t, home, "guest", "render", name, "--format", "libvirt")
	if !strings.Contains(xml, `protocol="rbd"`) || !strings.Contains(xml, `usage="`+usage+`"`) {
		t.Fatalf("rendered disk:\n%s", xml)
	}
	r := runIn(t, home, nil, "guest", "start", name, "--wait-serial", "STRATA-LV-RBD")
	if r.code != 0 {
		t.Fatalf("guest start through libvirt from an RBD volume with cephx: exit %d\n%s", r.code, r.stderr)
	}
	key := keyOf(t, c.Conf, c.Client)
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Fatal("strata's output carries the cephx key")
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "dumpxml", name).CombinedOutput(); err != nil || strings.Contains(string(out), key) || !strings.Contains(string(out), "<auth username='"+c.Client+"'>") {
		t.Fatalf("the running domain's XML (%v):\n%s", err, out)
	}
	// libvirt's QEMU is the image's watcher: the guest runs from it.
	if out := storagetest.Cmd(t, "rbd", "--conf", c.Conf, "status", "--format", "json", rbdImage(v.Path)); !strings.Contains(out, `"address"`) {
		t.Fatalf("rbd status of the running guest's image: %s", out)
	}
	// The secret is private: libvirt does not hand its value back.
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "secret-list").CombinedOutput(); err != nil || !strings.Contains(string(out), usage) {
		t.Fatalf("virsh secret-list (%v):\n%s", err, out)
	}
	ok(t, home, "guest", "stop", name, "--timeout", "60s")
	// Started again (the secret exists now: its value is set again).
	ok(t, home, "guest", "start", name, "--wait-serial", "STRATA-LV-RBD")
	ok(t, home, "guest", "kill", name)
	ok(t, home, "guest", "delete", name)
	ok(t, home, "volume", "delete", name)

	// libvirt (9.0) cannot open an image in an RBD namespace: refused
	// before anything is defined, saying what to do.
	ok(t, home, "pool", "add", "ceph-ns", "--driver", "rbd", "--pool", c.Pool, "--namespace", c.Namespace(t), "--ceph-conf", c.Conf, "--id", c.Client)
	ok(t, home, "volume", "create", name, "--pool", "ceph-ns", "--size", "1M")
	ok(t, home, "guest", "define", name, "--disk", name, "--memory", "16", "--boot", "c", "--os", "other", "--driver", "libvirt")
	fails(t, home, 8, []string{"namespace", "driver=qemu"}, "guest", "start", name)
	ok(t, home, "guest", "delete", name)
	ok(t, home, "volume", "delete", name)
}

// writeRBDBootSector puts a boot sector at the start of the RBD image of
// an rbd: volume path (through qemu-img: the image keeps its identity).
func writeRBDBootSector(t *testing.T, path, marker string, then boottest.Action) {
	t.Helper()
	sector := filepath.Join(t.TempDir(), "sector.raw")
	if err := os.WriteFile(sector, make([]byte, 512), 0o600); err != nil {
		t.Fatal(err)
	}
	writeBootSector(t, sector, marker, then)
	storagetest.Cmd(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", sector, path)
}

// rbdImage is POOL/IMAGE of an rbd: volume path.
func rbdImage(path string) string {
	spec, _, _ := strings.Cut(strings.TrimPrefix(path, "rbd:"), ":")
	return spec
}

// keyOf reads client id's key from its keyring (the test's own check).
func keyOf(t *testing.T, conf, id string) string {
	t.Helper()
	kr := strings.TrimSpace(storagetest.Cmd(t, "ceph-conf", "-c", conf, "--name", "client."+id, "--lookup", "keyring"))
	raw, err := os.ReadFile(kr)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "key" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no key in %s", kr)
	return ""
}

// undefineSecret removes the libvirt secret of a usage name, if any.
func undefineSecret(usage string) {
	out, _ := exec.Command("virsh", "-c", "qemu:///system", "secret-list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(l, usage) {
			_ = exec.Command("virsh", "-c", "qemu:///system", "secret-undefine", f[0]).Run()
		}
	}
}
