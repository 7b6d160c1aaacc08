package qemu_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage/run"
)

func has(argv []string, flag, value string) bool {
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag && argv[i+1] == value {
			return true
		}
	}
	return false
}

func TestArgv(t *testing.T) {
	g := &hvm.Guest{
		Name: "w", UUID: "8a3e7a5c-2f1d-4c59-9b7e-0d5a1f3c2b11", Memory: hvm.Int(512), VCPUs: hvm.Int(2), MaxVCPUs: hvm.Int(4),
		Features: hvm.Features{ACPI: hvm.Bool(false), Viridian: &hvm.Viridian{Enabled: true}},
		Firmware: "ovmf", Boot: "dc",
		Disks:      []hvm.Disk{{Path: "/img,1.qcow2", Vdev: "hda", Format: "qcow2"}, {Vdev: "hdc", CDROM: true}, {Device: "/dev/vg/lv", Vdev: "xvdb"}},
		NICs:       []hvm.NIC{{MAC: "00:16:3e:00:00:01", Bridge: "br1", Model: "e1000"}},
		Display:    hvm.Display{VNCListen: "192.0.2.1", VNCDisplay: hvm.Int(3), VNCPasswd: "pw"},
		USBDevices: []string{"tablet"},
		Lifecycle:  hvm.Lifecycle{OnReboot: "destroy"},
	}
	argv, err := qemu.Argv(g, qemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][2]string{
		{"-machine", "pc,accel=tcg,acpi=off"}, {"-m", "512"}, {"-smp", "2,maxcpus=4"}, {"-boot", "order=dc"},
		{"-drive", "file=/img,,1.qcow2,format=qcow2,media=disk,if=ide,index=0"}, {"-drive", "media=cdrom,if=ide,index=2"},
		{"-drive", "file=/dev/vg/lv,format=raw,media=disk,if=virtio"},
		{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + qemu.DefaultOVMFCode},
		{"-netdev", "bridge,id=net0,br=br1"}, {"-device", "e1000,netdev=net0,mac=00:16:3e:00:00:01"},
		{"-vnc", "192.0.2.1:3,password=on"}, {"-device", "usb-tablet"},
	} {
		if !has(argv, want[0], want[1]) {
			t.Errorf("argv lacks %s %s: %q", want[0], want[1], argv)
		}
	}
	for _, flag := range []string{"-usb", "-no-reboot"} {
		if !slices.Contains(argv, flag) {
			t.Errorf("argv lacks %s", flag)
		}
	}
	if strings.Contains(strings.Join(argv, " "), "pw") && !strings.Contains(strings.Join(argv, " "), "password=on") {
		t.Error("the VNC password is on the command line")
	}
	if slices.ContainsFunc(argv, func(s string) bool { return strings.Contains(s, "hv-") }) {
		t.Error("Hyper-V flags under TCG")
	}
	argv, err = qemu.Argv(g, qemu.Options{Accel: "kvm", Network: qemu.NetUser})
	if err != nil {
		t.Fatal(err)
	}
	if !has(argv, "-machine", "pc,accel=kvm,acpi=off") || !has(argv, "-cpu", "qemu64,hv-relaxed=on,hv-vapic=on,hv-spinlocks=0x1fff") || !has(argv, "-netdev", "user,id=net0") {
		t.Errorf("kvm argv: %q", argv)
	}
	// Default VNC: loopback, a free display.
	g.Display = hvm.Display{}
	argv, _ = qemu.Argv(g, qemu.Options{})
	if !has(argv, "-vnc", "127.0.0.1:0,to=99") {
		t.Errorf("default vnc: %q", argv)
	}
	g.Disks = []hvm.Disk{{Volume: "v", Vdev: "hda"}}
	if _, err := qemu.Argv(g, qemu.Options{}); err == nil {
		t.Error("an unresolved volume gave an argv")
	}
}

// TestQEMUAcceptsArgv starts QEMU (paused, TCG) with the argv of every HVM
// corpus and seed guest and quits it through QMP. Host paths become small
// temp images; bridges become user networking; tcp/udp consoles become
// null (nothing listens on their addresses here); PCI passthrough and
// direct kernel boot are dropped (no such hardware or kernel here).
func TestQEMUAcceptsArgv(t *testing.T) {
	if _, err := run.Look(qemu.Binary); err != nil {
		t.Skipf("cannot start QEMU: %v", err)
	}
	configs, err := hvmtest.Corpus()
	if err != nil {
		t.Fatal(err)
	}
	seeds, _ := hvmtest.Seeds()
	dir := t.TempDir()
	var guests []*hvm.Guest
	for _, c := range append(configs, seeds...) {
		data, err := os.ReadFile(c.CfgPath)
		if err != nil {
			t.Fatal(err)
		}
		g, _, err := xlcfg.Parse(c.Name, data)
		if errors.Is(err, xlcfg.ErrNotHVM) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if err := g.FillDefaults(); err != nil {
			t.Fatal(err)
		}
		g.Name = strings.ReplaceAll(c.Name, "/", "-")
		guests = append(guests, g)
	}
	// Extra coverage: sound, SCSI, keymap, video memory, KVM-only flags off.
	extra := &hvm.Guest{Name: "extra", Memory: hvm.Int(64), Features: hvm.Features{ACPI: hvm.Bool(false), APIC: hvm.Bool(false), PAE: hvm.Bool(false), HPET: hvm.Bool(false)},
		Disks:   []hvm.Disk{{Path: "/a", Vdev: "sda"}, {Path: "/b.iso", Vdev: "sdb", CDROM: true}, {Path: "/c", Vdev: "xvda", Format: "qcow2"}, {Vdev: "xvdd", CDROM: true}},
		SoundHW: []string{"hda", "ac97", "es1370", "sb16"}, Display: hvm.Display{Keymap: "de", VGA: "stdvga", VideoRAM: hvm.Int(16)},
		USBDevices: []string{"mouse", "keyboard"}, Serial: []string{"pty", "null"}, Lifecycle: hvm.Lifecycle{OnPoweroff: "preserve", OnReboot: "destroy"}}
	guests = append(guests, extra)

	ovmf := filepath.Join(dir, "ovmf.fd")
	if err := os.WriteFile(ovmf, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	for i, g := range guests {
		for j := range g.Disks {
			d := &g.Disks[j]
			kind, _ := d.Source()
			if kind == hvm.SourceNone {
				continue
			}
			img := filepath.Join(dir, fmt.Sprintf("g%d-d%d.img", i, j))
			if d.Format == "qcow2" || d.Format == "qed" {
				if out, err := run.Output(context.Background(), "qemu-img", "create", "-q", "-f", d.Format, img, "1M"); err != nil {
					t.Fatalf("qemu-img: %v %s", err, out)
				}
			} else if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			d.Path, d.Device, d.Script = img, "", ""
			if d.Format != "qcow2" && d.Format != "qed" {
				d.Format = "raw"
			}
		}
		for _, list := range []*[]string{&g.Serial, &g.Parallel} {
			for k, s := range *list {
				if strings.HasPrefix(s, "tcp:") || strings.HasPrefix(s, "udp:") {
					(*list)[k] = "null"
				}
			}
		}
		g.PCI, g.DirectBoot = nil, nil
		argv, err := qemu.Argv(g, qemu.Options{Network: qemu.NetUser, OVMFCode: ovmf})
		if err != nil {
			if strings.Contains(err.Error(), "fakemodel") {
				continue // libvirt's test of a made-up NIC model; QEMU has no such card
			}
			t.Errorf("%s: %v", g.Name, err)
			continue
		}
		t.Run(g.Name, func(t *testing.T) {
			t.Parallel()
			sock := filepath.Join(dir, fmt.Sprintf("qmp%d.sock", i))
			argv = append(argv, "-S", "-display", "none", "-qmp", "unix:"+sock+",server=on,wait=off")
			if err := startAndQuit(t, argv, sock); err != nil {
				t.Errorf("QEMU refused or failed with argv %q: %v", argv, err)
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		})
	}
	t.Cleanup(func() { t.Logf("QEMU accepted %d argvs", n) })
}

func startAndQuit(t *testing.T, argv []string, sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run.Run(ctx, nil, nil, argv...) }()
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("QEMU exited before QMP was up: %w", err)
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return fmt.Errorf("QMP greeting: %w", err)
	}
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"quit"}`} {
		if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("QMP %s: %w", cmd, err)
			}
			if strings.Contains(line, `"return"`) {
				break
			}
			if strings.Contains(line, `"error"`) {
				return fmt.Errorf("QMP %s: %s", cmd, line)
			}
		}
	}
	select {
	case err := <-done:
		return err // nil: exit code 0
	case <-ctx.Done():
		return ctx.Err()
	}
}
