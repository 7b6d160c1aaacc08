package qemu_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/boot/qemu"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage"
)

// qmpRun runs one QMP command on the guest's socket and closes it (QEMU
// serves one client per socket: the driver's next call needs it back).
func qmpRun(t *testing.T, g *boot.Guest, cmd string, args any) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, g.Run.Path("qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Execute(ctx, cmd, args)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

// blockNodes lists the guest's named block nodes.
func blockNodes(t *testing.T, g *boot.Guest) map[string]string {
	var nodes []struct {
		Name string `json:"node-name"`
		File string `json:"file"`
	}
	if err := json.Unmarshal(qmpRun(t, g, "query-named-block-nodes", map[string]bool{"flat": true}), &nodes); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		out[n.Name] = n.File
	}
	return out
}

// pciDevices lists the guest's PCI devices as VENDOR:DEVICE ids (qdev id
// after a slash where there is one).
func pciDevices(t *testing.T, g *boot.Guest) []string {
	var buses []struct {
		Devices []struct {
			ID     struct{ Vendor, Device int }
			QdevID string `json:"qdev_id"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(qmpRun(t, g, "query-pci", nil), &buses); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range buses {
		for _, d := range b.Devices {
			s := strings.ToLower(strings.TrimSpace(strings.Join([]string{hex4(d.ID.Vendor), hex4(d.ID.Device)}, ":")))
			if d.QdevID != "" {
				s += "/" + d.QdevID
			}
			out = append(out, s)
		}
	}
	return out
}

func hex4(n int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[n>>12&15], digits[n>>8&15], digits[n>>4&15], digits[n&15]})
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func rawFile(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 8<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

func startedDisks(t *testing.T, g *boot.Guest) []string {
	var s struct {
		Disks []string `json:"disks"`
	}
	b, err := os.ReadFile(g.Run.Path("started.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &s)
	return s.Disks
}

// A boot sector cannot answer an ACPI unplug request: the disk attaches
// (QEMU adds it at once), and its detach fails after the timeout with the
// reason, leaving the disk attached and its nodes in place.
func TestHotplugDiskAttachesAndAnUnpluggedGuestThatIgnoresItKeepsIt(t *testing.T) {
	e := newEnv(t)
	e.d = qemu.New(qemu.Config{Home: e.home, Network: qemuargv.NetNone, WatcherArgv: watcherArgv, UnplugTimeout: 700 * time.Millisecond})
	atStart := rawFile(t, e.home, "atstart.raw")
	g := e.guest("hp", boottest.Halt, func(g *hvm.Guest) {
		g.Disks = append(g.Disks, hvm.Disk{Path: atStart, Vdev: "xvdc", Format: "raw"})
	})
	e.start(g, boot.StartOptions{})
	ctx := context.Background()
	img := rawFile(t, e.home, "extra.raw")
	if err := e.d.AttachDisk(ctx, g, hvm.Disk{Path: img, Vdev: "xvdb", Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	if n := blockNodes(t, g); n["strata-xvdb"] != img || n["strata-xvdb-file"] != img {
		t.Fatalf("block nodes after attach: %v", n)
	}
	if p := pciDevices(t, g); !has(p, "1af4:1001/strata-xvdb") {
		t.Fatalf("no virtio disk strata-xvdb on the PCI bus: %v", p)
	}
	if d := startedDisks(t, g); !has(d, img) {
		t.Fatalf("the in-use view (started.json) lacks the attached disk: %v", d)
	}
	// The same vdev again is refused by QEMU (its node exists): nothing
	// of the first attach is undone.
	if err := e.d.AttachDisk(ctx, g, hvm.Disk{Path: img, Vdev: "xvdb", Format: "raw"}); err == nil {
		t.Fatal("a second disk at xvdb was attached")
	}
	if p := pciDevices(t, g); !has(p, "1af4:1001/strata-xvdb") {
		t.Fatal("the failed second attach removed the first disk")
	}

	t0 := time.Now()
	err := e.d.DetachDisk(ctx, g, "xvdb")
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "did not let disk xvdb go") {
		t.Fatalf("detach from a guest that ignores it: %v", err)
	}
	if d := time.Since(t0); d < 600*time.Millisecond || d > 5*time.Second {
		t.Fatalf("detach gave up after %s, want about the timeout", d)
	}
	if n := blockNodes(t, g); n["strata-xvdb"] != img {
		t.Fatalf("the disk's nodes went although the device stays: %v", n)
	}
	if d := startedDisks(t, g); !has(d, img) {
		t.Fatalf("the disk the guest keeps left the in-use view: %v", d)
	}
	// Asked again, QEMU's request is still pending: the same answer.
	if err := e.d.DetachDisk(ctx, g, "xvdb"); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("second detach: %v", err)
	}
	// A disk that was there at start is not detached live; one the
	// running guest does not have is not found.
	if err := e.d.DetachDisk(ctx, g, "xvdc"); !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "there when the guest started") {
		t.Fatalf("detach of a disk there at start: %v", err)
	}
	if err := e.d.DetachDisk(ctx, g, "xvdd"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("detach of a disk the guest lacks: %v", err)
	}
}

func TestHotplugRefusesWhatTheBusCannotTake(t *testing.T) {
	e := newEnv(t)
	g := e.guest("bus", boottest.Halt, nil)
	e.start(g, boot.StartOptions{})
	ctx := context.Background()
	img := rawFile(t, e.home, "x.raw")
	for _, k := range []hvm.Disk{
		{Path: img, Vdev: "hdb"},
		{Path: img, Vdev: "sdb"},
		{Path: img, Vdev: "xvdd", CDROM: true},
	} {
		if err := e.d.AttachDisk(ctx, g, k); !errors.Is(err, storage.ErrNotSupported) {
			t.Errorf("attach %+v: %v", k, err)
		}
	}
	if n := blockNodes(t, g); len(n) != 2 { // the boot disk's two nodes
		t.Fatalf("refused attaches left nodes: %v", n)
	}
	noACPI := boottest.Guest("x", img)
	noACPI.Features.ACPI = hvm.Bool(false)
	if err := e.d.Supports(noACPI, boot.AttachDisk); !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "ACPI") {
		t.Fatalf("Supports attach-disk without ACPI: %v", err)
	}
	if err := e.d.Supports(g.Def, boot.AttachNIC); err != nil {
		t.Fatal(err)
	}
}

// When device_add fails after both block nodes were added, the nodes go
// again: nothing of the attach stays.
func TestHotplugDiskFailingAtDeviceAddLeavesNoBlockNode(t *testing.T) {
	e := newEnv(t)
	g := e.guest("fail", boottest.Halt, nil)
	e.start(g, boot.StartOptions{})
	// A device already holds the id the disk's device would get.
	qmpRun(t, g, "device_add", map[string]string{"driver": "virtio-rng-pci", "id": "strata-xvdc"})
	img := rawFile(t, e.home, "y.raw")
	err := e.d.AttachDisk(context.Background(), g, hvm.Disk{Path: img, Vdev: "xvdc", Format: "raw"})
	if err == nil || !strings.Contains(err.Error(), "add the virtio disk") {
		t.Fatalf("attach over a taken device id: %v", err)
	}
	for name := range blockNodes(t, g) {
		if strings.HasPrefix(name, "strata-") {
			t.Fatalf("node %s stayed after the failed attach", name)
		}
	}
	if d := startedDisks(t, g); has(d, img) {
		t.Fatalf("the failed attach's disk is in the in-use view: %v", d)
	}
}

func TestHotplugNICShowsOnThePCIBus(t *testing.T) {
	e := newEnv(t)
	e.d = qemu.New(qemu.Config{Home: e.home, Network: qemuargv.NetUser, WatcherArgv: watcherArgv, UnplugTimeout: 300 * time.Millisecond})
	g := e.guest("nic", boottest.Halt, nil)
	e.start(g, boot.StartOptions{})
	ctx := context.Background()
	n := hvm.NIC{MAC: "52:54:00:aa:bb:01", Model: "e1000"}
	if err := e.d.AttachNIC(ctx, g, n); err != nil {
		t.Fatal(err)
	}
	if p := pciDevices(t, g); !has(p, "8086:100e/strata-net-525400aabb01") {
		t.Fatalf("no e1000 strata-net-525400aabb01 on the PCI bus: %v", p)
	}
	if err := e.d.DetachNIC(ctx, g, "52:54:00:aa:bb:02"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("detach of a MAC the guest lacks: %v", err)
	}
	if err := e.d.DetachNIC(ctx, g, "52:54:00:AA:BB:01"); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("detach from a boot sector (which cannot grant it): %v", err)
	}
	// A guest started without a network has none to attach to.
	e2 := newEnv(t)
	g2 := e2.guest("nonet", boottest.Halt, nil)
	e2.start(g2, boot.StartOptions{})
	if err := e2.d.AttachNIC(ctx, g2, n); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("attach to a guest with network none: %v", err)
	}
}

// The tiny Linux guest grants unplugs: it sees the new disk, writes to
// it, and lets it go; then the same for a NIC.
func TestHotplugIntoLinuxGuestSeenWrittenAndDetached(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Linux")
	}
	e := newEnv(t)
	e.d = qemu.New(qemu.Config{Home: e.home, Network: qemuargv.NetUser, WatcherArgv: watcherArgv})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := boottest.LinuxKit(ctx, "")
	if err != nil {
		t.Skipf("test guest: %v", err)
	}
	g := e.guest("lx", boottest.Halt, func(g *hvm.Guest) {
		g.Memory = hvm.Int(256)
		g.Boot = "c"
		g.DirectBoot = &hvm.DirectBoot{Kernel: k.Kernel, Ramdisk: k.Initrd, Cmdline: k.Append(boottest.ModeWait, boottest.HotplugWrite)}
		g.NICs = []hvm.NIC{{MAC: "52:54:00:aa:bb:06", Model: "virtio"}}
	})
	t0 := time.Now()
	step := func(what string) { t.Logf("%s: %s", what, time.Since(t0).Round(time.Millisecond)); t0 = time.Now() }
	defer step("NIC attached, seen, detached")
	e.start(g, boot.StartOptions{})
	waitSerial(t, g, boottest.WaitingForPowerButton, 1)
	step("booted")
	img := rawFile(t, e.home, "hot.raw")
	if err := e.d.AttachDisk(ctx, g, hvm.Disk{Path: img, Vdev: "xvdb", Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	// The guest names virtio disks in the order it finds them: its
	// only one is vda, whatever the vdev.
	waitSerial(t, g, boottest.DiskAdded+"vda", 1)
	waitSerial(t, g, boottest.HotplugWrote+"vda", 1)
	step("disk attached and written")
	if err := e.d.DetachDisk(ctx, g, "xvdb"); err != nil {
		t.Fatal(err)
	}
	step("disk detached")
	waitSerial(t, g, boottest.DeviceRemoved+"vda", 1)
	for name := range blockNodes(t, g) {
		if strings.HasPrefix(name, "strata-") {
			t.Fatalf("node %s stayed after the detach", name)
		}
	}
	if d := startedDisks(t, g); has(d, img) {
		t.Fatalf("the detached disk stays in the in-use view: %v", d)
	}
	b, err := os.ReadFile(img)
	if err != nil || !strings.HasPrefix(string(b), "written by the guest to vda") {
		t.Fatalf("the guest's write is not on the image: %q %v", b[:min(len(b), 40)], err)
	}

	// A NIC from start (an anonymous device, found by its MAC) goes
	// too.
	if err := e.d.DetachNIC(ctx, g, "52:54:00:AA:BB:06"); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, g, boottest.DeviceRemoved+"eth0", 1)
	step("NIC from start detached")
	mac := "52:54:00:aa:bb:07"
	if err := e.d.AttachNIC(ctx, g, hvm.NIC{MAC: mac, Model: "virtio"}); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, g, mac, 1)
	if err := e.d.DetachNIC(ctx, g, mac); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, g, boottest.DeviceRemoved+"eth", 2)
	if p := pciDevices(t, g); has(p, "1af4:1000/strata-net-525400aabb07") {
		t.Fatalf("the NIC stays on the PCI bus: %v", p)
	}
}
