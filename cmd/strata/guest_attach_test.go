package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qmp"
)

type attachOut struct {
	Guest, Action string
	Disk          *struct {
		Vdev, Volume, Media, Path string
		CDROM                     bool
	}
	NIC  *struct{ MAC, Bridge, Model string }
	Live bool
}

type shownDevices struct {
	Disks []struct {
		Vdev, Volume, Media, Path string
		CDROM                     bool
	}
	NICs []struct{ MAC, Model string }
}

func devicesOf(t *testing.T, home, name string) (vdevs []string, macs []string) {
	t.Helper()
	var g shownDevices
	jsonOf(t, home, &g, "guest", "show", name)
	for _, d := range g.Disks {
		vdevs = append(vdevs, d.Vdev)
	}
	for _, n := range g.NICs {
		macs = append(macs, strings.ToLower(n.MAC))
	}
	return vdevs, macs
}

func TestGuestAttachDetachOnAStoppedGuestChangesTheDefinition(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "st", "STRATA-ST", boottest.Halt)
	ok(t, home, "volume", "create", "extra", "--size", "1M")
	ok(t, home, "volume", "create", "theirs", "--size", "1M")
	ok(t, home, "guest", "define", "other", "--disk", "theirs", "--memory", "16")

	var a attachOut
	jsonOf(t, home, &a, "guest", "attach", "st", "--disk", "extra")
	if a.Disk == nil || a.Disk.Vdev != "xvdb" || a.Disk.Volume != "extra" || a.Live || a.Action != "attached" {
		t.Fatalf("attach to a stopped guest: %+v", a)
	}
	var n attachOut
	jsonOf(t, home, &n, "guest", "attach", "st", "--nic", "bridge=br0,model=e1000")
	if n.NIC == nil || n.NIC.MAC == "" || n.NIC.Model != "e1000" || n.Live {
		t.Fatalf("NIC attach to a stopped guest: %+v", n)
	}
	vdevs, macs := devicesOf(t, home, "st")
	if strings.Join(vdevs, " ") != "hda xvdb" || len(macs) != 1 || macs[0] != strings.ToLower(n.NIC.MAC) {
		t.Fatalf("definition after attach: disks %v, nics %v", vdevs, macs)
	}

	before := snapshotState(t, home)
	fails(t, home, 3, []string{"nosuch"}, "guest", "attach", "nosuch", "--disk", "extra")
	fails(t, home, 3, []string{"nosuchvol"}, "guest", "attach", "st", "--disk", "nosuchvol")
	fails(t, home, 2, []string{"exactly one"}, "guest", "attach", "st")
	fails(t, home, 2, []string{"exactly one"}, "guest", "attach", "st", "--disk", "extra", "--nic", "bridge=br0")
	fails(t, home, 4, []string{"xvdb"}, "guest", "attach", "st", "--disk", "theirs", "--vdev", "xvdb")
	fails(t, home, 2, []string{"vdev"}, "guest", "attach", "st", "--disk", "theirs", "--vdev", "vdq")
	fails(t, home, 5, []string{"theirs", "other"}, "guest", "attach", "st", "--disk", "theirs")
	fails(t, home, 2, nil, "guest", "attach", "st", "--nic", "nonsense")
	fails(t, home, 4, []string{n.NIC.MAC}, "guest", "attach", "other", "--nic", "mac="+n.NIC.MAC)
	notISO := filepath.Join(t.TempDir(), "x.iso")
	os.WriteFile(notISO, []byte("not a disc"), 0o644)
	fails(t, home, 2, []string{"not an ISO image"}, "guest", "attach", "st", "--cdrom", notISO)
	fails(t, home, 3, []string{"xvdz"}, "guest", "detach", "st", "xvdz")
	fails(t, home, 3, []string{"52:54:00:00:00:99"}, "guest", "detach", "st", "52:54:00:00:00:99")
	fails(t, home, 2, []string{"neither"}, "guest", "detach", "st", "disk1")
	if after := snapshotState(t, home); after != before {
		t.Fatalf("refused attaches changed the home:\n%s\n---\n%s", before, after)
	}

	var d attachOut
	jsonOf(t, home, &d, "guest", "detach", "st", "xvdb")
	if d.Disk == nil || d.Disk.Volume != "extra" || d.Action != "detached" || d.Live {
		t.Fatalf("detach from a stopped guest: %+v", d)
	}
	ok(t, home, "guest", "detach", "st", strings.ToUpper(n.NIC.MAC))
	if vdevs, macs := devicesOf(t, home, "st"); strings.Join(vdevs, " ") != "hda" || len(macs) != 0 {
		t.Fatalf("definition after detach: disks %v, nics %v", vdevs, macs)
	}
}

// qmpOf runs one QMP command on a running guest's socket.
func qmpOf(t *testing.T, home, name, cmd string) string {
	t.Helper()
	c, err := qmp.Dial(context.Background(), filepath.Join(home, "run", guestID(t, home, name), "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.Execute(context.Background(), cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestGuestAttachDetachLiveThroughQEMU(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "lv", "STRATA-LV", boottest.Halt)
	ok(t, home, "volume", "create", "hot", "--size", "1M")
	ok(t, home, "volume", "create", "gone", "--size", "1M")
	var gone struct{ Path string }
	jsonOf(t, home, &gone, "volume", "info", "gone")
	ok(t, home, "guest", "start", "lv", "--network", "user", "--wait-serial", "STRATA-LV")

	var a attachOut
	jsonOf(t, home, &a, "guest", "attach", "lv", "--disk", "hot")
	if a.Disk == nil || a.Disk.Vdev != "xvdb" || !a.Live {
		t.Fatalf("live attach: %+v", a)
	}
	var hot struct{ Path string }
	jsonOf(t, home, &hot, "volume", "info", "hot")
	if pci := qmpOf(t, home, "lv", "query-pci"); !strings.Contains(pci, `"strata-xvdb"`) {
		t.Fatalf("the attached disk is not on the guest's PCI bus: %s", pci)
	}
	if blk := qmpOf(t, home, "lv", "query-block"); !strings.Contains(blk, hot.Path) {
		t.Fatalf("QEMU does not have the volume's image open: %s", blk)
	}
	var n attachOut
	jsonOf(t, home, &n, "guest", "attach", "lv", "--nic", "model=e1000")
	if n.NIC == nil || !n.Live {
		t.Fatalf("live NIC attach: %+v", n)
	}
	mac := strings.ToLower(n.NIC.MAC)
	if pci := qmpOf(t, home, "lv", "query-pci"); !strings.Contains(pci, `"strata-net-`+strings.ReplaceAll(mac, ":", "")+`"`) {
		t.Fatalf("the attached NIC is not on the guest's PCI bus: %s", pci)
	}

	// What the running guest cannot take, or must not get, changes
	// nothing: not the definition, not QEMU.
	def := ok(t, home, "guest", "show", "lv", "--output", "json")
	pci := qmpOf(t, home, "lv", "query-pci")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "A.TXT"), []byte("a\n"), 0o644)
	ok(t, home, "iso", "build", src, "disc")
	fails(t, home, 8, []string{"CD-ROM"}, "guest", "attach", "lv", "--cdrom", "disc")
	fails(t, home, 8, []string{"IDE"}, "guest", "attach", "lv", "--disk", "gone", "--vdev", "hdb")
	os.Remove(gone.Path)
	fails(t, home, 3, []string{"missing"}, "guest", "attach", "lv", "--disk", "gone")
	// A volume no definition names, but another program has open for
	// writing, is in use: the same check a start makes.
	ok(t, home, "volume", "create", "held", "--size", "1M", "--format", "qcow2")
	var held struct{ Path string }
	jsonOf(t, home, &held, "volume", "info", "held")
	release := holdQemuLock(t, held.Path)
	fails(t, home, 5, []string{"qemu-io"}, "guest", "attach", "lv", "--disk", "held")
	release()
	// A boot sector cannot grant an unplug: detach fails with the reason
	// and the disk stays, live and in the definition.
	fails(t, home, 7, []string{"did not let disk xvdb go", "consent"}, "guest", "detach", "lv", "xvdb", "--timeout", "1s")
	if got := ok(t, home, "guest", "show", "lv", "--output", "json"); got != def {
		t.Fatalf("refused changes changed the definition:\n%s\n---\n%s", def, got)
	}
	if got := qmpOf(t, home, "lv", "query-pci"); got != pci {
		t.Fatalf("refused changes changed the guest's PCI bus:\n%s\n---\n%s", pci, got)
	}

	// The next start has the same devices.
	ok(t, home, "guest", "kill", "lv")
	ok(t, home, "guest", "start", "lv", "--network", "user", "--wait-serial", "STRATA-LV")
	if blk := qmpOf(t, home, "lv", "query-block"); !strings.Contains(blk, hot.Path) {
		t.Fatalf("the attached disk is gone after a restart: %s", blk)
	}
	var nics []struct {
		Devices []struct{ ID struct{ Device int } }
	}
	json.Unmarshal([]byte(qmpOf(t, home, "lv", "query-pci")), &nics)
	e1000 := false
	for _, b := range nics {
		for _, d := range b.Devices {
			e1000 = e1000 || d.ID.Device == 0x100e
		}
	}
	if !e1000 {
		t.Fatal("the attached e1000 NIC is gone after a restart")
	}
	// Now it was there at start: the qemu driver does not detach it live.
	fails(t, home, 8, []string{"there when the guest started"}, "guest", "detach", "lv", "xvdb")
	ok(t, home, "guest", "kill", "lv")
}

// The tiny Linux guest grants hot-plug: through the strata binary, a
// volume attached to it is seen and written by the guest, detached with
// its consent; a NIC shows up in it and goes again; and an attach whose
// definition cannot be recorded (the guest's lock held by another
// strata) is taken back from the running guest, so that guest and
// definition agree.
func TestGuestAttachIntoRunningLinuxSeenWrittenAndUndone(t *testing.T) {
	k := linuxKit(t)
	home := shortHome(t)
	def := filepath.Join(t.TempDir(), "lx.yaml")
	yaml := "api_version: strata/v1\nname: lx\nmemory: 256\ndriver: qemu\nos: linux\ndirect_boot:\n  kernel: " + k.Kernel + "\n  ramdisk: " + k.Initrd +
		"\n  cmdline: " + k.Append(boottest.ModeWait, boottest.HotplugWrite) + "\n"
	if err := os.WriteFile(def, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "define", "lx", "-f", def)
	ok(t, home, "volume", "create", "hot", "--size", "1M")
	var hot struct{ Path string }
	jsonOf(t, home, &hot, "volume", "info", "hot")
	ok(t, home, "guest", "start", "lx", "--network", "user", "--wait-serial", boottest.WaitingForPowerButton, "--wait-timeout", "3m")

	var a attachOut
	jsonOf(t, home, &a, "guest", "attach", "lx", "--disk", "hot")
	if a.Disk == nil || a.Disk.Vdev != "xvda" || !a.Live {
		t.Fatalf("live attach: %+v", a)
	}
	waitSerialLog(t, home, "lx", boottest.HotplugWrote+"vda", time.Minute)
	var d attachOut
	jsonOf(t, home, &d, "guest", "detach", "lx", "xvda")
	if !d.Live {
		t.Fatalf("live detach: %+v", d)
	}
	waitSerialLog(t, home, "lx", boottest.DeviceRemoved+"vda", time.Minute)
	if b, _ := os.ReadFile(hot.Path); !strings.HasPrefix(string(b), "written by the guest to vda") {
		t.Fatalf("the guest's write is not on the volume: %q", b[:min(len(b), 40)])
	}
	if vdevs, _ := devicesOf(t, home, "lx"); len(vdevs) != 0 {
		t.Fatalf("definition after the detach: %v", vdevs)
	}

	var n attachOut
	jsonOf(t, home, &n, "guest", "attach", "lx", "--nic", "model=virtio")
	mac := strings.ToLower(n.NIC.MAC)
	waitSerialLog(t, home, "lx", regexp.QuoteMeta(boottest.NICAdded)+`eth\d `+mac, time.Minute)
	ok(t, home, "guest", "detach", "lx", mac)
	waitSerialLog(t, home, "lx", regexp.QuoteMeta(boottest.DeviceRemoved)+`eth\d`, time.Minute)

	// Another strata holds the guest's lock: the definition cannot be
	// changed, and the disk, already attached, is detached again.
	lock, err := os.OpenFile(filepath.Join(home, "locks", "g-"+guestID(t, home, "lx")+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// (The wait gives a slow TCG guest time to see the disk before it is
	// taken back: its init polls for new disks.)
	r := runIn(t, home, []string{"STRATA_LOCK_TIMEOUT=5s"}, "guest", "attach", "lx", "--disk", "hot")
	if r.code != 6 || !strings.Contains(r.stderr, "busy") {
		t.Fatalf("attach while the guest's lock is held: exit %d, %s", r.code, r.stderr)
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		serial, _ := os.ReadFile(filepath.Join(home, "run", guestID(t, home, "lx"), "serial.log"))
		if strings.Count(string(serial), boottest.DiskAdded+"vda") == 2 && strings.Count(string(serial), boottest.DeviceRemoved+"vda") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not get the disk and lose it again: %s", serial)
		}
	}
	if pci := qmpOf(t, home, "lx", "query-pci"); strings.Contains(pci, "strata-xvda") {
		t.Fatalf("the undone disk is still on the PCI bus: %s", pci)
	}
	if vdevs, macs := devicesOf(t, home, "lx"); len(vdevs) != 0 || len(macs) != 0 {
		t.Fatalf("definition at the end: %v %v", vdevs, macs)
	}
	ok(t, home, "guest", "stop", "lx")
}
