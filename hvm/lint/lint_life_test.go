package lint_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lint"
)

func errorsOf(fs []lint.Finding) []lint.Finding {
	var out []lint.Finding
	for _, f := range fs {
		if f.Severity == lint.Error {
			out = append(out, f)
		}
	}
	return out
}

// Before Windows is installed there is nothing to hold the settings
// against: lint explains the HAL each would give, and changes are free.
func TestLintWithoutInstallRecordExplainsAndAllowsChanges(t *testing.T) {
	g := base()
	g.Install = nil
	for _, change := range []func(){
		func() { g.Features.ACPI = hvm.Bool(false) },
		func() { g.Features.APIC = hvm.Bool(false) },
		func() { g.VCPUs = hvm.Int(2) },
		func() { g.NICs[0].MAC = "00:16:3e:00:00:09"; g.Memory = hvm.Int(1024); g.Disks = g.Disks[:1] },
	} {
		change()
		fs := lint.Check(g)
		if e := errorsOf(fs); len(e) > 0 {
			t.Errorf("errors without an install record: %v", e)
		}
		for _, id := range []string{lint.IDHALChanged, lint.IDMACChanged, lint.IDMemoryChanged, lint.IDCDROMChanged} {
			if find(fs, id) != nil {
				t.Errorf("%s without an install record", id)
			}
		}
		if f := find(fs, lint.IDNotInstalled); f == nil || !strings.Contains(f.Fix, "strata guest installed w") {
			t.Errorf("no install-not-recorded note: %v", fs)
		}
	}
	g = base()
	g.Install = nil
	f := find(lint.Check(g), lint.IDHAL)
	if f == nil || !strings.Contains(f.Message, "ACPI Uniprocessor PC") || !strings.Contains(f.Message, "acpi=0 would give MPS Uniprocessor PC, halapic.dll") || !strings.Contains(f.Message, "vcpus=2 would give ACPI Multiprocessor PC") {
		t.Errorf("HAL explanation: %+v", f)
	}
}

// xp-install-acpi: an XP-era guest booting from CD with ACPI on and no
// finished install; not once installed, not with ACPI off, not for later
// Windows.
func TestXPInstallACPIFiresWhenInstallingFromCD(t *testing.T) {
	g := base()
	g.Install, g.Boot = nil, "dc"
	if find(lint.Check(g), lint.IDXPInstallACPI) == nil {
		t.Error("no xp-install-acpi for XP installing from CD with ACPI on")
	}
	g.Features.ACPI = hvm.Bool(false)
	if find(lint.Check(g), lint.IDXPInstallACPI) != nil {
		t.Error("xp-install-acpi with ACPI off")
	}
	g.Features.ACPI, g.Install = hvm.Bool(true), base().Install
	if find(lint.Check(g), lint.IDXPInstallACPI) != nil {
		t.Error("xp-install-acpi once installed")
	}
	g.Install, g.OS = nil, "windows"
	if find(lint.Check(g), lint.IDXPInstallACPI) != nil {
		t.Error("xp-install-acpi for a later Windows")
	}
}

// A clone keeps its golden's install record, marked: its new MAC is
// information (reactivation unless sysprepped), never an error.
func TestCloneRecordIsInformationNotError(t *testing.T) {
	g := base()
	g.Install.CloneOf = "xp-golden"
	g.NICs[0].MAC = "00:16:3e:12:34:56"
	g.UUID = "11111111-2222-4333-8444-555555555555"
	fs := lint.Check(g)
	if e := errorsOf(fs); len(e) > 0 {
		t.Errorf("a clone has errors: %v", e)
	}
	if find(fs, lint.IDMACChanged) != nil {
		t.Errorf("a clone's new MAC is a mac-changed warning: %v", fs)
	}
	f := find(fs, lint.IDCloneIdentity)
	if f == nil || f.Severity != lint.Info || !strings.Contains(f.Message, "xp-golden") || !strings.Contains(f.Message, "sysprep") || !strings.Contains(f.Message, "00:16:3e:12:34:56") {
		t.Errorf("clone-identity: %+v", f)
	}
}

// A record from before issue 14 (taken at define time) may not be what
// Windows saw: a HAL difference is a warning, with how to re-record.
func TestOldInstallRecordWarnsInsteadOfErrors(t *testing.T) {
	g := base()
	g.Install.By = ""
	g.Features.ACPI = hvm.Bool(false)
	fs := lint.Check(g)
	if f := find(fs, lint.IDHALChanged); f == nil || f.Severity != lint.Warning {
		t.Errorf("hal-changed on an old record: %+v", f)
	}
	if f := find(fs, lint.IDInstallOld); f == nil || !strings.Contains(f.Fix, "strata guest installed") {
		t.Errorf("install-record-old: %+v", f)
	}
}

// Linux guests get no Windows findings, whatever changed.
func TestLinuxGuestHasNoWindowsFindings(t *testing.T) {
	g := base()
	g.OS = "linux"
	g.Features.ACPI, g.VCPUs, g.Memory, g.MaxMem, g.Boot = hvm.Bool(false), hvm.Int(4), hvm.Int(2048), hvm.Int(2048), "dc"
	g.NICs[0].MAC = "00:16:3e:00:00:77"
	g.Disks = g.Disks[:1]
	windowsIDs := []string{lint.IDHAL, lint.IDHALChanged, lint.IDHALMPToUP, lint.IDXPInstallACPI, lint.IDMACChanged, lint.IDMemoryChanged, lint.IDCDROMChanged, lint.IDNotInstalled, lint.IDInstallOld, lint.IDCloneIdentity, lint.IDGuestAgentXP}
	for _, install := range []*hvm.Install{g.Install, nil} {
		g.Install = install
		for _, id := range windowsIDs {
			if f := find(lint.Check(g), id); f != nil {
				t.Errorf("linux guest: %v", f)
			}
		}
	}
	// An imported config without Windows hints is not Windows.
	fs, err := lint.CheckConfig("web.cfg", []byte("name='web'\ntype='hvm'\nmemory=256\nacpi=0\nboot='dc'\ndisk=['/srv/web.img,raw,hda,rw']\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range windowsIDs {
		if f := find(fs, id); f != nil {
			t.Errorf("config without Windows hints: %v", f)
		}
	}
}

func TestGuessOS(t *testing.T) {
	for _, tc := range []struct {
		g    hvm.Guest
		want string
	}{
		{hvm.Guest{Name: "winxp-pro"}, "winxp"},
		{hvm.Guest{Name: "office", Disks: []hvm.Disk{{Path: "/srv/xp.img"}}}, "winxp"},
		{hvm.Guest{Name: "win2k3"}, "win2003"},
		{hvm.Guest{Name: "dc1", Disks: []hvm.Disk{{Path: "/var/tmp/windows2k3.iso", CDROM: true}}}, "win2003"},
		{hvm.Guest{Name: "w2k"}, "win2000"},
		{hvm.Guest{Name: "win7"}, "windows"},
		{hvm.Guest{Name: "box", Features: hvm.Features{Viridian: &hvm.Viridian{Enabled: true}}}, "windows"},
		{hvm.Guest{Name: "box", Localtime: hvm.Bool(true)}, "windows"},
		{hvm.Guest{Name: "box", Extra: map[string]string{"localtime": "1"}}, "windows"},
		{hvm.Guest{Name: "debian12"}, "linux"},
		{hvm.Guest{Name: "box"}, "other"},
		{hvm.Guest{Name: "box", Localtime: hvm.Bool(false)}, "other"},
	} {
		if got := hvm.GuessOS(&tc.g); got != tc.want {
			t.Errorf("GuessOS(%s %v) = %s, want %s", tc.g.Name, tc.g.Disks, got, tc.want)
		}
	}
}
