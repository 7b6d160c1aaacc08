package hvm

import (
	"fmt"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// APIVersion is the schema version written to and required in YAML guest
// definitions.
const APIVersion = "strata/v1"

// Defaults applied by FillDefaults (and assumed by renderers for fields
// that are not set), as xl.cfg(5) documents them.
const (
	DefaultBoot      = "cd"
	DefaultBridge    = "xenbr0"
	DefaultNICModel  = "rtl8139"
	DefaultVNCListen = "127.0.0.1"
	DefaultVCPUs     = 1
)

// Guest is one HVM guest definition. Pointer fields are nil when not set;
// strings are empty when not set.
type Guest struct {
	APIVersion string `yaml:"api_version" json:"api_version"`
	Name       string `yaml:"name" json:"name"`
	UUID       string `yaml:"uuid,omitempty" json:"uuid,omitempty"`
	// OS is a hint for lint about the guest operating system: "winxp",
	// "win2000", "win2003", "windows" (any other Windows), "linux",
	// "other". It is strata's own and not rendered to any config.
	OS string `yaml:"os,omitempty" json:"os,omitempty"`
	// Driver is the toolstack `guest start` uses when none is given: auto
	// (default), qemu, libvirt or xl. It is strata's own and not rendered.
	Driver string `yaml:"driver,omitempty" json:"driver,omitempty"`

	Memory   *int `yaml:"memory,omitempty" json:"memory,omitempty"` // MiB at boot
	MaxMem   *int `yaml:"maxmem,omitempty" json:"maxmem,omitempty"` // MiB ceiling for ballooning
	VCPUs    *int `yaml:"vcpus,omitempty" json:"vcpus,omitempty"`   // online at boot
	MaxVCPUs *int `yaml:"maxvcpus,omitempty" json:"maxvcpus,omitempty"`

	Features Features `yaml:"features,omitempty" json:"features,omitzero"`

	// Firmware is "bios" (the hypervisor's default BIOS), "rombios",
	// "seabios" or "ovmf" (UEFI).
	Firmware string `yaml:"firmware,omitempty" json:"firmware,omitempty"`
	// FirmwarePath overrides the firmware image (xl bios_path_override).
	FirmwarePath string `yaml:"firmware_path,omitempty" json:"firmware_path,omitempty"`
	// Boot is the boot order: letters c (disk), d (CD-ROM), n (network).
	Boot string `yaml:"boot,omitempty" json:"boot,omitempty"`
	// DirectBoot boots a kernel directly instead of from a disk.
	DirectBoot *DirectBoot `yaml:"direct_boot,omitempty" json:"direct_boot,omitempty"`

	Disks []Disk `yaml:"disks,omitempty" json:"disks,omitempty"`
	NICs  []NIC  `yaml:"nics,omitempty" json:"nics,omitempty"`

	Display Display `yaml:"display,omitempty" json:"display,omitzero"`

	USB *bool `yaml:"usb,omitempty" json:"usb,omitempty"`
	// USBDevices are emulated USB devices: "tablet", "mouse", "keyboard"
	// or "host:VVVV:PPPP" (a host device by vendor and product id).
	USBDevices []string `yaml:"usb_devices,omitempty" json:"usb_devices,omitempty"`
	// Serial and Parallel are character device specs as xl and QEMU take
	// them: "pty", "null", "vc", "stdio", "file:/path", "/dev/ttyS0",
	// "tcp:host:port[,server]", "udp:host:port@host:port", "unix:/path".
	Serial   []string `yaml:"serial,omitempty" json:"serial,omitempty"`
	Parallel []string `yaml:"parallel,omitempty" json:"parallel,omitempty"`
	// SoundHW are emulated sound cards: sb16, es1370, ac97, hda, ...
	SoundHW []string `yaml:"soundhw,omitempty" json:"soundhw,omitempty"`
	// PCI are host devices passed through: "[DDDD:]BB:SS.F[@VSLOT][,opts]".
	PCI []string `yaml:"pci,omitempty" json:"pci,omitempty"`

	// --- Clock (issue 14, defs2): parsed from xl keys by xlcfg (defs),
	// rendered by every target (xl, libvirt, QEMU). A Windows guest keeps
	// its RTC in local time.
	// Localtime: the RTC runs in the host's local time, not UTC (xl
	// localtime; libvirt <clock offset='localtime'>; QEMU -rtc
	// base=localtime).
	Localtime *bool `yaml:"localtime,omitempty" json:"localtime,omitempty"`
	// RTCTimeOffset: seconds added to the RTC at start (xl rtc_timeoffset;
	// libvirt <clock offset='variable' adjustment='N'>; QEMU -rtc base=
	// the start time plus N).
	RTCTimeOffset *int `yaml:"rtc_timeoffset,omitempty" json:"rtc_timeoffset,omitempty"`
	// --- end of the clock block.

	Lifecycle   Lifecycle   `yaml:"lifecycle,omitempty" json:"lifecycle,omitzero"`
	DeviceModel DeviceModel `yaml:"device_model,omitempty" json:"device_model,omitzero"`

	// Install records the hardware Windows saw when it was installed; lint
	// compares it with the current definition (HAL, activation).
	Install *Install `yaml:"install,omitempty" json:"install,omitempty"`

	// ---- Model fields added by defs (issue 14, xl.cfg coverage) ----
	// Passthrough is how Xen sets up the IOMMU for PCI passthrough (xl
	// passthrough): enabled, disabled, sync_pt, share_pt or default.
	// Xen only: libvirt renders it as <features><xen><passthrough>.
	Passthrough string `yaml:"passthrough,omitempty" json:"passthrough,omitempty"`
	// ---- end of the fields added by defs ----

	// Extra keeps xl.cfg keys strata does not model, verbatim: key →
	// value in xl.cfg syntax (`"native"`, `0`, `[ "a", "b" ]`).
	Extra map[string]string `yaml:"extra,omitempty" json:"extra,omitempty"`
}

// Features are firmware tables and CPU features.
type Features struct {
	ACPI     *bool     `yaml:"acpi,omitempty" json:"acpi,omitempty"`
	APIC     *bool     `yaml:"apic,omitempty" json:"apic,omitempty"`
	PAE      *bool     `yaml:"pae,omitempty" json:"pae,omitempty"`
	HAP      *bool     `yaml:"hap,omitempty" json:"hap,omitempty"`
	HPET     *bool     `yaml:"hpet,omitempty" json:"hpet,omitempty"`
	NX       *bool     `yaml:"nx,omitempty" json:"nx,omitempty"`
	Viridian *Viridian `yaml:"viridian,omitempty" json:"viridian,omitempty"`
	// PVDrivers says the guest has paravirtual drivers installed (Xen's
	// PV drivers for Windows, virtio): only then can Xen attach disks and
	// NICs to the running guest. The admin sets it after installing them;
	// strata's own and not rendered.
	PVDrivers *bool `yaml:"pv_drivers,omitempty" json:"pv_drivers,omitempty"`
	// GuestAgent says the guest runs the QEMU guest agent (qemu-ga): the
	// qemu and libvirt drivers give it the agent's virtio-serial channel
	// (org.qemu.guest_agent.0), through which a live restore point with
	// --quiesce freezes its filesystems. The admin sets it after
	// installing the agent; strata's own, rendered as that channel (not
	// in xl.cfg: Xen's HVM guests have no virtio-serial).
	GuestAgent *bool `yaml:"guest_agent,omitempty" json:"guest_agent,omitempty"`
}

// HasGuestAgent reports whether the definition says the guest runs the
// QEMU guest agent (features.guest_agent).
func (g *Guest) HasGuestAgent() bool { return Val(g.Features.GuestAgent, false) }

// Viridian are the Hyper-V enlightenments for Windows: on or off, or on
// with an explicit list of groups (xl: viridian = [ "base", "freq" ]).
type Viridian struct {
	Enabled bool     `yaml:"enabled" json:"enabled"`
	Groups  []string `yaml:"groups,omitempty" json:"groups,omitempty"`
}

// DirectBoot is a kernel booted by the firmware loader instead of a disk.
type DirectBoot struct {
	Kernel  string `yaml:"kernel" json:"kernel"`
	Ramdisk string `yaml:"ramdisk,omitempty" json:"ramdisk,omitempty"`
	Cmdline string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
}

// Disk is one emulated disk or CD-ROM drive. Exactly one of Volume, Media,
// Path and Device is set, or none for an empty CD-ROM drive.
type Disk struct {
	Volume string `yaml:"volume,omitempty" json:"volume,omitempty"` // strata volume name
	Media  string `yaml:"media,omitempty" json:"media,omitempty"`   // strata ISO/medium name
	Path   string `yaml:"path,omitempty" json:"path,omitempty"`     // host file (or a backend URL such as rbd:)
	Device string `yaml:"device,omitempty" json:"device,omitempty"` // host block device

	// Vdev is the device the guest sees: hdX, sdX or xvdX.
	Vdev string `yaml:"vdev" json:"vdev"`
	// Format is raw (default), qcow, qcow2, vhd or qed.
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
	// Access is "ro" or "rw"; the default is rw, ro for a CD-ROM.
	Access string `yaml:"access,omitempty" json:"access,omitempty"`
	CDROM  bool   `yaml:"cdrom,omitempty" json:"cdrom,omitempty"`
	// Backend is Xen's backend type: qdisk, tap or standalone. A device
	// source implies phy.
	Backend string `yaml:"backend,omitempty" json:"backend,omitempty"`
	// BackendDomain is the domain serving the disk (xl backend=).
	BackendDomain string `yaml:"backend_domain,omitempty" json:"backend_domain,omitempty"`
	// Script is a block script (block-iscsi, block-nbd, block-drbd, ...).
	Script  string `yaml:"script,omitempty" json:"script,omitempty"`
	Discard *bool  `yaml:"discard,omitempty" json:"discard,omitempty"`
	// Options are xl disk parameters strata does not model, kept verbatim
	// and written back to xl only: flags (direct-io-safe, trusted,
	// untrusted, colo) and key=value (specification=virtio,
	// grant_usage=1, colo-host=...). Added by defs (issue 14).
	Options []string `yaml:"options,omitempty" json:"options,omitempty"`
}

// SourceKind says what a disk's source names.
type SourceKind string

// Source kinds.
const (
	SourceNone   SourceKind = ""       // empty CD-ROM drive
	SourceVolume SourceKind = "volume" // strata volume name
	SourceMedia  SourceKind = "media"  // strata medium name
	SourcePath   SourceKind = "path"   // host file
	SourceDevice SourceKind = "device" // host block device
)

// Source returns the kind and value of the disk's source; when more than
// one is set (which Validate rejects) the first in the order volume,
// media, path, device wins.
func (d Disk) Source() (SourceKind, string) {
	switch {
	case d.Volume != "":
		return SourceVolume, d.Volume
	case d.Media != "":
		return SourceMedia, d.Media
	case d.Path != "":
		return SourcePath, d.Path
	case d.Device != "":
		return SourceDevice, d.Device
	}
	return SourceNone, ""
}

// ReadOnly reports whether the guest gets the disk read-only: access ro,
// or a CD-ROM without an explicit access.
func (d Disk) ReadOnly() bool {
	if d.Access != "" {
		return d.Access == "ro"
	}
	return d.CDROM
}

// NIC is one network interface (xl vif).
type NIC struct {
	MAC    string `yaml:"mac,omitempty" json:"mac,omitempty"`
	Bridge string `yaml:"bridge,omitempty" json:"bridge,omitempty"`
	// Model is the emulated card: rtl8139 (default), e1000, ...
	Model string `yaml:"model,omitempty" json:"model,omitempty"`
	// Type is ioemu (emulated + PV) or vif (PV only).
	Type    string `yaml:"type,omitempty" json:"type,omitempty"`
	Script  string `yaml:"script,omitempty" json:"script,omitempty"`
	VifName string `yaml:"vifname,omitempty" json:"vifname,omitempty"`
	// Rate limits outgoing traffic: RATE[@INTERVAL], e.g. 10MB/s@20ms.
	Rate string `yaml:"rate,omitempty" json:"rate,omitempty"`
	IP   string `yaml:"ip,omitempty" json:"ip,omitempty"`
	MTU  *int   `yaml:"mtu,omitempty" json:"mtu,omitempty"`
	// Extra keeps vif keys strata does not model, verbatim.
	Extra map[string]string `yaml:"extra,omitempty" json:"extra,omitempty"`
}

// Display is the guest's console: VNC, SDL, SPICE and the emulated video
// card.
type Display struct {
	VNC        *bool  `yaml:"vnc,omitempty" json:"vnc,omitempty"`
	VNCListen  string `yaml:"vnclisten,omitempty" json:"vnclisten,omitempty"`
	VNCDisplay *int   `yaml:"vncdisplay,omitempty" json:"vncdisplay,omitempty"` // port 5900+N
	VNCUnused  *bool  `yaml:"vncunused,omitempty" json:"vncunused,omitempty"`   // pick a free port
	VNCPasswd  Secret `yaml:"vncpasswd,omitempty" json:"vncpasswd,omitempty"`
	SDL        *bool  `yaml:"sdl,omitempty" json:"sdl,omitempty"`
	Keymap     string `yaml:"keymap,omitempty" json:"keymap,omitempty"`
	// VGA is the emulated card: stdvga, cirrus, qxl or none.
	VGA      string `yaml:"vga,omitempty" json:"vga,omitempty"`
	VideoRAM *int   `yaml:"videoram,omitempty" json:"videoram,omitempty"` // MiB
	Spice    *Spice `yaml:"spice,omitempty" json:"spice,omitempty"`
}

// Spice is a SPICE console (xl spice* keys).
type Spice struct {
	Enabled          bool   `yaml:"enabled" json:"enabled"`
	Host             string `yaml:"host,omitempty" json:"host,omitempty"`
	Port             *int   `yaml:"port,omitempty" json:"port,omitempty"`
	TLSPort          *int   `yaml:"tls_port,omitempty" json:"tls_port,omitempty"`
	DisableTicketing *bool  `yaml:"disable_ticketing,omitempty" json:"disable_ticketing,omitempty"`
	Passwd           Secret `yaml:"passwd,omitempty" json:"passwd,omitempty"`
	AgentMouse       *bool  `yaml:"agent_mouse,omitempty" json:"agent_mouse,omitempty"`
	VDAgent          *bool  `yaml:"vdagent,omitempty" json:"vdagent,omitempty"`
	ClipboardSharing *bool  `yaml:"clipboard_sharing,omitempty" json:"clipboard_sharing,omitempty"`
}

// Lifecycle says what happens when the guest powers off, reboots or
// crashes: destroy, restart, rename-restart, preserve, coredump-destroy,
// coredump-restart or soft-reset.
type Lifecycle struct {
	OnPoweroff string `yaml:"on_poweroff,omitempty" json:"on_poweroff,omitempty"`
	OnReboot   string `yaml:"on_reboot,omitempty" json:"on_reboot,omitempty"`
	OnCrash    string `yaml:"on_crash,omitempty" json:"on_crash,omitempty"`
}

// Lifecycle actions.
var lifecycleActions = []string{"destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset"}

// DeviceModel selects the device model (Xen's emulator process).
type DeviceModel struct {
	// Version is qemu-xen or qemu-xen-traditional.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Override is the emulator binary (xl device_model_override).
	Override string `yaml:"override,omitempty" json:"override,omitempty"`
	// XMPath (issue 14, defs2; parsed by xlcfg from an imported xm
	// config's device_model) is the emulator an xm toolstack ran; xl
	// ignores device_model, so it is rendered only to xm.
	XMPath string `yaml:"xm_path,omitempty" json:"xm_path,omitempty"`
}

// Install records the hardware at the time Windows was installed. Windows
// chose its HAL from ACPI, APIC and VCPUs, and activation hashes the MAC,
// the memory size and the CD-ROM device.
type Install struct {
	// --- How the record was taken (issue 14, defs2): InstallByInstall
	// (strata guest install, when phase 2 began), InstallByInstalled
	// (strata guest installed, for a guest installed outside strata);
	// empty in a record from before issue 14, which strata took when
	// the guest was defined and so may not be what Windows saw.
	By string `yaml:"by,omitempty" json:"by,omitempty"`
	// CloneOf names the golden image a clone's record came from: the
	// clone has the golden's HAL but new hardware identity (UUID, MAC).
	CloneOf string `yaml:"clone_of,omitempty" json:"clone_of,omitempty"`
	// --- end of the issue 14 block.
	ACPI   *bool  `yaml:"acpi,omitempty" json:"acpi,omitempty"`
	APIC   *bool  `yaml:"apic,omitempty" json:"apic,omitempty"`
	VCPUs  *int   `yaml:"vcpus,omitempty" json:"vcpus,omitempty"`
	MAC    string `yaml:"mac,omitempty" json:"mac,omitempty"`
	Memory *int   `yaml:"memory,omitempty" json:"memory,omitempty"`
	// CDROM is the vdev of the CD-ROM drive at install time ("hdc").
	CDROM string `yaml:"cdrom,omitempty" json:"cdrom,omitempty"`
}

// How an install record was taken (Install.By).
const (
	InstallByInstall   = "install"
	InstallByInstalled = "installed"
)

// MarkClone notes in g's install record (if it has one) that g is a clone
// of golden: Windows there has the golden's HAL, but the clone has new
// hardware identity, which Windows sees as a move to new hardware.
func (g *Guest) MarkClone(golden string) {
	if g.Install != nil {
		g.Install.CloneOf = golden
	}
}

// Bool returns a pointer to b, for setting optional fields.
func Bool(b bool) *bool { return &b }

// Int returns a pointer to i, for setting optional fields.
func Int(i int) *int { return &i }

// Val returns *p, or def when p is nil.
func Val[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// Effective values: what the hypervisor uses when a field is not set.

// EffectiveACPI reports whether the guest gets ACPI tables (default on).
func (g *Guest) EffectiveACPI() bool { return Val(g.Features.ACPI, true) }

// EffectiveAPIC reports whether the guest gets an APIC (default on).
func (g *Guest) EffectiveAPIC() bool { return Val(g.Features.APIC, true) }

// EffectiveVCPUs is the number of vCPUs online at boot (default 1).
func (g *Guest) EffectiveVCPUs() int { return Val(g.VCPUs, DefaultVCPUs) }

// EffectiveMaxVCPUs is the maximum number of vCPUs (default: VCPUs).
func (g *Guest) EffectiveMaxVCPUs() int { return Val(g.MaxVCPUs, g.EffectiveVCPUs()) }

// EffectiveMaxMem is the memory ceiling in MiB (default: Memory).
func (g *Guest) EffectiveMaxMem() int { return Val(g.MaxMem, Val(g.Memory, 0)) }

// EffectiveBoot is the boot order (default "cd").
func (g *Guest) EffectiveBoot() string {
	if g.Boot == "" {
		return DefaultBoot
	}
	return g.Boot
}

// VNCEnabled reports whether the guest has a VNC console (default on
// unless SDL or SPICE is chosen).
func (d Display) VNCEnabled() bool {
	if d.VNC != nil {
		return *d.VNC
	}
	return !Val(d.SDL, false) && (d.Spice == nil || !d.Spice.Enabled)
}

// EffectiveVNCListen is the VNC listen address (default loopback).
func (d Display) EffectiveVNCListen() string {
	if d.VNCListen == "" {
		return DefaultVNCListen
	}
	return d.VNCListen
}

// String describes the guest on one line for logs; it never contains a
// password.
func (g Guest) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "guest %q", g.Name)
	if g.UUID != "" {
		fmt.Fprintf(&b, " uuid=%s", g.UUID)
	}
	if g.Memory != nil {
		fmt.Fprintf(&b, " memory=%dMiB", *g.Memory)
	}
	if g.MaxMem != nil {
		fmt.Fprintf(&b, " maxmem=%dMiB", *g.MaxMem)
	}
	fmt.Fprintf(&b, " vcpus=%d disks=%d nics=%d", g.EffectiveVCPUs(), len(g.Disks), len(g.NICs))
	if g.Display.VNCEnabled() {
		fmt.Fprintf(&b, " vnc=%s", g.Display.EffectiveVNCListen())
		if !g.Display.VNCPasswd.IsZero() {
			b.WriteString(" vncpasswd=" + redactedText)
		}
	}
	return b.String()
}

// RemapBridges returns g with each NIC's bridge (xenbr0 when not set)
// renamed by m, for a host whose bridges are not Xen's: {"xenbr0": "br0"}.
// g itself is not changed; without a rename that applies, g is returned.
func (g *Guest) RemapBridges(m map[string]string) *Guest {
	if len(m) == 0 {
		return g
	}
	var out *Guest
	for i, n := range g.NICs {
		br := n.Bridge
		if br == "" {
			br = DefaultBridge
		}
		to, ok := m[br]
		if !ok || to == br {
			continue
		}
		if out == nil {
			out = g.Clone()
		}
		out.NICs[i].Bridge = to
	}
	if out == nil {
		return g
	}
	return out
}

// ParseBridgeMap reads --bridge-map values, each FROM=TO (several may be
// given comma-separated): bridge FROM in the definition is TO on this
// host.
func ParseBridgeMap(specs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, spec := range specs {
		for part := range strings.SplitSeq(spec, ",") {
			from, to, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !bridgeName(from) || !bridgeName(to) {
				return nil, storage.Errorf(storage.ErrInvalid, "bridge map %q is not FROM=TO with two bridge names, e.g. xenbr0=br0", part)
			}
			if prev, dup := m[from]; dup && prev != to {
				return nil, storage.Errorf(storage.ErrInvalid, "bridge %q is mapped twice (to %q and %q): give one", from, prev, to)
			}
			m[from] = to
		}
	}
	return m, nil
}

// bridgeName reports whether s can be a Linux interface name (1 to 15
// bytes, no slash, space, colon, comma, '=' or quote).
func bridgeName(s string) bool {
	return s != "" && len(s) <= 15 && s != "." && s != ".." && !strings.ContainsAny(s, "/ :,=\"'\t\n\x00")
}
