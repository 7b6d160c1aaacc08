// Package lint checks guest definitions for the mistakes that hurt HVM
// Windows guests on Xen: the HAL Setup will install and changes to it
// after install, activation-relevant hardware changes (MAC, memory,
// CD-ROM), the XP phase-1 ACPI hang, ballooning without a balloon driver,
// control surfaces the network can reach (consoles, monitors, debuggers;
// see exposure.go), and deprecated or contradictory config keys.
// Findings are data (JSON-tagged) for `strata guest lint --output json`.
//
// Windows findings (HAL, activation, XP install) are for guests whose os
// hint is Windows or unset; imports get a hint from their config
// (hvm.GuessOS). Until the guest has an install record (hvm.Install,
// taken when Windows is installed), lint explains the HAL each setting
// would give and holds nothing against later changes; with one, a HAL
// change is an error, unless the record predates issue 14 (taken at
// define time, Install.By empty: a warning), and a clone's new identity
// (Install.CloneOf) is information.
package lint

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/xlcfg"
)

// Severity of a finding.
type Severity string

// Severities.
const (
	Info    Severity = "info"
	Warning Severity = "warning"
	Error   Severity = "error"
)

// Finding is one lint result.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Field    string   `json:"field,omitempty"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s %s: %s", f.Severity, f.ID, f.Message)
	if f.Fix != "" {
		s += " (fix: " + f.Fix + ")"
	}
	return s
}

// Finding IDs.
const (
	IDHAL            = "hal"
	IDHALChanged     = "hal-changed"
	IDHALMPToUP      = "hal-mp-to-up"
	IDXPInstallACPI  = "xp-install-acpi"
	IDMACUnpinned    = "mac-unpinned"
	IDMACChanged     = "mac-changed"
	IDMemoryChanged  = "memory-changed"
	IDCDROMChanged   = "cdrom-changed"
	IDBalloon        = "balloon"
	IDVNCExposed     = "vnc-exposed"
	IDSpiceExposed   = "spice-exposed"
	IDBuilderType    = "builder-type"
	IDDeprecatedKey  = "deprecated-key"
	IDPythonPreamble = "python-preamble"
	IDConfigNote     = "config-note"
	IDGuestAgentXP   = "guest-agent-xp"
	IDNotInstalled   = "install-not-recorded"
	IDInstallOld     = "install-record-old"
	IDCloneIdentity  = "clone-identity"
	IDDiskMissing    = "disk-missing"
	IDOSGuessed      = "os-guessed"
)

// HAL is the Windows hardware abstraction layer Setup installs.
type HAL struct {
	Name string `json:"name"`
	DLL  string `json:"dll"`
	ACPI bool   `json:"acpi"`
	MP   bool   `json:"mp"` // multiprocessor
}

// HALFor returns the HAL Windows XP / Server 2003 Setup installs for the
// firmware it finds (KB 309283): ACPI tables only with acpi, MP tables and
// an APIC with apic or more than one vCPU.
func HALFor(acpi, apic bool, vcpus int) HAL {
	switch {
	case !acpi && vcpus > 1:
		return HAL{"MPS Multiprocessor PC", "halmps.dll", false, true}
	case !acpi && apic:
		return HAL{"MPS Uniprocessor PC", "halapic.dll", false, false}
	case !acpi:
		return HAL{"Standard PC", "hal.dll", false, false}
	case vcpus > 1:
		return HAL{"ACPI Multiprocessor PC", "halmacpi.dll", true, true}
	case apic:
		return HAL{"ACPI Uniprocessor PC", "halaacpi.dll", true, false}
	}
	return HAL{"ACPI PC", "halacpi.dll", true, false}
}

// isWindows: an explicit Windows hint, or none at all (a definition
// written by hand without os; imports get one, hvm.GuessOS).
func isWindows(os string) bool { return os == "" || strings.HasPrefix(os, "win") }

func isXPEra(os string) bool { return os == "winxp" || os == "win2000" || os == "win2003" }

// Check lints a guest definition (after FillDefaults or not: fields that
// are not set count with their defaults).
func Check(g *hvm.Guest) []Finding {
	var fs []Finding
	add := func(id string, sev Severity, field, fix, format string, args ...any) {
		fs = append(fs, Finding{ID: id, Severity: sev, Field: field, Message: fmt.Sprintf(format, args...), Fix: fix})
	}
	for _, check := range []func(*hvm.Guest, adder){
		checkInstall,
		checkXP,
		checkMACsPinned,
		checkBalloon,
		checkExposure,
	} {
		check(g, add)
	}
	return fs
}

// checkInstall: for Windows, the HAL the firmware implies and, once
// installed, what changed since the install record.
func checkInstall(g *hvm.Guest, add adder) {
	if !isWindows(g.OS) {
		return
	}
	acpi, apic, vcpus := g.EffectiveACPI(), g.EffectiveAPIC(), g.EffectiveVCPUs()
	hal := HALFor(acpi, apic, vcpus)
	in := g.Install
	if in == nil {
		add(IDHAL, Info, "features", "", "Windows XP/2003 Setup would install the %s HAL (%s) with acpi=%d, apic=%d, vcpus=%d (%s); the HAL is fixed when Windows is installed",
			hal.Name, hal.DLL, b2i(acpi), b2i(apic), vcpus, alternatives(acpi, apic, vcpus))
		add(IDNotInstalled, Info, "install", fmt.Sprintf("strata guest install %s records it; for Windows installed outside strata: strata guest installed %s", g.Name, g.Name),
			"no install record yet: until Windows is installed, changes to acpi, apic, vcpus, the MAC, memory and the CD-ROM are free")
		return
	}
	add(IDHAL, Info, "features", "", "Windows XP/2003 Setup installs the %s HAL (%s) with acpi=%d, apic=%d, vcpus=%d; it cannot change after install", hal.Name, hal.DLL, b2i(acpi), b2i(apic), vcpus)
	// A record strata took when the guest was defined (before issue
	// 14) may not be what Windows saw: its differences are warnings.
	sev := Error
	if in.By == "" {
		sev = Warning
		add(IDInstallOld, Info, "install", fmt.Sprintf("once Windows runs with the settings it was installed with: strata guest installed %s", g.Name),
			"the install record was taken when the guest was defined, which may be before Windows was installed with other settings")
	}
	was := HALFor(hvm.Val(in.ACPI, acpi), hvm.Val(in.APIC, apic), hvm.Val(in.VCPUs, vcpus))
	switch {
	case was == hal:
	case was.MP && !hal.MP && was.ACPI == hal.ACPI:
		add(IDHALMPToUP, Warning, "vcpus", "", "installed with the %s HAL (%s); with one vCPU it keeps running that HAL, which works but is slower", was.Name, was.DLL)
	default:
		add(IDHALChanged, sev, "features",
			fmt.Sprintf("restore acpi=%d, apic=%d, vcpus=%d as at install, or reinstall Windows", b2i(was.ACPI), b2i(hvm.Val(in.APIC, apic)), hvm.Val(in.VCPUs, vcpus)),
			"installed with the %s HAL (%s) but the firmware now describes %s (%s): Windows may hang at boot or stop with 0x7B", was.Name, was.DLL, hal.Name, hal.DLL)
	}
	checkActivation(g, in, add)
}

// checkActivation: changes to what Windows' activation counts (the MAC,
// memory, the CD-ROM) since the install record.
func checkActivation(g *hvm.Guest, in *hvm.Install, add adder) {
	if in.MAC != "" {
		found := slices.ContainsFunc(g.NICs, func(n hvm.NIC) bool { return strings.EqualFold(n.MAC, in.MAC) })
		switch {
		case in.CloneOf != "":
			add(IDCloneIdentity, Info, "nics", "sysprep (generalize) Windows before freezing a golden image to spare each clone the reactivation",
				"a clone of golden image %q: same HAL, new hardware identity (UUID, and MAC %s instead of %s): Windows asks for reactivation unless the golden was sysprepped", in.CloneOf, firstMAC(g), strings.ToLower(in.MAC))
		case !found:
			add(IDMACChanged, Warning, "nics", "set mac="+strings.ToLower(in.MAC)+" on the first NIC", "no NIC has the MAC address %s that Windows was installed with: Windows will ask for reactivation", in.MAC)
		}
	}
	if in.Memory != nil && g.Memory != nil && *in.Memory != *g.Memory {
		add(IDMemoryChanged, Warning, "memory", fmt.Sprintf("set memory = %d", *in.Memory), "memory is %d MiB but Windows was installed with %d MiB: a change counts toward reactivation", *g.Memory, *in.Memory)
	}
	if in.CDROM != "" && !slices.ContainsFunc(g.Disks, func(d hvm.Disk) bool { return d.CDROM && d.Vdev == in.CDROM }) {
		add(IDCDROMChanged, Warning, "disks", "keep an (empty) CD-ROM drive at "+in.CDROM, "there is no CD-ROM at %s as at install: a change counts toward reactivation", in.CDROM)
	}
}

// checkXP: what XP-era Windows cannot do.
func checkXP(g *hvm.Guest, add adder) {
	if !isXPEra(g.OS) {
		return
	}
	// Text-mode Setup (phase 1) hangs with ACPI on: it matters while
	// Windows is being installed from CD, i.e. booting from the CD with no
	// record of a finished install.
	if g.Install == nil && strings.HasPrefix(g.EffectiveBoot(), "d") && g.EffectiveACPI() {
		add(IDXPInstallACPI, Warning, "features.acpi", "for phase 1 set acpi = 0, apic = 0 and on_reboot = destroy; then restore on_reboot = restart and boot from disk for phase 2 (strata guest install --xp does both)",
			"installing %s from CD with ACPI on: text-mode Setup (phase 1) may hang", g.OS)
	}
	if g.HasGuestAgent() {
		add(IDGuestAgentXP, Warning, "features.guest_agent", "remove features.guest_agent: its live points are crash-consistent",
			"%s has no QEMU guest agent (qemu-ga runs on Windows Vista and later): snapshot create --quiesce will find none to answer, and the agent's virtio-serial port is a device without a driver in the guest", g.OS)
	}
}

// checkMACsPinned: NICs without a fixed MAC address.
func checkMACsPinned(g *hvm.Guest, add adder) {
	for i, n := range g.NICs {
		if n.MAC != "" {
			continue
		}
		// The fix names a free address when one can be drawn; without
		// one (no randomness) it says what to write instead.
		fix := "set a fixed MAC in Xen's range 00:16:3e:xx:xx:xx"
		if mac, err := hvm.GenerateMAC(nil); err == nil {
			fix = "set mac=" + mac + " (a free address in Xen's range)"
		}
		add(IDMACUnpinned, Warning, fmt.Sprintf("nics[%d]", i), fix, "nics[%d] has no fixed MAC address: a new one at every boot changes Windows' hardware hash and the guest's DHCP lease", i)
	}
}

// checkBalloon: a guest that starts ballooned.
func checkBalloon(g *hvm.Guest, add adder) {
	if g.MaxMem != nil && g.Memory != nil && *g.MaxMem > *g.Memory {
		add(IDBalloon, Warning, "maxmem", fmt.Sprintf("set maxmem = %d (equal to memory) unless the guest has a balloon driver", *g.Memory),
			"maxmem (%d MiB) is above memory (%d MiB): the guest starts ballooned and crashes without a balloon driver", *g.MaxMem, *g.Memory)
	}
}

// alternatives says which HAL other settings would give, so the admin
// chooses before Setup fixes it.
func alternatives(acpi, apic bool, vcpus int) string {
	var out []string
	cur := HALFor(acpi, apic, vcpus)
	for _, alt := range []struct {
		what       string
		acpi, apic bool
		vcpus      int
	}{
		{fmt.Sprintf("acpi=%d", b2i(!acpi)), !acpi, apic, vcpus},
		{fmt.Sprintf("apic=%d", b2i(!apic)), acpi, !apic, vcpus},
		{map[bool]string{true: "vcpus=1", false: "vcpus=2"}[vcpus > 1], acpi, apic, map[bool]int{true: 1, false: 2}[vcpus > 1]},
	} {
		if h := HALFor(alt.acpi, alt.apic, alt.vcpus); h != cur {
			out = append(out, fmt.Sprintf("%s would give %s, %s", alt.what, h.Name, h.DLL))
		}
	}
	return strings.Join(out, "; ")
}

func firstMAC(g *hvm.Guest) string {
	if len(g.NICs) == 0 {
		return "none"
	}
	return g.NICs[0].MAC
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FromWarnings turns config import warnings into findings.
func FromWarnings(ws []xlcfg.Warning) []Finding {
	var fs []Finding
	for _, w := range ws {
		f := Finding{ID: IDConfigNote, Severity: Info, Field: w.Key, Message: w.String()}
		switch w.Code {
		case "deprecated-key":
			f.ID, f.Severity = IDDeprecatedKey, Warning
			f.Fix = "use " + w.Replacement
		case "python-preamble":
			f.ID = IDPythonPreamble
			f.Fix = "delete those lines: xl rejects them"
		}
		fs = append(fs, f)
	}
	return fs
}

// CheckConfig lints an xl.cfg or xm file: the raw settings (a builder that
// contradicts type, deprecated keys) and, when it converts, the guest.
// Errors are returned only for files that cannot be read at all.
func CheckConfig(name string, data []byte) ([]Finding, error) {
	c, err := xlcfg.Decode(name, data)
	if err != nil {
		return nil, err
	}
	var fs []Finding
	ts, bs := c.Get("type"), c.Get("builder")
	if ts != nil && bs != nil {
		want := map[string]string{"hvm": "hvm", "linux": "pv", "generic": "pv"}[bs.Value.Text]
		if want != ts.Value.Text {
			fs = append(fs, Finding{ID: IDBuilderType, Severity: Error, Field: "builder",
				Message: fmt.Sprintf("%s:%d: type = %q contradicts builder = %q on line %d", name, ts.Line, ts.Value.Text, bs.Value.Text, bs.Line),
				Fix:     "delete the builder line (deprecated) and keep the right type"})
		}
	}
	g, ws, err := c.Guest()
	if err != nil {
		if errors.Is(err, xlcfg.ErrBuilderType) {
			return fs, nil
		}
		return fs, err
	}
	fs = append(fs, FromWarnings(ws)...)
	if g.OS == "" {
		g.OS = hvm.GuessOS(g) // as guest import does
	}
	return append(fs, Check(g)...), nil
}
