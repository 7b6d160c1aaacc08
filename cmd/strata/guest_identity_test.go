package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two guests never both write one image, however it is given: by volume,
// by the volume's path, by a symlink to it, or as a plain file by path.
// Read-only sharing is fine.
func TestTwoGuestsCannotShareAWritableImage(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "shared", "raw", "")
	ok(t, home, "guest", "define", "a", "--disk", "shared", "--memory", "64")
	dir := t.TempDir()
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(d.path, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{d.path, link} {
		y := "api_version: strata/v1\nname: b\nmemory: 64\ndisks: [{path: " + path + ", vdev: hda}]\n"
		fails(t, home, 5, []string{`already a writable disk of guest "a"`}, "guest", "define", "-f", writeFile(t, y))
		ro := "api_version: strata/v1\nname: b-ro\nmemory: 64\ndisks: [{path: " + path + ", vdev: hda, access: ro}]\n"
		ok(t, home, "guest", "define", "-f", writeFile(t, ro))
		ok(t, home, "guest", "delete", "b-ro")
	}
	// A plain file by path, then the same file through a symlink, and a
	// set that makes a read-only share writable.
	img := filepath.Join(dir, "plain.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	ok(t, home, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: c\nmemory: 64\ndisks: [{path: "+img+", vdev: hda}]\n"))
	os.Symlink(img, filepath.Join(dir, "plain-link.img"))
	fails(t, home, 5, []string{`guest "c"`}, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: e\nmemory: 64\ndisks: [{path: "+filepath.Join(dir, "plain-link.img")+", vdev: hda}]\n"))
	ok(t, home, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: f\nmemory: 64\ndisks: [{path: "+img+", vdev: hda, access: ro}]\n"))
	fails(t, home, 5, []string{`guest "c"`}, "guest", "set", "f", "disks.0.access=rw")
	// One guest naming one image twice, writable.
	fails(t, home, 2, []string{"one image"}, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: g\nmemory: 64\ndisks: [{path: "+filepath.Join(dir, "plain-link.img")+", vdev: hda}, {path: "+d.path+", vdev: hdb}, {volume: shared, vdev: hdd}]\n"))
}

// UUIDs are unique across guests and golden images; MACs are stored lower
// case, and an all-zero or multicast one is refused.
func TestGuestIdentityIsUnique(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "g-sys", "qcow2", "")
	const uuid = "5a1e0e3c-3c1d-4f0a-9c55-2a7d1e0b9f00"
	ok(t, home, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: g\nuuid: "+uuid+"\nmemory: 64\ndisks: [{volume: g-sys, vdev: hda}]\nnics: [{mac: '00:16:3E:AB:CD:EF'}]\n"))
	var g guestJSON
	jsonOf(t, home, &g, "guest", "show", "g")
	if g.NICs[0].MAC != "00:16:3e:ab:cd:ef" {
		t.Errorf("MAC stored as %q, want lower case", g.NICs[0].MAC)
	}
	fails(t, home, 4, []string{`is already guest "g"'s`}, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: h\nuuid: "+strings.ToUpper(strings.ReplaceAll(uuid, "-", ""))+"\nmemory: 64\n"))
	fails(t, home, 4, []string{"already used by another guest"}, "guest", "define", "h", "--nic", "mac=00:16:3e:ab:cd:ef")
	fails(t, home, 2, []string{"all zeros"}, "guest", "define", "h", "--nic", "mac=00:00:00:00:00:00")
	fails(t, home, 2, []string{"multicast"}, "guest", "define", "h", "--nic", "mac=01:16:3e:00:00:01")
	// A golden keeps its source's UUID: the source may still change, a
	// new guest may not take it.
	ok(t, home, "golden", "create", "gold", "--from", "g")
	ok(t, home, "guest", "delete", "g")
	fails(t, home, 4, []string{`golden image "gold"`}, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: k\nuuid: "+uuid+"\nmemory: 64\n"))
	// So does its MAC (one rule for define, set and clone: guests' and
	// goldens' MACs are taken).
	fails(t, home, 4, []string{"already used by another guest or a golden image"}, "guest", "define", "m", "--nic", "mac=00:16:3e:ab:cd:ef")
	ok(t, home, "clone", "gold", "lab")
	var c guestJSON
	jsonOf(t, home, &c, "guest", "show", "lab")
	if c.UUID == "" || strings.EqualFold(c.UUID, uuid) {
		t.Errorf("clone uuid %q", c.UUID)
	}
}

// A disk whose file does not exist: a warning at import; at render an
// error for a writable disk (unless --allow-missing-disks), a warning for
// a CD.
func TestMissingDiskWarnsAtImportFailsAtRender(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	cfg := writeFile(t, "name='gone'\ntype='hvm'\nmemory=64\ndisk=['file:/nonexistent/gone.img,hda,w', 'file:/nonexistent/cd.iso,hdc:cdrom,r']\n")
	r := runIn(t, home, nil, "guest", "import", cfg)
	if r.code != 0 || !strings.Contains(r.stderr, "/nonexistent/gone.img does not exist") || !strings.Contains(r.stderr, "/nonexistent/cd.iso does not exist") {
		t.Fatalf("import: exit %d\n%s", r.code, r.stderr)
	}
	for _, format := range []string{"xl", "xm", "libvirt", "qemu"} {
		fails(t, home, 3, []string{"writable disk hda", "/nonexistent/gone.img does not exist"}, "guest", "render", "gone", "--format", format)
	}
	ok(t, home, "guest", "render", "gone", "--format", "xl", "--allow-missing-disks")
	ok(t, home, "guest", "set", "gone", "disks.0.access=ro")
	ok(t, home, "guest", "render", "gone", "--format", "xl")
}

// Rendering for a host without Xen's bridges (--bridge-map), and the QEMU
// render's QMP socket in the guest's runtime directory.
func TestRenderBridgeMapAndQMPSocket(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "guest", "define", "n", "--memory", "64", "--nic", "bridge=xenbr0", "--nic", "bridge=lan")
	argv := ok(t, home, "guest", "render", "n", "--format", "qemu", "--network", "bridge", "--bridge-map", "xenbr0=br0")
	if !strings.Contains(argv, "br=br0") || !strings.Contains(argv, "br=lan") || strings.Contains(argv, "xenbr0") {
		t.Errorf("qemu argv:\n%s", argv)
	}
	if !strings.Contains(argv, "-qmp\nunix:"+home+"/run/") || !strings.Contains(argv, "qmp-render.sock,server=on,wait=off") {
		t.Errorf("no QMP socket in the runtime directory:\n%s", argv)
	}
	xml := ok(t, home, "guest", "render", "n", "--format", "libvirt", "--hypervisor", "kvm", "--bridge-map", "xenbr0=br0")
	if !strings.Contains(xml, `<source bridge="br0">`) || strings.Contains(xml, "xenbr0") {
		t.Errorf("libvirt XML:\n%s", xml)
	}
	if cfg := ok(t, home, "guest", "render", "n", "--format", "xl"); !strings.Contains(cfg, "bridge=xenbr0") {
		t.Errorf("without a map the definition's bridge: %s", cfg)
	}
	fails(t, home, 2, []string{"FROM=TO"}, "guest", "render", "n", "--bridge-map", "xenbr0")
}
