package registry_test

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
)

func baseGuest() *hvm.Guest {
	g := &hvm.Guest{APIVersion: hvm.APIVersion, Name: "w", Memory: hvm.Int(512),
		Disks: []hvm.Disk{{Volume: "w-sys", Vdev: "hda"}, {Vdev: "hdc", CDROM: true}},
		NICs:  []hvm.NIC{{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0"}}}
	return g
}

// TestSetSpeaksXL sets every kind of key by its xl name, as xl reads it,
// and by its YAML path.
func TestSetSpeaksXL(t *testing.T) {
	g := baseGuest()
	err := registry.Assign(g, "viridian=1", "localtime=1", "rtc_timeoffset=-3600", "stdvga=1", "serial=pty", "acpi=0",
		"cdrom=winxp", "usbdevice=tablet", "soundhw=all", "passthrough=share_pt", "on_reboot=destroy", "tsc_mode=native", "cpu_cap=50")
	if err != nil {
		t.Fatal(err)
	}
	if v := g.Features.Viridian; v == nil || !v.Enabled || !hvm.Val(g.Localtime, false) || hvm.Val(g.RTCTimeOffset, 0) != -3600 ||
		g.Display.VGA != "stdvga" || !slices.Equal(g.Serial, []string{"pty"}) || hvm.Val(g.Features.ACPI, true) ||
		g.Disks[1].Media != "winxp" || !slices.Equal(g.USBDevices, []string{"tablet"}) || !slices.Equal(g.SoundHW, []string{"all"}) ||
		g.Passthrough != "share_pt" || g.Lifecycle.OnReboot != "destroy" || g.Extra["tsc_mode"] != `"native"` || g.Extra["cap"] != "50" {
		t.Errorf("after set: %+v", g)
	}
	// The YAML paths the README shows.
	if err := registry.Assign(g, "features.viridian=false", "features.acpi=true", "display.vga=cirrus", "localtime=", "cdrom="); err != nil {
		t.Fatal(err)
	}
	if g.Features.Viridian.Enabled || !*g.Features.ACPI || g.Display.VGA != "cirrus" || g.Localtime != nil || g.Disks[1].Media != "" || !g.Disks[1].CDROM {
		t.Errorf("after the YAML paths: %+v", g)
	}
	if err := registry.Assign(g, "features.viridian=[base, freq]"); err != nil || !reflect.DeepEqual(g.Features.Viridian, &hvm.Viridian{Enabled: true, Groups: []string{"base", "freq"}}) {
		t.Errorf("viridian groups: %v %+v", err, g.Features.Viridian)
	}
	// Whole lists in xl syntax replace the list.
	if err := registry.Assign(g, `vif=[ "mac=00:16:3e:00:00:02,bridge=xenbr1,model=e1000", "bridge=xenbr2" ]`, `disk=[ "/dev/vg/w,,hda", "/srv/w.iso,,hdc,cdrom" ]`); err != nil {
		t.Fatal(err)
	}
	if len(g.NICs) != 2 || g.NICs[0].MAC != "00:16:3e:00:00:02" || g.NICs[1].Bridge != "xenbr2" || len(g.Disks) != 2 || g.Disks[0].Path != "/dev/vg/w" || !g.Disks[1].CDROM {
		t.Errorf("after vif and disk: %+v %+v", g.NICs, g.Disks)
	}
	if err := registry.Assign(g, "vif=bridge=xenbr3,model=e1000"); err != nil || len(g.NICs) != 1 || g.NICs[0].Bridge != "xenbr3" {
		t.Errorf("a bare vif spec: %v %+v", err, g.NICs)
	}
	if err := registry.Assign(g, "boot=cda"); err != nil || g.Boot != "cd" {
		t.Errorf("boot=cda: %v, boot %q", err, g.Boot)
	}
	if err := registry.Assign(g, "ramdisk=/boot/initrd.img"); err == nil || !strings.Contains(err.Error(), "kernel=PATH first") {
		t.Errorf("ramdisk without kernel: %v", err)
	}
	if err := registry.Assign(g, "kernel=/boot/vmlinuz", "ramdisk=/boot/initrd.img", "cmdline=console=ttyS0"); err != nil || *g.DirectBoot != (hvm.DirectBoot{Kernel: "/boot/vmlinuz", Ramdisk: "/boot/initrd.img", Cmdline: "console=ttyS0"}) {
		t.Errorf("direct boot: %v %+v", err, g.DirectBoot)
	}
}

// TestSetListAppendRemove appends to and removes from lists.
func TestSetListAppendRemove(t *testing.T) {
	g := baseGuest()
	err := registry.Assign(g, "disks+=w-data", "disks+=w-swap:sdb", "disk+=/srv/x.img,qcow2,hdd", "nics+=bridge=xenbr1,model=e1000",
		"serial+=pty", "serial+=file:/var/log/w.serial", "pci+=0000:01:00.0")
	if err != nil {
		t.Fatal(err)
	}
	var vdevs []string
	for _, d := range g.Disks {
		vdevs = append(vdevs, d.Vdev)
	}
	if !slices.Equal(vdevs, []string{"hda", "hdc", "hdb", "sdb", "hdd"}) || g.Disks[2].Volume != "w-data" || g.Disks[4].Format != "qcow2" ||
		len(g.NICs) != 2 || g.NICs[1].Model != "e1000" || len(g.Serial) != 2 || len(g.PCI) != 1 {
		t.Errorf("after +=: disks %v, %+v", vdevs, g)
	}
	if err := registry.Assign(g, "nics-=00:16:3E:00:00:01", "disks-=sdb", "disks-=w-data", "serial-=pty", "pci-=0000:01:00.0"); err != nil {
		t.Fatal(err)
	}
	if len(g.NICs) != 1 || g.NICs[0].Bridge != "xenbr1" || len(g.Disks) != 3 || !slices.Equal(g.Serial, []string{"file:/var/log/w.serial"}) || len(g.PCI) != 0 {
		t.Errorf("after -=: %+v", g)
	}
	for _, tc := range []struct{ a, want string }{
		{"nics-=00:16:3e:99:99:99", "nics-=00:16:3e:99:99:99: no NIC has that MAC"},
		{"disks-=sdz", "disks-=sdz: no disk"},
		{"memory+=1", "memory+=: += and -= work on lists"},
		{"serial+=file:/var/log/w.serial", "already has it"},
	} {
		if err := registry.Assign(g, tc.a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.a, err, tc.want)
		}
	}
}

// TestSetErrorsNameTheKey: errors name the key as typed and never show Go
// types or YAML line numbers.
func TestSetErrorsNameTheKey(t *testing.T) {
	goish := regexp.MustCompile(`hvm\.|\bint\b|!!|line [0-9]|unmarshal|\*bool|struct`)
	for _, tc := range []struct{ a, want string }{
		{"memory=lots", "memory"},
		{"features.acpi=maybe", "features.acpi"},
		{"display.vncdisplay=x", "display.vncdisplay: \"x\" does not fit: display.vncdisplay takes a whole number"},
		{"features.viridian=often", "features.viridian"},
		{"features=1", "features: \"1\" does not fit: features takes a section"},
		{"nosuchkey=1", "nosuchkey is not a key strata knows"},
		{"features.nosuch=1", `features has no "nosuch"`},
		{"nics.7.bridge=br0", "nics.7.bridge"},
		{"viridian=[ \"warp\" ]", "viridian"},
		{"vif=mac=zz", "vif"},
		{"disk=/x,bogus,hda", "disk"},
		{"fda=/srv/floppy.img", "fda is refused"},
		{"vncviewer=1", "vncviewer has no effect"},
		{"passthrough=sometimes", "passthrough"},
		{"memory=1.5", "memory"},
		{"boot=x", "boot"},
		{"soundhw=kazoo", "soundhw"},
	} {
		err := registry.Assign(baseGuest(), tc.a)
		t.Logf("%s: %v", tc.a, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) || goish.MatchString(err.Error()) || !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: %v; want an invalid-argument error containing %q and no Go types or line numbers", tc.a, err, tc.want)
		}
	}
}

// Removing from an empty list says the list is empty, not "it has: ".
func TestSetRemoveFromAnEmptyListSaysItHasNone(t *testing.T) {
	g := baseGuest()
	g.SoundHW = nil
	err := registry.Assign(g, "soundhw-=ac97")
	if err == nil || !strings.Contains(err.Error(), "soundhw-=ac97: soundhw has none") || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("soundhw-=ac97 on a guest without sound: %v", err)
	}
	if err := registry.Assign(g, "soundhw+=ac97", "soundhw-=sb16"); err == nil || !strings.Contains(err.Error(), "soundhw has no such item (it has: ac97)") {
		t.Fatalf("soundhw-=sb16 on a guest with ac97: %v", err)
	}
}
