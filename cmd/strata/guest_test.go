package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"
)

type guestJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	UUID     string `json:"uuid"`
	Memory   int    `json:"memory"`
	Features struct {
		ACPI *bool `json:"acpi"`
	} `json:"features"`
	Disks []struct {
		Volume, Media, Path, Device, Vdev, Format string
		CDROM                                     bool `json:"cdrom"`
	} `json:"disks"`
	NICs []struct {
		MAC, Bridge, Model string
	} `json:"nics"`
	Display struct {
		VNCPasswd string `json:"vncpasswd"`
		VNCListen string `json:"vnclisten"`
	} `json:"display"`
}

type findingJSON struct {
	ID, Severity, Field, Message, Fix string
}

func lintIDs(t *testing.T, home, guest string) string {
	t.Helper()
	var fs []findingJSON
	jsonOf(t, home, &fs, "guest", "lint", "--warn-only", guest)
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	return strings.Join(ids, ",")
}

func TestGuestDefineShowSetLint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "w2k3-sys", "qcow2", "")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret-vnc\n"), 0o600)
	var g guestJSON
	r := runIn(t, home, nil, "--output", "json", "--log-level", "debug", "guest", "define", "w2k3", "--memory", "512", "--disk", "w2k3-sys",
		"--nic", "bridge=xenbr0,model=e1000", "--nic", "bridge=xenbr1", "--vnc", "--vncpasswd-file", pw, "--tablet", "--os", "win2003")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatal(err)
	}
	if len(g.NICs) != 2 || !strings.HasPrefix(g.NICs[0].MAC, "00:16:3e:") || g.NICs[0].MAC == g.NICs[1].MAC || g.UUID == "" || g.Memory != 512 {
		t.Fatalf("define: %+v", g)
	}
	if g.Display.VNCListen != "127.0.0.1" || g.Disks[0].Vdev != "hda" || g.Disks[0].Volume != "w2k3-sys" {
		t.Errorf("defaults: %+v", g)
	}
	// The password is stored but never printed or logged without --show-secrets.
	if strings.Contains(r.stdout+r.stderr, "s3cret") {
		t.Errorf("define printed or logged the VNC password")
	}
	for _, args := range [][]string{{"guest", "show", "w2k3"}, {"-o", "json", "guest", "show", "w2k3"}, {"-o", "yaml", "guest", "show", "w2k3"}, {"guest", "list"}, {"guest", "render", "w2k3", "--format", "libvirt"}} {
		if r := runIn(t, home, nil, append([]string{"--log-level", "debug"}, args...)...); r.code != 0 || strings.Contains(r.stdout+r.stderr, "s3cret") {
			t.Errorf("%v: exit %d, or the password shows:\n%s", args, r.code, r.stdout)
		}
	}
	if out := ok(t, home, "-o", "yaml", "guest", "show", "w2k3", "--show-secrets"); !strings.Contains(out, "s3cret-vnc") {
		t.Errorf("--show-secrets does not show the password")
	}
	if out := ok(t, home, "guest", "render", "w2k3", "--format", "xl", "--show-secrets"); !strings.Contains(out, `vncpasswd = "s3cret-vnc"`) {
		t.Errorf("render --show-secrets leaves the password out:\n%s", out)
	}
	// The YAML written back defines the same guest (but its MACs are taken).
	yml := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(yml, []byte(ok(t, home, "-o", "yaml", "guest", "show", "w2k3", "--show-secrets")), 0o600)
	fails(t, home, 4, []string{`is already guest "w2k3"'s`}, "guest", "define", "copy", "-f", yml)
	y, _ := os.ReadFile(yml)
	os.WriteFile(yml, regexp.MustCompile(`(?m)^uuid: .*\n`).ReplaceAll(y, nil), 0o600)
	fails(t, home, 4, []string{"already used by another guest"}, "guest", "define", "copy", "-f", yml)
	// Windows lint: no install record yet, so changes are free; once
	// Windows is recorded as installed (here: outside strata), a set that
	// changes the HAL or memory is found.
	if ids := lintIDs(t, home, "w2k3"); !strings.Contains(ids, "hal") || !strings.Contains(ids, "install-not-recorded") || strings.Contains(ids, "hal-changed") {
		t.Errorf("lint after define: %s", ids)
	}
	ok(t, home, "guest", "installed", "w2k3")
	if ids := lintIDs(t, home, "w2k3"); strings.Contains(ids, "install-not-recorded") {
		t.Errorf("lint after guest installed: %s", ids)
	}
	ok(t, home, "guest", "set", "w2k3", "acpi=0", "memory=1024", "vnclisten=0.0.0.0")
	jsonOf(t, home, &g, "guest", "show", "w2k3")
	if g.Features.ACPI == nil || *g.Features.ACPI || g.Memory != 1024 {
		t.Errorf("set: %+v", g)
	}
	ids := lintIDs(t, home, "w2k3")
	for _, want := range []string{"hal-changed", "memory-changed"} {
		if !strings.Contains(ids, want) {
			t.Errorf("lint after set: %s, want %s", ids, want)
		}
	}
	// Refusals change nothing.
	before := ok(t, home, "-o", "yaml", "guest", "show", "w2k3", "--show-secrets")
	fails(t, home, 2, []string{"memory"}, "guest", "set", "w2k3", "memory=lots")
	fails(t, home, 2, []string{"nosuchkey"}, "guest", "set", "w2k3", "nosuchkey=1")
	fails(t, home, 2, []string{"KEY=VALUE"}, "guest", "set", "w2k3", "memory")
	fails(t, home, 2, []string{"cannot be set"}, "guest", "set", "w2k3", "install.vcpus=4")
	fails(t, home, 3, []string{`volume "ghost" not found`}, "guest", "set", "w2k3", "disks.0.volume=ghost")
	if after := ok(t, home, "-o", "yaml", "guest", "show", "w2k3", "--show-secrets"); after != before {
		t.Errorf("a refused set changed the guest")
	}
	fails(t, home, 2, []string{`invalid guest name "a/b"`}, "guest", "define", "a/b")
	fails(t, home, 3, []string{`volume "ghost" not found`}, "guest", "define", "g2", "--disk", "ghost")
	fails(t, home, 2, []string{"vif"}, "guest", "define", "g2", "--nic", "bridge=br0,mac=zz:zz")
}

// The seed configs: the classic xm file with its Python preamble, and the
// virt-manager one; import, render as xl, import that again: same guest.
func TestGuestImportSeedsAndRoundTrip(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r := runIn(t, home, nil, "-o", "json", "guest", "import", "../../testdata/hvm/seeds/win2k3-xm.cfg")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if !strings.Contains(r.stderr, "python") && !strings.Contains(strings.ToLower(r.stderr), "python") {
		t.Errorf("no warning about the skipped Python lines: %s", r.stderr)
	}
	ok(t, home, "guest", "import", "../../testdata/hvm/seeds/falstaff.cfg")
	for _, name := range []string{"win2k3", "falstaff"} {
		xl := filepath.Join(t.TempDir(), name+".cfg")
		// The seeds' images are not on this machine: rendered for the
		// Xen host that has them.
		os.WriteFile(xl, []byte(ok(t, home, "guest", "render", name, "--format", "xl", "--allow-missing-disks")), 0o600)
		// Into another home: the MACs are pinned and unique per home.
		other := filepath.Join(t.TempDir(), "other")
		ok(t, other, "guest", "import", xl)
		var a, b map[string]any
		jsonOf(t, home, &a, "guest", "show", name)
		jsonOf(t, other, &b, "guest", "show", name)
		delete(a, "id")
		delete(b, "id")
		// xl has no place for xm's device_model (xl ignores the key):
		// only the xm rendering keeps it.
		if dm, ok := a["device_model"].(map[string]any); ok {
			delete(dm, "xm_path")
			if len(dm) == 0 {
				delete(a, "device_model")
			}
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Errorf("%s: import → render xl → import differs:\n%s\n%s", name, ja, jb)
		}
	}
	// Code other than the known preamble is refused, naming file and line.
	evil := filepath.Join(t.TempDir(), "evil.cfg")
	os.WriteFile(evil, []byte("name = \"x\"\nbuilder = \"hvm\"\nmemory = 256\nimport subprocess\nsubprocess.call(['rm', '-rf', '/'])\n"), 0o600)
	fails(t, home, 2, []string{"evil.cfg:4"}, "guest", "import", evil)
	pv := filepath.Join(t.TempDir(), "pv.cfg")
	os.WriteFile(pv, []byte("name = \"pv\"\nmemory = 256\nkernel = \"/boot/vmlinuz\"\n"), 0o600)
	fails(t, home, 8, []string{"PV"}, "guest", "import", pv)
}

// --adopt-disks registers the images an existing Xen guest names, in
// place, so restore points work on it at once.
func TestGuestImportAdoptDisks(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	img := filepath.Join(dir, "legacy.img")
	sparseFile(t, img, 64<<20, map[int64][]byte{0: []byte("legacy boot sector")})
	iso := filepath.Join(dir, "drivers.iso")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "x.txt"), []byte("x"), 0o600)
	storagetest.Cmd(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "DRV", "-o", iso, src)
	ok(t, home, "iso", "import", iso, "--name", "drivers")
	cfg := filepath.Join(dir, "legacy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'legacy'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'file:%s,hda,w', 'file:%s,hdc:cdrom,r' ]\nvif = [ 'bridge=xenbr0' ]\n", img, iso)), 0o600)
	var g guestJSON
	jsonOf(t, home, &g, "guest", "import", cfg, "--adopt-disks")
	if g.Disks[0].Volume != "legacy-hda" || g.Disks[1].Media != "drivers" || g.Disks[1].Path != "" {
		t.Fatalf("adopted: %+v", g.Disks)
	}
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "info", "legacy-hda")
	if v.Path != img || !v.Imported {
		t.Errorf("volume: %+v", v)
	}
	ok(t, home, "snapshot", "create", "legacy")
	// The renderers resolve names to paths.
	xl := ok(t, home, "guest", "render", "legacy", "--format", "xl")
	if !strings.Contains(xl, img) || !strings.Contains(xl, iso) {
		t.Errorf("xl render does not name the files:\n%s", xl)
	}
	fails(t, home, 5, []string{"legacy"}, "iso", "delete", "drivers")
	// A failed import unregisters what it adopted.
	bad := filepath.Join(dir, "bad.cfg")
	img2 := filepath.Join(dir, "other.img")
	sparseFile(t, img2, 1<<20, nil)
	os.WriteFile(bad, []byte(fmt.Sprintf("name = 'legacy'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'file:%s,hda,w' ]\n", img2)), 0o600)
	fails(t, home, 4, []string{`guest "legacy" already exists`}, "guest", "import", bad, "--adopt-disks")
	os.WriteFile(bad, []byte(fmt.Sprintf("name = 'legacy2'\nbuilder = 'hvm'\nmemory = 256\nmaxmem = 128\ndisk = [ 'file:%s,hda,w' ]\n", img2)), 0o600)
	fails(t, home, 2, []string{"maxmem"}, "guest", "import", bad, "--adopt-disks")
	fails(t, home, 3, []string{`volume "legacy2-hda" not found`}, "volume", "info", "legacy2-hda")
}

func TestGuestImportLibvirtXML(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var g guestJSON
	jsonOf(t, home, &g, "guest", "import", "--libvirt", "../../testdata/hvm/libvirt-xenconfig/xmconfigdata/test-fullvirt-usbtablet.xml", "--name", "tablet")
	if g.Name != "tablet" || g.UUID == "" || len(g.Disks) == 0 {
		t.Errorf("%+v", g)
	}
}

// Rendered libvirt XML validates and defines; a rendered QEMU argv starts
// QEMU (paused, TCG) and quits through QMP.
func TestGuestRenderValidates(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	newDisk(t, home, "data", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "data", "--nic", "bridge=br0", "--vnc", "--tablet", "--vcpus", "2")
	for _, hv := range []string{"xen", "kvm"} {
		xml := filepath.Join(t.TempDir(), hv+".xml")
		os.WriteFile(xml, []byte(ok(t, home, "guest", "render", "web", "--format", "libvirt", "--hypervisor", hv)), 0o600)
		storagetest.Cmd(t, "virt-xml-validate", xml, "domain")
		storagetest.Cmd(t, "virsh", "-c", "test:///default", "define", xml)
	}
	// Each disk is rendered in its volume's real format.
	xl := ok(t, home, "guest", "render", "web", "--format", "xl")
	if !contains(xl, "format=qcow2,vdev=hda", "format=raw,vdev=hdb") {
		t.Errorf("disk formats in xl:\n%s", xl)
	}
	var argv []string
	jsonOf(t, home, &argv, "guest", "render", "web", "--format", "qemu", "--accel", "tcg", "--network", "none")
	if !contains(strings.Join(argv, " "), "format=qcow2,media=disk") {
		t.Errorf("qemu drive format: %v", argv)
	}
	if !contains(strings.Join(argv, " "), "-vnc 127.0.0.1", "accel=tcg") {
		t.Errorf("argv %v", argv)
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(argv[0], append(argv[1:], "-S", "-display", "none", "-qmp", "unix:"+sock+",server=on,wait=off")...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("QEMU did not open QMP: %v\n%s", err, out)
	}
	fmt.Fprintln(conn, `{"execute":"qmp_capabilities"}`)
	fmt.Fprintln(conn, `{"execute":"quit"}`)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("QEMU exited with %v:\n%s", err, out)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("QEMU did not quit:\n%s", out)
	}
	conn.Close()
	// Bad render input.
	fails(t, home, 2, []string{`invalid format "vmx"`}, "guest", "render", "web", "--format", "vmx")
	fails(t, home, 3, []string{`guest "nope" not found`}, "guest", "render", "nope")
}

func TestGuestDeleteWithDisks(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "sys", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "guest", "delete", "web", "--with-disks")
	if _, err := os.Stat(d.path); !os.IsNotExist(err) {
		t.Errorf("disk kept: %v", err)
	}
}

// The console password never leaks through guest list or restore points.
func TestPasswordNeverListed(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2-vnc"), 0o600)
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--vnc", "--vncpasswd-file", pw)
	ok(t, home, "snapshot", "create", "web")
	for _, args := range [][]string{
		{"-o", "json", "guest", "list"}, {"guest", "list"}, {"-o", "json", "snapshot", "list"}, {"-o", "json", "snapshot", "show", "web", "1"},
		{"-o", "json", "snapshot", "rollback", "web", "1"}, {"-o", "json", "guest", "lint", "web"}, {"-o", "json", "guest", "render", "web", "--format", "qemu"},
	} {
		r := runIn(t, home, nil, append([]string{"--log-level", "debug"}, args...)...)
		if r.code != 0 || strings.Contains(r.stdout+r.stderr, "hunter2") {
			t.Errorf("%v: exit %d, or it shows the password:\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// smallISO builds a small ISO with strata in a throwaway home and returns
// a copy of it outside any state home.
func smallISO(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("hi\n"), 0o644)
	h := t.TempDir()
	ok(t, h, "iso", "build", src, "fixture")
	var m struct{ Path string }
	jsonOf(t, h, &m, "iso", "info", "fixture")
	out := filepath.Join(t.TempDir(), "fixture.iso")
	data, _ := os.ReadFile(m.Path)
	os.WriteFile(out, data, 0o644)
	return out
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// 1. Rendering the QEMU argv without --show-secrets must not drop VNC auth:
// the password never is on argv anyway (it goes through QMP).
func TestGuestQemuRenderKeepsVNCAuth(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "guest", "define", "w", "--vnc", "--vnclisten", "0.0.0.0", "--vncpasswd-file", writeFile(t, "s3cret\n"))
	argv := ok(t, h, "guest", "render", "w", "--format", "qemu")
	if !strings.Contains(argv, "0.0.0.0:0,to=99,password=on") {
		t.Fatalf("VNC on 0.0.0.0 rendered without password=on:\n%s", argv)
	}
}

// 2. A SPICE console must stay on loopback unless asked, and an exposed
// one without a ticket must be linted.
func TestGuestSpiceDefaultsToLoopback(t *testing.T) {
	h := t.TempDir()
	y := "api_version: strata/v1\nname: sp\nmemory: 256\ndisplay: {vnc: false, spice: {enabled: true, port: 5930, disable_ticketing: true}}\n"
	ok(t, h, "guest", "define", "-f", writeFile(t, y))
	cfg := ok(t, h, "guest", "render", "sp", "--format", "xl")
	if !strings.Contains(cfg, `spicehost = "127.0.0.1"`) {
		t.Errorf("xl.cfg has spice without spicehost (xl: any interface):\n%s", cfg)
	}
	ok(t, h, "guest", "set", "sp", "display.spice.host=0.0.0.0")
	if ids := lintIDs(t, h, "sp"); !strings.Contains(ids, "exposed") {
		t.Errorf("SPICE on 0.0.0.0 without a ticket: lint found only %s", ids)
	}
}

// 6. A number that is not an integer is refused, not truncated.
func TestGuestNonIntegerRefused(t *testing.T) {
	h := t.TempDir()
	fails(t, h, 2, []string{"memory"}, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: f\nmemory: 1.9\n"))
	ok(t, h, "guest", "define", "g")
	before := ok(t, h, "--output", "yaml", "guest", "show", "g")
	fails(t, h, 2, []string{"vcpus"}, "guest", "set", "g", "vcpus=2.5")
	if after := ok(t, h, "--output", "yaml", "guest", "show", "g"); after != before {
		t.Errorf("refused set changed the guest:\n%s", after)
	}
}

// 7. guest set keeps a SPICE password as typed (leading zeros); it comes
// from a file, never the command line.
func TestGuestSpicePasswordKeptVerbatim(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "guest", "define", "g")
	ok(t, h, "guest", "set", "g", "display.spice.enabled=true", "--secret-file", "display.spice.passwd="+writeFile(t, "007\n"))
	y := ok(t, h, "--output", "yaml", "guest", "show", "g", "--show-secrets")
	if !strings.Contains(y, `passwd: "007"`) {
		t.Errorf("spice password changed:\n%s", y)
	}
}

// 8. An imported spicepasswd (kept in extra) is never shown without --show-secrets.
func TestGuestExtraSpicePasswdRedacted(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "guest", "import", writeFile(t, "name=\"sp\"\ntype=\"hvm\"\nmemory=256\nspicepasswd=\"topsecret1\"\n"))
	for _, o := range []string{"yaml", "json", "table"} {
		if out := ok(t, h, "--output", o, "guest", "show", "sp"); strings.Contains(out, "topsecret1") {
			t.Errorf("guest show -o %s prints the SPICE password:\n%s", o, out)
		}
	}
}

// guest delete --with-disks changes nothing if one disk cannot go.
func TestGuestDeleteWithDisksAllOrNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d1 := newDisk(t, home, "d1", "raw", "")
	newDisk(t, home, "d2", "qcow2", "")
	ok(t, home, "guest", "define", "gx", "--disk", "d1", "--disk", "d2")
	ok(t, home, "guest", "set", "gx", "disks.1.access=ro") // d2 read-only: no restore point writes it...
	ok(t, home, "snapshot", "create", "--volume", "d2")    // ...but a volume point holds it
	before := snapshotState(t, home)
	fails(t, home, 5, []string{"guest \"gx\" was not deleted", "restore point"}, "guest", "delete", "gx", "--with-disks")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused delete changed the state")
	}
	if _, err := os.Stat(d1.path); err != nil {
		t.Errorf("d1 gone: %v", err)
	}
	// A read-only disk is still a use: its volume cannot be deleted.
	fails(t, home, 5, []string{`disk of guest "gx"`}, "volume", "delete", "d2")
}

// --adopt-disks reuses a volume already registered through a symlink.
func TestAdoptDisksThroughSymlink(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	dir := t.TempDir()
	img := filepath.Join(dir, "real.img")
	sparseFile(t, img, 1<<20, nil)
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "volume", "import", img, "--name", "known")
	cfg := filepath.Join(dir, "g.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = 'sym'\nbuilder = 'hvm'\nmemory = 256\ndisk = [ 'file:%s,hda,w' ]\n", link)), 0o600)
	var g guestJSON
	jsonOf(t, home, &g, "guest", "import", cfg, "--adopt-disks")
	if g.Disks[0].Volume != "known" {
		t.Errorf("disk %+v: want the volume already registered", g.Disks[0])
	}
}

// guest delete says what it did, and what became of the disks.
func TestGuestDeleteSaysWhatItDid(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "create", "v", "--size", "16M")
	ok(t, h, "guest", "define", "g", "--disk", "v")
	if r := runIn(t, h, nil, "guest", "delete", "g"); r.code != 0 || !strings.Contains(r.stderr, "guest deleted; its disks stay") {
		t.Fatalf("guest delete: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, h, "guest", "define", "g", "--disk", "v")
	if r := runIn(t, h, nil, "guest", "delete", "g", "--with-disks"); r.code != 0 || !strings.Contains(r.stderr, "guest deleted with its disks") {
		t.Fatalf("guest delete --with-disks: exit %d, stderr %q", r.code, r.stderr)
	}
}

// guest delete --with-points deletes the points first; a pinned point
// keeps the guest and every point.
func TestGuestDeleteWithPoints(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "create", "v", "--size", "16M", "--format", "qcow2")
	ok(t, h, "guest", "define", "g", "--disk", "v")
	ok(t, h, "snapshot", "create", "g", "--name", "a")
	ok(t, h, "snapshot", "create", "g", "--name", "b")
	ok(t, h, "snapshot", "pin", "g", "b")
	fails(t, h, 5, []string{"restore point(s)", "--with-points"}, "guest", "delete", "g")
	fails(t, h, 7, []string{"pinned", "nothing was deleted"}, "guest", "delete", "g", "--with-points")
	var ps []struct{ ID int }
	if jsonOf(t, h, &ps, "snapshot", "list", "g"); len(ps) != 2 {
		t.Fatalf("a refused delete left %d points, want 2", len(ps))
	}
	ok(t, h, "snapshot", "unpin", "g", "b")
	ok(t, h, "guest", "delete", "g", "--with-points", "--with-disks")
	fails(t, h, 3, nil, "guest", "show", "g")
	fails(t, h, 3, nil, "volume", "info", "v")
}

// Commands that print nothing on stdout say what they did in one line on
// stderr, from the command (the libraries log their steps at debug): a
// volume, an iso, a golden image, restore points deleted, a catalog
// backed up or exported; an imported image that stays says so instead.
func TestDeletesAndBackupsSayWhatTheyDid(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	says := func(want string, args ...string) {
		t.Helper()
		r := runIn(t, h, nil, args...)
		if r.code != 0 || strings.Count(r.stderr, want) != 1 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q: want the one line %q", args, r.code, r.stderr, want)
		}
	}
	ok(t, h, "volume", "create", "v", "--size", "16M", "--format", "qcow2")
	ok(t, h, "snapshot", "create", "--volume", "v")
	ok(t, h, "snapshot", "create", "--volume", "v")
	r := runIn(t, h, nil, "snapshot", "delete", "--volume", "v", "1-2")
	if r.code != 0 || strings.Count(r.stderr, "restore point deleted") != 2 || !strings.Contains(r.stderr, "target=volume:v") {
		t.Errorf("snapshot delete 1-2: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, h, "golden", "create", "base", "--volume", "v")
	says("golden image deleted golden=base", "golden", "delete", "base")
	says("catalog backed up", "catalog", "backup", filepath.Join(h, "copy.db"))
	says("catalog exported", "catalog", "export", filepath.Join(h, "export.json"))
	says("volume deleted volume=v", "volume", "delete", "v")
	img := filepath.Join(t.TempDir(), "kept.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, h, "volume", "import", img, "--name", "kept")
	says("forgotten; its image is kept", "volume", "delete", "kept")
	if _, err := os.Stat(img); err != nil {
		t.Errorf("the imported image: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.TXT"), []byte("drivers\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, h, "iso", "build", dir, "drivers")
	says("iso deleted iso=drivers", "iso", "delete", "drivers")
}
