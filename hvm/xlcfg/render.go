package xlcfg

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
)

type writer struct {
	buf  bytes.Buffer
	keys map[string]bool
}

func (w *writer) raw(key, value string) {
	w.keys[key] = true
	fmt.Fprintf(&w.buf, "%s = %s\n", key, value)
}

func (w *writer) str(key, s string) {
	if s != "" {
		w.raw(key, Quote(s))
	}
}

func (w *writer) int(key string, p *int) {
	if p != nil {
		w.raw(key, strconv.Itoa(*p))
	}
}

func (w *writer) bool(key string, p *bool) {
	if p != nil {
		w.raw(key, b2s(*p))
	}
}

func (w *writer) list(key string, items []string) {
	if len(items) == 0 {
		return
	}
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = Quote(s)
	}
	w.raw(key, "[ "+strings.Join(q, ", ")+" ]")
}

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Render writes g as an xl.cfg file (xl.cfg(5)) that Parse reads back to
// the same guest. Disks must name host paths or devices (ResolveDisks).
func Render(g *hvm.Guest) ([]byte, error) {
	return render(g, false)
}

// RenderXM writes g in the xm dialect of Xen 3 and 4.0-4.4: builder and
// hvmloader kernel instead of type, device_model, legacy disk specs and
// vif type=ioemu. What xm cannot express (OVMF, SPICE, qed images) is an
// error.
func RenderXM(g *hvm.Guest) ([]byte, error) {
	return render(g, true)
}

// render writes g in the xl dialect, or xm's when xm is set, one
// section after the other (renderSections).
func render(g *hvm.Guest, xm bool) ([]byte, error) {
	if err := hvm.Unresolved(g); err != nil {
		return nil, err
	}
	w := &writer{keys: map[string]bool{}}
	for _, section := range renderSections {
		if err := section(w, g, xm); err != nil {
			return nil, err
		}
	}
	return w.buf.Bytes(), nil
}

// renderSections write the config in order, one family of keys each; xm
// is the legacy dialect. The order is the file's order (golden files
// hold it) and extra keys come last, after every key strata models.
var renderSections = []func(w *writer, g *hvm.Guest, xm bool) error{
	renderHeader,
	renderCPUMemory,
	renderFeatures,
	renderFirmware,
	renderDisksVifs,
	renderDisplay,
	renderDevices,
	renderClockLifecycle,
	renderDeviceModel,
	renderExtra,
}

// renderHeader writes the comment line, the name and the builder.
func renderHeader(w *writer, g *hvm.Guest, xm bool) error {
	dialect := "xl.cfg(5)"
	if xm {
		dialect = "xm (xmdomain.cfg(5))"
	}
	fmt.Fprintf(&w.buf, "# HVM guest %s, written by strata in %s syntax.\n", sanitizeComment(g.Name), dialect)
	w.str("name", g.Name)
	w.str("uuid", g.UUID)
	if xm {
		w.str("builder", "hvm")
		w.str("kernel", "/usr/lib/xen/boot/hvmloader")
	} else {
		w.str("type", "hvm")
	}
	return nil
}

// renderCPUMemory writes memory and vCPUs; xm has no maxvcpus, so a
// guest starting with fewer vCPUs than its maximum gets a vcpu_avail
// bitmap (64 bits at most).
func renderCPUMemory(w *writer, g *hvm.Guest, xm bool) error {
	w.int("memory", g.Memory)
	w.int("maxmem", g.MaxMem)
	if xm && g.MaxVCPUs != nil && *g.MaxVCPUs != g.EffectiveVCPUs() {
		if *g.MaxVCPUs > 64 {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: xm cannot express more than 64 vCPUs", g.Name)
		}
		w.int("vcpus", g.MaxVCPUs)
		w.raw("vcpu_avail", strconv.FormatUint(1<<uint(g.EffectiveVCPUs())-1, 10))
	} else {
		w.int("vcpus", g.VCPUs)
		w.int("maxvcpus", g.MaxVCPUs)
	}
	return nil
}

// renderFeatures writes the platform features and passthrough.
func renderFeatures(w *writer, g *hvm.Guest, xm bool) error {
	f := g.Features
	w.bool("acpi", f.ACPI)
	w.bool("apic", f.APIC)
	w.bool("pae", f.PAE)
	w.bool("hap", f.HAP)
	w.bool("hpet", f.HPET)
	w.bool("nx", f.NX)
	if vi := f.Viridian; vi != nil {
		if len(vi.Groups) > 0 {
			w.list("viridian", vi.Groups)
		} else {
			w.raw("viridian", b2s(vi.Enabled))
		}
	}
	if g.Passthrough != "" {
		if xm {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: xm has no passthrough key (Xen 4.13 added it); use xl", g.Name)
		}
		w.str("passthrough", g.Passthrough)
	}
	return nil
}

// renderFirmware writes the firmware, the boot order and a directly
// booted kernel, which xm cannot express for HVM guests.
func renderFirmware(w *writer, g *hvm.Guest, xm bool) error {
	switch g.Firmware {
	case "":
	case "bios":
		if !xm {
			w.str("firmware", "bios")
		}
	case "ovmf":
		if xm {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: xm has no UEFI firmware (ovmf); use xl", g.Name)
		}
		w.str("bios", g.Firmware)
	default:
		w.str("bios", g.Firmware)
	}
	w.str("bios_path_override", g.FirmwarePath)
	w.str("boot", g.Boot)
	if b := g.DirectBoot; b != nil {
		if xm {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: xm HVM guests cannot boot a kernel directly; use xl", g.Name)
		}
		w.str("kernel", b.Kernel)
		w.str("ramdisk", b.Ramdisk)
		w.str("cmdline", b.Cmdline)
	}
	return nil
}

// renderDisksVifs writes the disk and vif lists; xm's NICs are emulated
// (ioemu) unless they say otherwise.
func renderDisksVifs(w *writer, g *hvm.Guest, xm bool) error {
	var disks []string
	for _, d := range g.Disks {
		var s string
		var err error
		if xm {
			s, err = FormatDiskXM(d)
		} else {
			s, err = FormatDisk(d)
		}
		if err != nil {
			return fmt.Errorf("guest %q: %w", g.Name, err)
		}
		disks = append(disks, s)
	}
	w.list("disk", disks)
	var vifs []string
	for _, n := range g.NICs {
		if xm && n.Type == "" {
			n.Type = "ioemu"
		}
		s, err := FormatVif(n)
		if err != nil {
			return fmt.Errorf("guest %q: %w", g.Name, err)
		}
		vifs = append(vifs, s)
	}
	w.list("vif", vifs)
	return nil
}

// renderDevices writes USB, serial and parallel ports (one as a string,
// more as a list), sound and PCI passthrough.
func renderDevices(w *writer, g *hvm.Guest, xm bool) error {
	w.bool("usb", g.USB)
	for _, cd := range []struct {
		key  string
		devs []string
	}{{"usbdevice", g.USBDevices}, {"serial", g.Serial}, {"parallel", g.Parallel}} {
		switch len(cd.devs) {
		case 0:
		case 1:
			w.str(cd.key, cd.devs[0])
		default:
			w.list(cd.key, cd.devs)
		}
	}
	w.str("soundhw", strings.Join(g.SoundHW, ","))
	w.list("pci", g.PCI)
	return nil
}

// renderClockLifecycle writes the clock and the on_* actions.
func renderClockLifecycle(w *writer, g *hvm.Guest, xm bool) error {
	w.bool("localtime", g.Localtime)
	w.int("rtc_timeoffset", g.RTCTimeOffset)
	w.str("on_poweroff", g.Lifecycle.OnPoweroff)
	w.str("on_reboot", g.Lifecycle.OnReboot)
	w.str("on_crash", g.Lifecycle.OnCrash)
	return nil
}

// renderDeviceModel writes the device model: xl's version and override,
// or xm's emulator path.
func renderDeviceModel(w *writer, g *hvm.Guest, xm bool) error {
	w.str("device_model_version", g.DeviceModel.Version)
	if !xm {
		w.str("device_model_override", g.DeviceModel.Override)
		return nil
	}
	// The emulator the imported config named, else the one found on
	// this host (FindXMDeviceModel, set by the caller); with neither,
	// xm (3.3 and later) runs its own qemu-dm. Never a guessed path:
	// a 64-bit host keeps it under lib64 or a versioned directory.
	dm := g.DeviceModel.Override
	if dm == "" {
		dm = g.DeviceModel.XMPath
	}
	if dm == "" {
		fmt.Fprintf(&w.buf, "# device_model: no qemu-dm known for this guest or found on this host; xm runs its own\n")
	}
	w.str("device_model", dm)
	return nil
}

// renderExtra writes the extra keys, sorted, each one xl.cfg value; a
// key strata models (written above) is refused, so it cannot be set
// twice.
func renderExtra(w *writer, g *hvm.Guest, xm bool) error {
	for _, k := range slices.Sorted(maps.Keys(g.Extra)) {
		if w.keys[k] {
			return storage.Errorf(storage.ErrInvalid, "guest %q: extra key %q is one strata models: set it in its own field", g.Name, k)
		}
		if !xlKey(k) {
			return storage.Errorf(storage.ErrInvalid, "guest %q: extra key %q is not an xl.cfg key", g.Name, k)
		}
		val, err := ParseValue(g.Extra[k])
		if err != nil {
			if hvm.SecretKey(k) || hvm.SecretValue(g.Extra[k]) {
				return storage.Errorf(storage.ErrInvalid, "guest %q: extra key %q: the value (not quoted: it holds a password) is not one xl.cfg value", g.Name, k)
			}
			return storage.Errorf(storage.ErrInvalid, "guest %q: extra key %q: the value %q is not one xl.cfg value: %w", g.Name, k, g.Extra[k], err)
		}
		w.raw(k, val.String())
	}
	return nil
}

func renderDisplay(w *writer, g *hvm.Guest, xm bool) error {
	d := g.Display
	w.bool("vnc", d.VNC)
	w.str("vnclisten", d.VNCListen)
	w.int("vncdisplay", d.VNCDisplay)
	w.bool("vncunused", d.VNCUnused)
	w.str("vncpasswd", d.VNCPasswd.Value())
	w.bool("sdl", d.SDL)
	w.str("keymap", d.Keymap)
	if xm && d.VGA != "" {
		switch d.VGA {
		case "stdvga":
			w.raw("stdvga", "1")
		case "cirrus":
			w.raw("stdvga", "0")
		default:
			return storage.Errorf(storage.ErrNotSupported, "guest %q: xm has no vga = %q", g.Name, d.VGA)
		}
	} else {
		w.str("vga", d.VGA)
	}
	w.int("videoram", d.VideoRAM)
	if s := d.Spice; s != nil {
		if xm {
			return storage.Errorf(storage.ErrNotSupported, "guest %q: xm has no SPICE console; use xl", g.Name)
		}
		w.raw("spice", b2s(s.Enabled))
		w.str("spicehost", s.Host)
		w.int("spiceport", s.Port)
		w.int("spicetls_port", s.TLSPort)
		w.bool("spicedisable_ticketing", s.DisableTicketing)
		w.str("spicepasswd", s.Passwd.Value())
		w.bool("spiceagent_mouse", s.AgentMouse)
		w.bool("spicevdagent", s.VDAgent)
		w.bool("spice_clipboard_sharing", s.ClipboardSharing)
	}
	return nil
}

func xlKey(k string) bool {
	if k == "" || !isKeyStart(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if !isKeyChar(k[i]) {
			return false
		}
	}
	return true
}

func sanitizeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// XMDeviceModelPaths are where Xen 3 and 4.0-4.4 packages put xm's
// qemu-dm: lib64 on 64-bit RPM hosts, lib on Debian's and 32-bit ones,
// a versioned directory on Debian's later packages.
var XMDeviceModelPaths = []string{
	"/usr/lib64/xen/bin/qemu-dm",
	"/usr/lib/xen/bin/qemu-dm",
	"/usr/lib/xen-*/bin/qemu-dm",
	"/usr/libexec/xen/bin/qemu-dm",
}

// FindXMDeviceModel returns the first qemu-dm of XMDeviceModelPaths that
// exists under root ("" or "/" for the host), as a host path; "" when
// there is none.
func FindXMDeviceModel(root string) string {
	for _, p := range XMDeviceModelPaths {
		matches, _ := filepath.Glob(filepath.Join(root, p))
		slices.Sort(matches)
		for _, m := range slices.Backward(matches) { // the newest version first
			if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
				rel, err := filepath.Rel(filepath.Join(root, "/"), m)
				if err != nil {
					continue
				}
				return "/" + rel
			}
		}
	}
	return ""
}
