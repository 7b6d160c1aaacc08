package hvm

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/pattern"
)

// Known values, shared with the parsers and renderers.
var (
	Formats        = []string{"raw", "qcow", "qcow2", "vhd", "qed"}
	Backends       = []string{"qdisk", "tap", "standalone"}
	FirmwareKinds  = []string{"bios", "rombios", "seabios", "ovmf"}
	VGAKinds       = []string{"stdvga", "cirrus", "qxl", "none"}
	SoundModels    = []string{"sb16", "es1370", "ac97", "hda", "adlib", "gus", "cs4231a", "pcspk"}
	NICTypes       = []string{"ioemu", "vif"}
	ViridianGroups = []string{"base", "freq", "time_ref_count", "reference_tsc", "hcall_remote_tlb_flush", "apic_assist", "crash_ctl", "stimer", "hcall_ipi", "ex_processor_masks", "no_vp_limit", "cpu_hotplug", "all", "defaults"}
	DeviceModels   = []string{"qemu-xen", "qemu-xen-traditional"}
	UUIDPattern    = pattern.New(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	VdevPattern    = pattern.New(`^(hd|sd|xvd)[a-z]{1,3}$`)
	PCIPattern     = pattern.New(`^([0-9a-fA-F]{1,4}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}\.([0-7]|\*)(@[0-9a-fA-F]{1,2})?(,[a-z_]+=[^,]*)*$`)
	RatePattern    = pattern.New(`^[0-9]+[GMK]?[Bb]/s(@[0-9]+[mu]?s)?$`)
	tokenPattern   = pattern.New(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	xlKeyPattern   = pattern.New(`^[a-z][._0-9a-z]*$`)
	usbHostPattern = pattern.New(`^host:[0-9a-fA-F]{1,4}:[0-9a-fA-F]{1,4}$`)
	OSHints        = []string{"winxp", "win2000", "win2003", "windows", "linux", "other"}
	// Drivers are the boot drivers a guest can name as its default (hvm/boot).
	Drivers         = []string{"auto", "qemu", "libvirt", "xl"}
	accessValues    = []string{"ro", "rw"}
	usbDeviceValues = []string{"tablet", "mouse", "keyboard"}
)

// maxRTCOffset bounds rtc_timeoffset (seconds): 100 years.
const maxRTCOffset = 100 * 366 * 24 * 3600

type problems struct {
	guest string
	errs  []error
}

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, storage.Errorf(storage.ErrInvalid, "guest %q: %s: %s", p.guest, field, fmt.Sprintf(format, args...)))
}

func oneOf(v string, set []string) bool { return slices.Contains(set, v) }

func list(set []string) string { return strings.Join(set, ", ") }

// Validate checks the whole definition and returns every problem at once
// (errors.Join), each naming its field and saying what to write instead.
// Every error wraps storage.ErrInvalid. Validate does not change g; call
// FillDefaults first for a definition that is to be rendered.
func (g *Guest) Validate() error {
	p := &problems{guest: g.Name}
	for _, check := range []func(*problems){
		g.validateIdentity,
		g.validateSizes,
		g.validateBoot,
		g.validateDisks,
		g.validateNICs,
		g.validateXLKeys,
		g.validateDisplay,
		g.validateDevices,
		g.validateLifecycle,
		g.validateInstall,
		g.validateExtra,
	} {
		check(p)
	}
	return errors.Join(p.errs...)
}

// validateIdentity checks the API version, name, UUID, driver and OS hint.
func (g *Guest) validateIdentity(p *problems) {
	if g.APIVersion != "" && g.APIVersion != APIVersion {
		p.add("api_version", "%q is not supported; write api_version: %s", g.APIVersion, APIVersion)
	}
	if err := storage.ValidateName("guest", g.Name); err != nil {
		p.add("name", "%v", err)
	}
	if g.UUID != "" && !UUIDPattern.MatchString(g.UUID) {
		p.add("uuid", "%q is not a UUID; write 32 hex digits as 8-4-4-4-12 or leave it out to generate one", g.UUID)
	}
	if g.Driver != "" && !oneOf(g.Driver, Drivers) {
		p.add("driver", "%q is not a boot driver; use one of %s", g.Driver, list(Drivers))
	}
	if g.OS != "" && !oneOf(g.OS, OSHints) {
		p.add("os", "%q is not known; use one of %s", g.OS, list(OSHints))
	}
}

// validateBoot checks Viridian groups, the firmware, the boot order and
// a directly booted kernel.
func (g *Guest) validateBoot(p *problems) {
	if v := g.Features.Viridian; v != nil {
		for _, grp := range v.Groups {
			if !oneOf(strings.TrimPrefix(grp, "!"), ViridianGroups) {
				p.add("features.viridian", "group %q is not known; use %s (a leading '!' disables one)", grp, list(ViridianGroups))
			}
		}
	}
	if g.Firmware != "" && !oneOf(g.Firmware, FirmwareKinds) {
		p.add("firmware", "%q is not known; use one of %s", g.Firmware, list(FirmwareKinds))
	}
	if g.FirmwarePath != "" && !strings.HasPrefix(g.FirmwarePath, "/") {
		p.add("firmware_path", "%q is not an absolute path", g.FirmwarePath)
	}
	if g.Boot != "" {
		seen := map[rune]bool{}
		for _, c := range g.Boot {
			if c != 'c' && c != 'd' && c != 'n' || seen[c] {
				p.add("boot", "%q is not a boot order; use the letters c (disk), d (CD-ROM), n (network), each at most once, e.g. \"dc\"", g.Boot)
				break
			}
			seen[c] = true
		}
	}
	if b := g.DirectBoot; b != nil {
		if !strings.HasPrefix(b.Kernel, "/") {
			p.add("direct_boot.kernel", "%q is not an absolute path", b.Kernel)
		}
		if b.Ramdisk != "" && !strings.HasPrefix(b.Ramdisk, "/") {
			p.add("direct_boot.ramdisk", "%q is not an absolute path", b.Ramdisk)
		}
	}
}

// validateDevices checks USB devices, character devices, sound cards and
// PCI addresses.
func (g *Guest) validateDevices(p *problems) {
	for i, u := range g.USBDevices {
		if !oneOf(u, usbDeviceValues) && !usbHostPattern.MatchString(u) {
			p.add(fmt.Sprintf("usb_devices[%d]", i), "%q is not supported; use tablet, mouse, keyboard or host:VENDOR:PRODUCT", u)
		}
	}
	for i, s := range g.Serial {
		if err := ValidateCharDev(s); err != nil {
			p.add(fmt.Sprintf("serial[%d]", i), "%v", err)
		}
	}
	for i, s := range g.Parallel {
		if err := ValidateCharDev(s); err != nil {
			p.add(fmt.Sprintf("parallel[%d]", i), "%v", err)
		}
	}
	for i, s := range g.SoundHW {
		if !oneOf(s, SoundModels) && s != SoundAll {
			p.add(fmt.Sprintf("soundhw[%d]", i), "%q is not known; use one of %s or all", s, list(SoundModels))
		}
	}
	for i, s := range g.PCI {
		if !PCIPattern.MatchString(s) {
			p.add(fmt.Sprintf("pci[%d]", i), "%q is not a PCI address; write [DOMAIN:]BUS:SLOT.FUNC[@VSLOT][,key=value...], e.g. 0000:01:00.0", s)
		}
	}
}

// validateLifecycle checks the on_* actions, the device model and the
// clock offset.
func (g *Guest) validateLifecycle(p *problems) {
	for _, f := range []struct{ field, v string }{{"lifecycle.on_poweroff", g.Lifecycle.OnPoweroff}, {"lifecycle.on_reboot", g.Lifecycle.OnReboot}, {"lifecycle.on_crash", g.Lifecycle.OnCrash}} {
		if f.v != "" && !oneOf(f.v, lifecycleActions) {
			p.add(f.field, "%q is not an action; use one of %s", f.v, list(lifecycleActions))
		}
	}
	if v := g.DeviceModel.Version; v != "" && !oneOf(v, DeviceModels) {
		p.add("device_model.version", "%q is not known; use qemu-xen", v)
	}
	if o := g.DeviceModel.Override; o != "" && !strings.HasPrefix(o, "/") {
		p.add("device_model.override", "%q is not an absolute path", o)
	}
	if x := g.DeviceModel.XMPath; x != "" && (!strings.HasPrefix(x, "/") || strings.ContainsAny(x, "\x00\n")) {
		p.add("device_model.xm_path", "%q is not an absolute path", x)
	}
	if o := g.RTCTimeOffset; o != nil && (*o < -maxRTCOffset || *o > maxRTCOffset) {
		p.add("rtc_timeoffset", "%d seconds is more than 100 years; give the offset of the guest's clock in seconds", *o)
	}
}

// validateInstall checks the record of how the guest was installed.
func (g *Guest) validateInstall(p *problems) {
	in := g.Install
	if in == nil {
		return
	}
	if in.VCPUs != nil && *in.VCPUs < 1 {
		p.add("install.vcpus", "%d is not a number of vCPUs", *in.VCPUs)
	}
	if in.Memory != nil && *in.Memory < 1 {
		p.add("install.memory", "%d MiB is not a memory size", *in.Memory)
	}
	if in.MAC != "" {
		if _, err := NormalizeMAC(in.MAC); err != nil {
			p.add("install.mac", "%v", err)
		}
	}
	if in.By != "" && in.By != InstallByInstall && in.By != InstallByInstalled {
		p.add("install.by", "%q is not known: strata records %s or %s", in.By, InstallByInstall, InstallByInstalled)
	}
	if in.CDROM != "" && !VdevPattern.MatchString(in.CDROM) {
		p.add("install.cdrom", "%q is not a device name such as hdc", in.CDROM)
	}
}

// validateExtra checks the extra xl.cfg keys, sorted so the problems
// come in a stable order.
func (g *Guest) validateExtra(p *problems) {
	for _, k := range slices.Sorted(maps.Keys(g.Extra)) {
		v := g.Extra[k]
		if !xlKeyPattern.MatchString(k) {
			p.add("extra", "key %q is not an xl.cfg key ([a-z][._0-9a-z]*)", k)
		}
		if strings.TrimSpace(v) == "" {
			p.add("extra."+k, "the value is empty; write it in xl.cfg syntax, e.g. \"text\", 1 or [ \"a\" ]")
		}
	}
}

func (g *Guest) validateSizes(p *problems) {
	switch {
	case g.Memory == nil:
		p.add("memory", "not set; give the memory size in MiB, e.g. memory: 512")
	case *g.Memory < 1 || *g.Memory > 16<<20:
		p.add("memory", "%d MiB is not a memory size; use 1 to %d", *g.Memory, 16<<20)
	}
	if g.MaxMem != nil && g.Memory != nil && *g.MaxMem < *g.Memory {
		p.add("maxmem", "%d MiB is less than memory (%d MiB); raise maxmem or leave it out", *g.MaxMem, *g.Memory)
	}
	if g.VCPUs != nil && (*g.VCPUs < 1 || *g.VCPUs > 512) {
		p.add("vcpus", "%d is not a number of vCPUs; use 1 to 512", *g.VCPUs)
	}
	if g.MaxVCPUs != nil && (*g.MaxVCPUs < g.EffectiveVCPUs() || *g.MaxVCPUs > 512) {
		p.add("maxvcpus", "%d is less than vcpus (%d) or above 512", *g.MaxVCPUs, g.EffectiveVCPUs())
	}
}

func (g *Guest) validateDisks(p *problems) {
	vdevs := map[string]int{}
	for i, d := range g.Disks {
		field := fmt.Sprintf("disks[%d]", i)
		if d.Vdev != "" {
			field += " (" + d.Vdev + ")"
		}
		set := 0
		for _, s := range []string{d.Volume, d.Media, d.Path, d.Device} {
			if s != "" {
				set++
			}
		}
		if set > 1 {
			p.add(field, "give only one of volume, media, path and device")
		}
		kind, src := d.Source()
		switch kind {
		case SourceNone:
			if !d.CDROM {
				p.add(field, "no source; give one of volume, media, path or device (only a CD-ROM drive may be empty)")
			}
		case SourceVolume, SourceMedia:
			if err := storage.ValidateName(string(kind), src); err != nil {
				p.add(field, "%v", err)
			}
		case SourcePath:
			if !strings.HasPrefix(src, "/") && d.Script == "" && !strings.HasPrefix(src, "rbd:") {
				p.add(field, "path %q is not absolute; write the full path of the image file", src)
			}
		case SourceDevice:
			if !strings.HasPrefix(src, "/") {
				p.add(field, "device %q is not absolute; write the full path, e.g. /dev/vg/lv", src)
			}
		}
		if strings.ContainsAny(src, "\x00\n") {
			p.add(field, "the source contains a NUL or newline character")
		}
		switch {
		case d.Vdev == "":
			p.add(field, "vdev not set; name the device the guest sees, e.g. hda")
		case !VdevPattern.MatchString(d.Vdev):
			p.add(field, "vdev %q is not hdX, sdX or xvdX", d.Vdev)
		default:
			if j, dup := vdevs[d.Vdev]; dup {
				p.add(field, "vdev %q is also used by disks[%d]; give each disk its own", d.Vdev, j)
			}
			vdevs[d.Vdev] = i
		}
		if d.Format != "" && !oneOf(d.Format, Formats) {
			p.add(field, "format %q is not known; use one of %s", d.Format, list(Formats))
		}
		if d.Access != "" && !oneOf(d.Access, accessValues) {
			p.add(field, "access %q is not known; use ro or rw", d.Access)
		}
		if d.CDROM && d.Access == "rw" {
			p.add(field, "a CD-ROM cannot be writable; use access ro or leave it out")
		}
		if d.Backend != "" && !oneOf(d.Backend, Backends) {
			if d.Backend == "phy" {
				p.add(field, "backend phy is implied by a device source; write device: instead of path: and leave backend out")
			} else {
				p.add(field, "backend %q is not known; use one of %s", d.Backend, list(Backends))
			}
		}
		if kind == SourceDevice && d.Backend != "" {
			p.add(field, "a device source uses the phy backend; leave backend out")
		}
		if kind == SourceDevice && d.Format != "" && d.Format != "raw" {
			p.add(field, "the phy backend of a device takes raw only, not %s; use a path source with backend qdisk for %s", d.Format, d.Format)
		}
	}
}

func (g *Guest) validateNICs(p *problems) {
	macs := map[string]int{}
	for i, n := range g.NICs {
		field := fmt.Sprintf("nics[%d]", i)
		if n.MAC != "" {
			m, err := NormalizeMAC(n.MAC)
			switch {
			case err != nil:
				p.add(field, "%v", err)
			case mustHexByte(m[0:2])&1 == 1:
				p.add(field, "MAC address %q is a multicast address; the first octet must be even (Xen's are 00:16:3e:...)", n.MAC)
			case m == "00:00:00:00:00:00":
				p.add(field, "MAC address %q is all zeros, which no card can have; give a real one (Xen's are 00:16:3e:...) or leave it out to get one", n.MAC)
			default:
				if j, dup := macs[m]; dup {
					p.add(field, "MAC address %q is also used by nics[%d]; give each NIC its own", n.MAC, j)
				}
				macs[m] = i
			}
		}
		if n.Bridge != "" && strings.ContainsAny(n.Bridge, " ,=\"'\n") {
			p.add(field, "bridge %q contains a space, comma, '=' or quote", n.Bridge)
		}
		if n.Model != "" && !tokenPattern.MatchString(n.Model) {
			p.add(field, "model %q is not a device model name such as e1000 or rtl8139", n.Model)
		}
		if n.Type != "" && !oneOf(n.Type, NICTypes) {
			p.add(field, "type %q is not known; use ioemu or vif", n.Type)
		}
		if n.VifName != "" && !tokenPattern.MatchString(n.VifName) {
			p.add(field, "vifname %q is not an interface name", n.VifName)
		}
		if n.Rate != "" && !RatePattern.MatchString(n.Rate) {
			p.add(field, "rate %q is not RATE[@INTERVAL], e.g. 10MB/s or 1Gb/s@20ms", n.Rate)
		}
		if n.MTU != nil && (*n.MTU < 68 || *n.MTU > 65535) {
			p.add(field, "mtu %d is out of range 68..65535", *n.MTU)
		}
		for _, k := range slices.Sorted(maps.Keys(n.Extra)) {
			v := n.Extra[k]
			if strings.ContainsAny(k+v, ",\n") || !xlKeyPattern.MatchString(k) {
				if SecretKey(k) || SecretValue(v) {
					p.add(field, "extra key %q (its value not quoted: it holds a password) is not a vif key=value without commas", k)
				} else {
					p.add(field, "extra key %q=%q is not a vif key=value without commas", k, v)
				}
			}
		}
	}
}

func (g *Guest) validateDisplay(p *problems) {
	d := g.Display
	if d.VNCListen != "" && net.ParseIP(d.VNCListen) == nil && !hostnamePattern.MatchString(d.VNCListen) {
		p.add("display.vnclisten", "%q is not an IP address or host name", d.VNCListen)
	}
	if d.VNCDisplay != nil && (*d.VNCDisplay < 0 || *d.VNCDisplay > 59635) {
		p.add("display.vncdisplay", "%d is out of range: the port is 5900 plus the display number", *d.VNCDisplay)
	}
	if d.Keymap != "" && !tokenPattern.MatchString(d.Keymap) {
		p.add("display.keymap", "%q is not a keymap name such as en-us or de", d.Keymap)
	}
	if d.VGA != "" && !oneOf(d.VGA, VGAKinds) {
		p.add("display.vga", "%q is not known; use one of %s", d.VGA, list(VGAKinds))
	}
	if d.VideoRAM != nil && (*d.VideoRAM < 1 || *d.VideoRAM > 1024) {
		p.add("display.videoram", "%d MiB is out of range 1..1024", *d.VideoRAM)
	}
	if s := d.Spice; s != nil {
		if s.Host != "" && net.ParseIP(s.Host) == nil && !hostnamePattern.MatchString(s.Host) {
			p.add("display.spice.host", "%q is not an IP address or host name", s.Host)
		}
		for _, f := range []struct {
			name string
			port *int
		}{{"port", s.Port}, {"tls_port", s.TLSPort}} {
			if f.port != nil && (*f.port < 0 || *f.port > 65535) {
				p.add("display.spice."+f.name, "%d is not a TCP port", *f.port)
			}
		}
	}
}

var hostnamePattern = pattern.New(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

func mustHexByte(s string) int {
	v, _ := strconv.ParseUint(s, 16, 8)
	return int(v)
}

// ValidateCharDev checks a serial or parallel port spec.
func ValidateCharDev(s string) error {
	if s == "" {
		return errors.New("empty; use pty, null, vc, stdio, file:/path, /dev/ttyS0, tcp:host:port or udp:host:port@host:port")
	}
	if strings.ContainsAny(s, "\n\x00") {
		return errors.New("contains a newline or NUL character")
	}
	switch s {
	case "pty", "null", "vc", "stdio", "none", "msmouse":
		return nil
	}
	if strings.HasPrefix(s, "/dev/") {
		return nil
	}
	for _, pfx := range []string{"file:", "pipe:", "tcp:", "udp:", "unix:", "telnet:", "vc:", "dev:"} {
		if strings.HasPrefix(s, pfx) && len(s) > len(pfx) {
			return nil
		}
	}
	return fmt.Errorf("%q is not a character device; use pty, null, vc, stdio, file:/path, /dev/ttyS0, tcp:host:port or udp:host:port@host:port", s)
}
