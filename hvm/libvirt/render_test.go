package libvirt_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/libvirt"
)

func TestRenderDetails(t *testing.T) {
	g := &hvm.Guest{
		Name: "w", UUID: "8a3e7a5c-2f1d-4c59-9b7e-0d5a1f3c2b11", Memory: hvm.Int(512), MaxMem: hvm.Int(1024), VCPUs: hvm.Int(1), MaxVCPUs: hvm.Int(2),
		Features: hvm.Features{HAP: hvm.Bool(false), Viridian: &hvm.Viridian{Enabled: true}, HPET: hvm.Bool(true)},
		Firmware: "ovmf", Boot: "dc",
		Disks:      []hvm.Disk{{Path: "/img.qcow2", Vdev: "hda", Format: "qcow2"}, {Device: "/dev/vg/lv", Vdev: "xvdb"}, {Path: "/x.iso", Vdev: "hdc", CDROM: true}},
		NICs:       []hvm.NIC{{MAC: "00:16:3E:00:00:01", Bridge: "br1", Model: "e1000", Script: "vif-bridge", Rate: "1MB/s"}},
		Display:    hvm.Display{VNCListen: "0.0.0.0", VNCDisplay: hvm.Int(3), VNCUnused: hvm.Bool(false), VNCPasswd: "pw", Keymap: "de", VGA: "stdvga", VideoRAM: hvm.Int(16)},
		USBDevices: []string{"tablet"}, Serial: []string{"tcp:127.0.0.1:7777"}, SoundHW: []string{"hda"}, PCI: []string{"01:00.0"},
		Lifecycle: hvm.Lifecycle{OnPoweroff: "destroy", OnReboot: "destroy", OnCrash: "coredump-destroy"},
	}
	for hv, wants := range map[libvirt.Hypervisor][]string{
		libvirt.Xen: {`<domain type="xen">`, `machine="xenfv">hvm</type>`, `<loader readonly="yes" type="pflash">/usr/lib/xen/boot/ovmf.bin</loader>`,
			`<memory unit="KiB">1048576</memory>`, `<currentMemory unit="KiB">524288</currentMemory>`, `<vcpu placement="static" current="1">2</vcpu>`,
			`<boot dev="cdrom"></boot>`, `<hap state="off"></hap>`, `<viridian></viridian>`, `<timer name="hpet" present="yes">`,
			`<driver name="qemu" type="qcow2">`, `<disk type="block" device="disk">`, `<driver name="phy" type="raw">`, `<target dev="xvdb" bus="xen">`,
			`<disk type="file" device="cdrom">`, `<readonly>`, `<mac address="00:16:3e:00:00:01">`, `<script path="vif-bridge">`,
			`<outbound average="1024">`, `port="5903" autoport="no"`, `passwd="pw"`, `keymap="de"`, `listen="0.0.0.0"`,
			`<input type="tablet" bus="usb">`, `<serial type="tcp">`, `service="7777"`, `<sound model="ich6">`, `<model type="vga" vram="16384">`,
			`<hostdev mode="subsystem" type="pci" managed="yes">`, `<on_reboot>destroy</on_reboot>`, `<on_crash>coredump-destroy</on_crash>`},
		libvirt.KVM: {`<domain type="kvm">`, `machine="pc">hvm</type>`, `/usr/share/OVMF/OVMF_CODE.fd`, `<hyperv`, `<target dev="vdb" bus="virtio">`, `<driver name="qemu" type="raw">`},
	} {
		out, err := libvirt.Render(g, hv)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wants {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s XML lacks %s:\n%s", hv, w, out)
			}
		}
		back, _, err := libvirt.ParseXML("x.xml", out)
		if err != nil {
			t.Fatal(err)
		}
		if *back.Memory != 512 || *back.MaxMem != 1024 || *back.VCPUs != 1 || *back.MaxVCPUs != 2 || back.Boot != "dc" || back.Firmware != "ovmf" ||
			*back.Display.VNCDisplay != 3 || back.Display.VNCPasswd != "pw" || len(back.Disks) != 3 || back.Disks[1].Device != "/dev/vg/lv" || back.Disks[1].Vdev != "xvdb" ||
			back.NICs[0].Bridge != "br1" || back.Serial[0] != "tcp:127.0.0.1:7777" || back.SoundHW[0] != "hda" || back.PCI[0] != "0000:01:00.0" {
			t.Errorf("%s: ParseXML(Render) = %+v", hv, back)
		}
	}
	g.Lifecycle.OnReboot = "soft-reset"
	if _, err := libvirt.Render(g, libvirt.Xen); err == nil {
		t.Error("soft-reset rendered")
	}
	if _, err := libvirt.ParseHypervisor("vmware"); err == nil {
		t.Error("vmware accepted")
	}
}
