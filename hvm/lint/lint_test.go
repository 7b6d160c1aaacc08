package lint_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/lint"
)

func TestHALTable(t *testing.T) {
	// REFERENCE.md, "Windows HAL chosen at install time"; "any" apic is
	// checked both ways.
	for _, tc := range []struct {
		acpi, apic bool
		vcpus      int
		name, dll  string
	}{
		{false, false, 1, "Standard PC", "hal.dll"},
		{false, true, 1, "MPS Uniprocessor PC", "halapic.dll"},
		{false, false, 2, "MPS Multiprocessor PC", "halmps.dll"},
		{false, true, 4, "MPS Multiprocessor PC", "halmps.dll"},
		{true, false, 1, "ACPI PC", "halacpi.dll"},
		{true, true, 1, "ACPI Uniprocessor PC", "halaacpi.dll"},
		{true, false, 2, "ACPI Multiprocessor PC", "halmacpi.dll"},
		{true, true, 8, "ACPI Multiprocessor PC", "halmacpi.dll"},
	} {
		h := lint.HALFor(tc.acpi, tc.apic, tc.vcpus)
		if h.Name != tc.name || h.DLL != tc.dll {
			t.Errorf("HALFor(acpi=%v, apic=%v, vcpus=%d) = %+v, want %s (%s)", tc.acpi, tc.apic, tc.vcpus, h, tc.name, tc.dll)
		}
		g := base()
		g.Features.ACPI, g.Features.APIC, g.VCPUs = hvm.Bool(tc.acpi), hvm.Bool(tc.apic), hvm.Int(tc.vcpus)
		f := find(lint.Check(g), lint.IDHAL)
		if f == nil || f.Severity != lint.Info || !strings.Contains(f.Message, tc.name) || !strings.Contains(f.Message, tc.dll) {
			t.Errorf("hal finding for acpi=%v apic=%v vcpus=%d: %+v", tc.acpi, tc.apic, tc.vcpus, f)
		}
	}
}

// base is a clean installed guest: no findings but the HAL note.
func base() *hvm.Guest {
	return &hvm.Guest{
		Name: "w", OS: "winxp", Memory: hvm.Int(512), MaxMem: hvm.Int(512), VCPUs: hvm.Int(1), Boot: "c",
		Features: hvm.Features{ACPI: hvm.Bool(true), APIC: hvm.Bool(true)},
		Disks:    []hvm.Disk{{Path: "/x.img", Vdev: "hda"}, {Vdev: "hdc", CDROM: true}},
		NICs:     []hvm.NIC{{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0"}},
		Install:  &hvm.Install{By: hvm.InstallByInstall, ACPI: hvm.Bool(true), APIC: hvm.Bool(true), VCPUs: hvm.Int(1), MAC: "00:16:3e:00:00:01", Memory: hvm.Int(512), CDROM: "hdc"},
	}
}

func find(fs []lint.Finding, id string) *lint.Finding {
	for i := range fs {
		if fs[i].ID == id {
			return &fs[i]
		}
	}
	return nil
}

func TestFindings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(g *hvm.Guest)
		id     string
		sev    lint.Severity
		text   string
	}{
		{"clean", func(g *hvm.Guest) {}, "", "", ""},
		{"acpi turned off after install", func(g *hvm.Guest) { g.Features.ACPI = hvm.Bool(false) }, lint.IDHALChanged, lint.Error, "ACPI Uniprocessor PC"},
		{"apic turned off after install", func(g *hvm.Guest) { g.Features.APIC = hvm.Bool(false) }, lint.IDHALChanged, lint.Error, "halacpi.dll"},
		{"one to two vcpus", func(g *hvm.Guest) { g.VCPUs = hvm.Int(2) }, lint.IDHALChanged, lint.Error, "ACPI Multiprocessor PC"},
		{"two vcpus back to one", func(g *hvm.Guest) { g.Install.VCPUs = hvm.Int(2) }, lint.IDHALMPToUP, lint.Warning, "slower"},
		{"xp install with acpi", func(g *hvm.Guest) { g.Install, g.Boot = nil, "dc" }, lint.IDXPInstallACPI, lint.Warning, "phase 1"},
		{"unpinned mac", func(g *hvm.Guest) { g.NICs[0].MAC, g.Install.MAC = "", "" }, lint.IDMACUnpinned, lint.Warning, "no fixed MAC"},
		{"changed mac", func(g *hvm.Guest) { g.NICs[0].MAC = "00:16:3e:00:00:02" }, lint.IDMACChanged, lint.Warning, "reactivation"},
		{"changed memory", func(g *hvm.Guest) { g.Memory, g.MaxMem = hvm.Int(1024), hvm.Int(1024) }, lint.IDMemoryChanged, lint.Warning, "reactivation"},
		{"changed cdrom", func(g *hvm.Guest) { g.Disks[1].Vdev = "hdd" }, lint.IDCDROMChanged, lint.Warning, "hdc"},
		{"balloon", func(g *hvm.Guest) { g.MaxMem = hvm.Int(1024) }, lint.IDBalloon, lint.Warning, "balloon driver"},
		{"vnc exposed", func(g *hvm.Guest) { g.Display.VNCListen = "0.0.0.0" }, lint.IDVNCExposed, lint.Error, "without a password"},
	} {
		g := base()
		tc.change(g)
		fs := lint.Check(g)
		var other []lint.Finding
		for _, f := range fs {
			if f.ID != lint.IDHAL && f.ID != lint.IDNotInstalled && f.ID != tc.id {
				other = append(other, f)
			}
		}
		if len(other) > 0 {
			t.Errorf("%s: unexpected findings %v", tc.name, other)
		}
		if tc.id == "" {
			continue
		}
		f := find(fs, tc.id)
		if f == nil || f.Severity != tc.sev || !strings.Contains(f.Message+f.Fix, tc.text) || f.Fix == "" && tc.id != lint.IDHALMPToUP {
			t.Errorf("%s: finding %s = %+v, want severity %s mentioning %q with a fix", tc.name, tc.id, f, tc.sev, tc.text)
		}
	}
	// A password or loopback silences the VNC finding.
	g := base()
	g.Display.VNCListen, g.Display.VNCPasswd = "0.0.0.0", "pw"
	if find(lint.Check(g), lint.IDVNCExposed) != nil {
		t.Error("vnc-exposed despite a password")
	}
	// Linux guests get no HAL note.
	g.OS = "linux"
	if find(lint.Check(g), lint.IDHAL) != nil {
		t.Error("HAL note for a Linux guest")
	}
}

func TestCheckConfig(t *testing.T) {
	fs, err := lint.CheckConfig("x.cfg", []byte("name='a'\ntype='hvm'\nbuilder='linux'\nmemory=64\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f := find(fs, lint.IDBuilderType); f == nil || f.Severity != lint.Error || !strings.Contains(f.Message, "x.cfg:2") {
		t.Errorf("builder-type finding: %+v", fs)
	}
	data, err := os.ReadFile(hvmtest.Dir() + "/seeds/win2k3-xm.cfg")
	if err != nil {
		t.Fatal(err)
	}
	fs, err = lint.CheckConfig("win2k3-xm.cfg", data)
	if err != nil {
		t.Fatal(err)
	}
	deprecated := map[string]string{}
	for _, f := range fs {
		if f.ID == lint.IDDeprecatedKey {
			deprecated[f.Field] = f.Fix
		}
	}
	if !strings.Contains(deprecated["builder"], `type = "hvm"`) || !strings.Contains(deprecated["stdvga"], `vga = "stdvga"`) {
		t.Errorf("deprecated-key findings: %v", deprecated)
	}
	for _, id := range []string{lint.IDPythonPreamble, lint.IDMACUnpinned, lint.IDHAL} {
		if find(fs, id) == nil {
			t.Errorf("no %s finding for the win2k3 seed: %v", id, fs)
		}
	}
	j, err := json.Marshal(fs[0])
	if err != nil || !strings.Contains(string(j), `"severity":`) {
		t.Errorf("JSON %s %v", j, err)
	}
}

// Windows XP has no QEMU guest agent: a definition that says it runs one
// is warned about; a Linux guest with one is not.
func TestGuestAgentOnXPIsWarnedAbout(t *testing.T) {
	g := base()
	if f := find(lint.Check(g), lint.IDGuestAgentXP); f != nil {
		t.Fatalf("XP without the flag: %+v", f)
	}
	g.Features.GuestAgent = hvm.Bool(true)
	f := find(lint.Check(g), lint.IDGuestAgentXP)
	if f == nil || f.Severity != lint.Warning || f.Field != "features.guest_agent" || !strings.Contains(f.Message, "no QEMU guest agent") || !strings.Contains(f.Fix, "crash-consistent") {
		t.Fatalf("XP with the flag: %+v", f)
	}
	g.OS = "linux"
	if f := find(lint.Check(g), lint.IDGuestAgentXP); f != nil {
		t.Fatalf("Linux with the flag: %+v", f)
	}
}
