package main_test

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// The same start, status, screenshot, pause, stop cycle as through the
// qemu driver, through a real libvirtd running QEMU as libvirt-qemu, with
// the strata binary only; and guest delete undefines strata's domain.
func TestGuestLifecycleThroughLibvirt(t *testing.T) {
	home, name := libvirtHome(t)
	bootSectorGuest(t, home, name, "STRATA-LV-UP", boottest.PowerButton)
	// With an empty CD-ROM drive, to change discs in the running guest.
	ok(t, home, "guest", "delete", name)
	ok(t, home, "guest", "define", name, "--disk", name, "--cdrom", "", "--memory", "16", "--boot", "c", "--os", "other")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "README.TXT"), []byte("disc\n"), 0o644)
	ok(t, home, "iso", "build", src, "disc")
	var disc struct{ Path string }
	jsonOf(t, home, &disc, "iso", "info", "disc")
	// An explicit display: libvirt's automatic port misses a QEMU of the
	// qemu driver's tests listening on loopback.
	ok(t, home, "guest", "set", name, "driver=libvirt", "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+os.Getpid()%50))

	start := time.Now()
	ok(t, home, "guest", "start", name, "--wait-serial", "STRATA-LV-UP")
	t.Logf("start through libvirt to the first serial line: %s", time.Since(start).Round(time.Millisecond))
	s := statusOf(t, home, name)
	if s.State != "running" || s.Driver != "libvirt" || s.Accel != "tcg" || !strings.HasPrefix(s.VNC, "127.0.0.1:") || !strings.Contains(strings.Join(s.Features, ","), "screenshot") {
		t.Fatalf("status through libvirt: %+v", s)
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "domstate", name).CombinedOutput(); err != nil || !strings.Contains(string(out), "running") {
		t.Fatalf("virsh domstate: %s %v", out, err)
	}
	// A live point through libvirt: paused by libvirt, the raw disk's
	// point-in-time copy made by libvirt's QEMU (as libvirt-qemu).
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", name)
	if !p.Live || p.PauseMS == nil || p.Consistency != "crash" {
		t.Fatalf("live point through libvirt: %+v", p)
	}
	if s := statusOf(t, home, name); s.State != "running" {
		t.Fatalf("after a live point through libvirt: %+v", s)
	}
	// libvirt's QEMU wrote the copy as its own user; the point is
	// strata's again afterwards.
	if st, err := os.Stat(p.Disks[0].Ref); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("the live copy through libvirt: %v %v", st, err)
	}
	ok(t, home, "snapshot", "delete", name, fmt.Sprint(p.ID))

	shot := filepath.Join(t.TempDir(), "screen.png")
	ok(t, home, "guest", "screenshot", name, shot)
	b, _ := os.ReadFile(shot)
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Fatalf("screenshot through libvirt is not a PNG: %v", err)
	}
	ok(t, home, "guest", "insert", name, "disc")
	if out, _ := exec.Command("virsh", "-c", "qemu:///system", "domblklist", name).CombinedOutput(); !strings.Contains(string(out), disc.Path) {
		t.Fatalf("after a live insert through libvirt, domblklist:\n%s", out)
	}
	ok(t, home, "guest", "eject", name)
	if out, _ := exec.Command("virsh", "-c", "qemu:///system", "domblklist", name).CombinedOutput(); strings.Contains(string(out), disc.Path) {
		t.Fatalf("after a live eject through libvirt, domblklist:\n%s", out)
	}
	ok(t, home, "guest", "pause", name)
	if s := statusOf(t, home, name); s.State != "paused" {
		t.Fatalf("after pause: %+v", s)
	}
	ok(t, home, "guest", "resume", name)
	fails(t, home, 7, []string{"already running"}, "guest", "start", name)

	ok(t, home, "guest", "stop", name, "--timeout", "60s")
	s = statusOf(t, home, name)
	if s.State != "stopped" || s.LastStop == nil || s.LastStop.Reason != "shutdown" {
		t.Fatalf("after stop through libvirt: %+v", s)
	}
	ok(t, home, "snapshot", "create", name) // 2
	fails(t, home, 5, []string{"restore point"}, "guest", "delete", name)
	ok(t, home, "snapshot", "delete", name, "2")
	ok(t, home, "guest", "delete", name)
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "dominfo", name).CombinedOutput(); err == nil {
		t.Fatalf("guest delete left the libvirt domain defined:\n%s", out)
	}
}

// Through libvirt too, a guest that reboots with on_reboot=destroy stops
// instead of resetting (the install's phase 1 ends so). libvirt reports
// that stop as a shutdown, like a power-off: strata records poweroff
// (README says so).
func TestLibvirtGuestRebootWithOnRebootDestroyStops(t *testing.T) {
	home, name := libvirtHome(t)
	bootSectorGuest(t, home, name, "STRATA-LV-RB", boottest.Reboot)
	ok(t, home, "guest", "set", name, "driver=libvirt", "on_reboot=destroy", "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+(os.Getpid()+1)%50))
	ok(t, home, "guest", "start", name)
	s := waitState(t, home, name, "stopped", time.Minute)
	if s.LastStop == nil || s.LastStop.Reason != "poweroff" || strings.Count(strings.Join(s.LastStop.SerialTail, "\n"), "STRATA-LV-RB") != 1 {
		t.Fatalf("a reboot with on_reboot=destroy through libvirt: %+v", s.LastStop)
	}
}

// guest console through libvirt (its console stream on a pty serial port)
// carries both ways, and Ctrl-] detaches and ends the command.
func TestLibvirtConsoleIsInteractive(t *testing.T) {
	home, name := libvirtHome(t)
	echoGuest(t, home, name, "STRATA-LV-ECHO")
	ok(t, home, "guest", "set", name, "driver=libvirt", "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+(os.Getpid()+2)%50))
	ok(t, home, "guest", "start", name, "--wait-serial", "STRATA-LV-ECHO")

	consoleEchoes(t, home, name, "through-libvirt")
	ok(t, home, "guest", "kill", name)
}

// libvirtHome returns a state home libvirt's QEMU user can pass through
// (not a private test directory) and a domain name unique on the daemon,
// whose domain is destroyed and undefined after the test.
func libvirtHome(t *testing.T) (home, name string) {
	t.Helper()
	storagetest.Libvirtd(t)
	home, err := os.MkdirTemp("/var/tmp", "sl")
	if err != nil {
		t.Fatal(err)
	}
	name = filepath.Base(home)
	t.Cleanup(func() {
		_ = exec.Command("virsh", "-c", "qemu:///system", "destroy", name).Run()
		_ = exec.Command("virsh", "-c", "qemu:///system", "undefine", name).Run()
		os.RemoveAll(home)
	})
	return home, name
}

// A domain libvirt runs that strata did not start (created with virsh)
// holds the strata volume it uses: disk operations are refused naming the
// libvirt domain, found in strata's own process over libvirt's socket.
func TestForeignLibvirtDomainHoldsTheVolumeItUses(t *testing.T) {
	home, name := libvirtHome(t)
	img := bootSectorGuest(t, home, name, "STRATA-FOREIGN-UP", boottest.Halt)
	ok(t, home, "guest", "delete", name) // the volume stays: libvirt runs it now
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>16</memory>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='hda' bus='ide'/></disk></devices></domain>`, name, img)
	f := filepath.Join(t.TempDir(), "foreign.xml")
	if err := os.WriteFile(f, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "create", f).CombinedOutput(); err != nil {
		t.Fatalf("virsh create: %v\n%s", err, out)
	}
	fails(t, home, 5, []string{fmt.Sprintf(`libvirt domain %q`, name)}, "volume", "resize", name, "--size", "2M")
}

// A guest delete strata refuses (a restore point holds the guest; with
// --with-disks, one holds its disk) leaves its libvirt domain
// defined: every check that can refuse runs before the undefine. The
// delete that passes them undefines it.
func TestRefusedGuestDeleteKeepsItsLibvirtDomain(t *testing.T) {
	home, name := libvirtHome(t)
	bootSectorGuest(t, home, name, "STRATA-LV-DEL", boottest.Halt)
	ok(t, home, "guest", "set", name, "driver=libvirt", "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+(os.Getpid()+3)%50))
	ok(t, home, "guest", "start", name, "--wait-serial", "STRATA-LV-DEL")
	ok(t, home, "guest", "kill", name)
	defined := func() bool {
		return exec.Command("virsh", "-c", "qemu:///system", "dominfo", name).Run() == nil
	}
	if !defined() {
		t.Fatal("the guest is not defined in libvirt after a start and a kill")
	}
	ok(t, home, "snapshot", "create", name)
	fails(t, home, 5, []string{"restore point"}, "guest", "delete", name)
	if !defined() {
		t.Fatal("a guest delete refused for its restore point undefined its libvirt domain")
	}
	ok(t, home, "snapshot", "delete", name, "1")
	ok(t, home, "snapshot", "create", "--volume", name)
	fails(t, home, 5, []string{"restore point"}, "guest", "delete", name, "--with-disks")
	if !defined() {
		t.Fatal("a guest delete --with-disks refused for a disk a restore point holds undefined its libvirt domain")
	}
	ok(t, home, "guest", "delete", name)
	if defined() {
		t.Fatal("guest delete left the libvirt domain defined")
	}
}
