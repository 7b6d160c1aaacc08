package lifecycle

import (
	"testing"

	"github.com/strata-vm/strata/hvm"
)

// Phase 1 boots the media from the CD and stops at its reboot; with xp,
// ACPI and APIC are off. Phase 2 boots the disk with what was defined.
func TestInstallPhasesSwitchTheDefinition(t *testing.T) {
	g := &hvm.Guest{Name: "xp", Boot: "c", Features: hvm.Features{ACPI: hvm.Bool(true)},
		Lifecycle: hvm.Lifecycle{OnReboot: "restart"},
		Disks:     []hvm.Disk{{Volume: "xp-sys", Vdev: "hda"}}}
	saved := InstallSaved{Boot: g.Boot, OnReboot: g.Lifecycle.OnReboot, ACPI: g.Features.ACPI, APIC: g.Features.APIC}
	if err := phase1(g, InstallOptions{Media: "winxp", XP: true}, ""); err != nil {
		t.Fatal(err)
	}
	if len(g.Disks) != 2 || !g.Disks[1].CDROM || g.Disks[1].Media != "winxp" || g.Disks[1].Vdev != "hdc" {
		t.Fatalf("phase 1 disks: %+v", g.Disks)
	}
	if g.Boot != "dc" || g.Lifecycle.OnReboot != "destroy" || hvm.Val(g.Features.ACPI, true) || hvm.Val(g.Features.APIC, true) {
		t.Fatalf("phase 1 definition: boot %q on_reboot %q acpi %v apic %v", g.Boot, g.Lifecycle.OnReboot, g.Features.ACPI, g.Features.APIC)
	}
	phase2(g, saved)
	if g.Boot != "c" || g.Lifecycle.OnReboot != "restart" || !g.EffectiveACPI() || !g.EffectiveAPIC() || g.Disks[1].Media != "winxp" {
		t.Fatalf("phase 2 definition: %+v", g)
	}

	// A CD path replaces what the drive held; without xp the firmware
	// tables stay; on_reboot destroy as defined becomes restart for
	// phase 2 (else phase 2 would stop at Windows' first reboot).
	g = &hvm.Guest{Name: "w", Lifecycle: hvm.Lifecycle{OnReboot: "destroy"},
		Disks: []hvm.Disk{{Volume: "w-sys", Vdev: "hda"}, {Media: "old", Vdev: "hdc", CDROM: true}}}
	saved = InstallSaved{OnReboot: "destroy"}
	if err := phase1(g, InstallOptions{Media: "/srv/iso/w.iso"}, "w-unattend-1"); err != nil {
		t.Fatal(err)
	}
	if g.Disks[1].Media != "" || g.Disks[1].Path != "/srv/iso/w.iso" || g.Features.ACPI != nil {
		t.Fatalf("phase 1 with a path: %+v", g)
	}
	if len(g.Disks) != 3 || g.Disks[2].Vdev != "hdd" || g.Disks[2].Media != "w-unattend-1" || !g.Disks[2].CDROM {
		t.Fatalf("the answer file CD: %+v", g.Disks)
	}
	phase2(g, saved)
	if g.Lifecycle.OnReboot != "restart" {
		t.Fatalf("phase 2 on_reboot: %q", g.Lifecycle.OnReboot)
	}
	// A second answer file goes into the same drive.
	attachUnattend(g, "w-unattend-2")
	if len(g.Disks) != 3 || g.Disks[2].Media != "w-unattend-2" {
		t.Fatalf("a second answer file CD: %+v", g.Disks)
	}
}
