package xlcfg

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
)

// ErrNotHVM marks a config of a PV or PVH guest, which strata refuses.
var ErrNotHVM = errors.New("not an HVM guest")

// ErrBuilderType marks a config whose deprecated builder contradicts type.
var ErrBuilderType = errors.New("builder contradicts type")

// Deprecated maps keys that xl deprecated (or that only xm knew) to what
// replaces them; the importer drops them with a warning.
var Deprecated = map[string]string{
	"builder":      `type = "hvm"`,
	"device_model": `device_model_override (or nothing: xl picks qemu-xen)`,
	"kernel":       `nothing: xl loads hvmloader itself for HVM guests`,
	"stdvga":       `vga = "stdvga"`,
	"vncviewer":    `nothing: run a VNC viewer yourself`,
	"vncconsole":   `nothing: run a VNC viewer yourself`,
}

// Parse reads an xl.cfg or xm file into a guest (name is the file name
// used in messages). It returns the warnings about what was skipped or
// ignored; it refuses PV and PVH guests (ErrNotHVM), a builder that
// contradicts type (ErrBuilderType) and any code. Every value problem is
// reported at once, each naming file and line.
func Parse(name string, data []byte) (*hvm.Guest, []Warning, error) {
	c, err := Decode(name, data)
	if err != nil {
		return nil, nil, err
	}
	return c.Guest()
}

type conv struct {
	c    *Config
	g    *hvm.Guest
	errs []error
	ws   []Warning
	used map[string]bool
}

func (v *conv) errf(s *Setting, format string, args ...any) {
	v.errs = append(v.errs, errAt(v.c.File, s.Line, "%s: %s", s.Key, fmt.Sprintf(format, args...)))
}

func (v *conv) warn(s *Setting, code, msg, repl string) {
	v.ws = append(v.ws, Warning{File: v.c.File, Line: s.Line, Key: s.Key, Code: code, Message: msg, Replacement: repl})
}

func (v *conv) get(key string) *Setting {
	s := v.c.Get(key)
	if s != nil {
		v.used[key] = true
	}
	return s
}

func (v *conv) str(key string) (string, *Setting) {
	s := v.get(key)
	if s == nil {
		return "", nil
	}
	if s.Value.Kind == List {
		v.errf(s, "expected a single value, not a list")
		return "", nil
	}
	return s.Value.Text, s
}

func (v *conv) intp(key string) *int {
	t, s := v.str(key)
	if s == nil {
		return nil
	}
	n, err := ParseInt(t)
	if err != nil || n < -1<<31 || n > 1<<31-1 {
		v.errf(s, "%q is not a number: write a decimal number such as 512", t)
		return nil
	}
	i := int(n)
	return &i
}

func (v *conv) boolp(key string) *bool {
	t, s := v.str(key)
	if s == nil {
		return nil
	}
	n, err := ParseInt(t)
	if err != nil {
		v.errf(s, "%q is not a boolean: xl reads 0 as false and any other number as true", t)
		return nil
	}
	return hvm.Bool(n != 0)
}

// strs reads a string or a list of strings.
func (v *conv) strs(key string) ([]string, *Setting) {
	s := v.get(key)
	if s == nil {
		return nil, nil
	}
	if s.Value.Kind != List {
		return []string{s.Value.Text}, s
	}
	out := make([]string, 0, len(s.Value.Items))
	for _, it := range s.Value.Items {
		if it.Kind == List {
			v.errf(s, "expected a list of strings, found a nested list on line %d", it.Line)
			return nil, nil
		}
		out = append(out, it.Text)
	}
	return out, s
}

func isHVMLoader(path string) bool {
	return strings.HasSuffix(path, "/hvmloader") || path == "hvmloader" || strings.Contains(path, "/hvmloader")
}

// Guest converts the settings to a guest definition.
func (c *Config) Guest() (*hvm.Guest, []Warning, error) {
	v := &conv{c: c, g: &hvm.Guest{}, used: map[string]bool{}}
	ws := append([]Warning{}, c.Warnings...)
	if err := v.guestType(); err != nil {
		return nil, ws, err
	}
	g := v.g
	g.Name, _ = v.str("name")
	if s := c.Get("name"); s == nil || g.Name == "" {
		v.errs = append(v.errs, storage.Errorf(storage.ErrInvalid, "%s: name is missing or empty: add name = \"...\"", c.File))
	}
	g.UUID, _ = v.str("uuid")
	g.Memory, g.MaxMem = v.intp("memory"), v.intp("maxmem")
	g.VCPUs, g.MaxVCPUs = v.intp("vcpus"), v.intp("maxvcpus")
	if t, s := v.str("vcpu_avail"); s != nil && g.MaxVCPUs == nil {
		// xm: vcpus is the maximum and vcpu_avail the bitmap of online ones.
		if n, err := ParseInt(t); err != nil || n < 0 {
			v.errf(s, "%q is not a bitmap of online vCPUs", t)
		} else {
			g.MaxVCPUs, g.VCPUs = g.VCPUs, hvm.Int(bits.OnesCount64(uint64(n)))
		}
	}
	f := &g.Features
	f.ACPI, f.APIC, f.PAE = v.boolp("acpi"), v.boolp("apic"), v.boolp("pae")
	f.HAP, f.HPET, f.NX = v.boolp("hap"), v.boolp("hpet"), v.boolp("nx")
	if s := v.get("viridian"); s != nil {
		if s.Value.Kind == List {
			groups, _ := v.strs("viridian")
			f.Viridian = &hvm.Viridian{Enabled: true, Groups: groups}
		} else if b := v.boolp("viridian"); b != nil {
			f.Viridian = &hvm.Viridian{Enabled: *b}
		}
	}
	v.firmware()
	v.boot()
	v.directBoot()
	v.disks()
	v.nics()
	v.display()
	g.USB = v.boolp("usb")
	if s := v.get("usbdevice"); s != nil {
		g.USBDevices, _ = v.strs("usbdevice")
	}
	g.Serial = v.chardevs("serial")
	g.Parallel = v.chardevs("parallel")
	if hw, s := v.strs("soundhw"); s != nil {
		for _, h := range hw {
			for part := range strings.SplitSeq(h, ",") {
				if part = strings.TrimSpace(part); part != "" {
					g.SoundHW = append(g.SoundHW, part)
				}
			}
		}
	}
	g.PCI, _ = v.strs("pci")
	g.Lifecycle.OnPoweroff, _ = v.str("on_poweroff")
	g.Lifecycle.OnReboot, _ = v.str("on_reboot")
	g.Lifecycle.OnCrash, _ = v.str("on_crash")
	g.DeviceModel.Version, _ = v.str("device_model_version")
	g.DeviceModel.Override, _ = v.str("device_model_override")
	if dm, s := v.str("device_model"); s != nil {
		// xm ran it; xl ignores it. Kept for the xm rendering.
		g.DeviceModel.XMPath = dm
		v.warn(s, "deprecated-key", "device_model is kept for the xm rendering only: xl ignores it and chooses the device model itself", Deprecated["device_model"])
	}
	g.Localtime = v.boolp("localtime")
	g.RTCTimeOffset = v.intp("rtc_timeoffset")
	if t, s := v.str("passthrough"); s != nil {
		if !slices.Contains(hvm.PassthroughModes, t) {
			v.errf(s, "%q is not one of %s", t, strings.Join(hvm.PassthroughModes, ", "))
		} else {
			g.Passthrough = t
		}
	}
	v.otherKeys()
	ws = append(ws, v.ws...)
	if len(v.errs) > 0 {
		return nil, ws, errors.Join(v.errs...)
	}
	return g, ws, nil
}

// guestType decides HVM or not from type, builder and kernel.
func (v *conv) guestType() error {
	c := v.c
	typ, ts := v.str("type")
	builder, bs := v.str("builder")
	kernel := ""
	if s := c.Get("kernel"); s != nil && s.Value.Kind != List {
		kernel = s.Value.Text
	}
	fromBuilder := ""
	if bs != nil {
		switch builder {
		case "hvm":
			fromBuilder = "hvm"
		case "linux", "generic":
			fromBuilder = "pv"
		default:
			return errAt(c.File, bs.Line, "builder %q is not known: write type = \"hvm\" for an HVM guest", builder)
		}
		v.warn(bs, "deprecated-key", fmt.Sprintf("builder = %q is deprecated", builder), Deprecated["builder"])
	}
	if ts != nil && typ != "hvm" && typ != "pv" && typ != "pvh" {
		return errAt(c.File, ts.Line, "type %q is not known: write type = \"hvm\"", typ)
	}
	if ts != nil && bs != nil && typ != fromBuilder {
		return storage.Errorf(storage.ErrInvalid, "%s:%d: type = %q contradicts builder = %q on line %d: remove the deprecated builder line and keep the type that is right: %w", c.File, ts.Line, typ, builder, bs.Line, ErrBuilderType)
	}
	kind, line := typ, 0
	if ts != nil {
		line = ts.Line
	} else if bs != nil {
		kind, line = fromBuilder, bs.Line
	}
	switch {
	case kind == "hvm":
	case kind == "pv" || kind == "pvh":
		return storage.Errorf(storage.ErrNotSupported, "%s:%d: this is a %s guest; strata manages HVM guests only: %w", c.File, line, strings.ToUpper(kind), ErrNotHVM)
	case kernel != "" && isHVMLoader(kernel):
		s := c.Get("kernel")
		v.ws = append(v.ws, Warning{File: c.File, Line: s.Line, Key: "type", Code: "deprecated-key",
			Message: "no type or builder: taken as HVM because kernel is hvmloader", Replacement: `type = "hvm"`})
	case kernel != "":
		return storage.Errorf(storage.ErrNotSupported, "%s:%d: kernel %q without type = \"hvm\" makes this a PV guest; strata manages HVM guests only (add type = \"hvm\" if it is one): %w", c.File, c.Get("kernel").Line, kernel, ErrNotHVM)
	default:
		return storage.Errorf(storage.ErrNotSupported, "%s: neither type = \"hvm\" nor builder = \"hvm\": xl treats this as a PV guest, which strata does not manage (add type = \"hvm\" if it is an HVM guest): %w", c.File, ErrNotHVM)
	}
	return nil
}

func (v *conv) firmware() {
	g := v.g
	if t, s := v.str("bios"); s != nil {
		switch t {
		case "rombios", "seabios", "ovmf":
			g.Firmware = t
		default:
			v.errf(s, "%q is not rombios, seabios or ovmf", t)
		}
	}
	if t, s := v.str("firmware"); s != nil {
		fw := ""
		switch t {
		case "bios", "rombios", "seabios", "ovmf":
			fw = t
		case "uefi":
			fw = "ovmf"
		case "pvgrub32", "pvgrub64":
			v.errf(s, "%q boots a PV guest; an HVM guest uses bios, seabios, rombios, ovmf or uefi", t)
		default:
			if strings.HasPrefix(t, "/") {
				// firmware = "PATH": xl loads that file instead of
				// hvmloader. Kept verbatim, as firmware_override is.
				if g.Extra == nil {
					g.Extra = map[string]string{}
				}
				g.Extra["firmware"] = s.Value.String()
				break
			}
			v.errf(s, "%q is not bios, seabios, rombios, ovmf or uefi", t)
		}
		if fw != "" && g.Firmware != "" && g.Firmware != fw {
			v.errf(s, "firmware %q contradicts bios %q: keep one", t, g.Firmware)
		}
		if g.Firmware == "" {
			g.Firmware = fw
		}
	}
	g.FirmwarePath, _ = v.str("bios_path_override")
}

func (v *conv) directBoot() {
	kernel, ks := v.str("kernel")
	if ks == nil {
		return
	}
	ramdisk, _ := v.str("ramdisk")
	cmdline, cs := v.str("cmdline")
	root, rs := v.str("root")
	extra, es := v.str("extra")
	if isHVMLoader(kernel) {
		v.warn(ks, "deprecated-key", fmt.Sprintf("kernel = %q is ignored: xl loads hvmloader itself", kernel), Deprecated["kernel"])
		return
	}
	if cs == nil && (rs != nil || es != nil) {
		parts := []string{}
		if rs != nil {
			parts = append(parts, "root="+root)
		}
		if es != nil {
			parts = append(parts, extra)
		}
		cmdline = strings.Join(parts, " ")
	} else if es != nil {
		v.warn(es, "ignored-key", "extra is ignored because cmdline is set", "")
	}
	v.g.DirectBoot = &hvm.DirectBoot{Kernel: kernel, Ramdisk: ramdisk, Cmdline: cmdline}
}

func (v *conv) disks() {
	specs, s := v.strs("disk")
	for i, spec := range specs {
		d, err := ParseDisk(spec)
		if err != nil {
			v.errf(s, "item %d: %v", i+1, err)
			continue
		}
		v.g.Disks = append(v.g.Disks, d)
	}
}

func (v *conv) nics() {
	specs, s := v.strs("vif")
	for i, spec := range specs {
		n, unknown, err := ParseVif(spec)
		if err != nil {
			v.errf(s, "item %d: %v", i+1, err)
			continue
		}
		if len(unknown) > 0 {
			v.warn(s, "unknown-vif-key", fmt.Sprintf("vif item %d: kept keys strata does not model: %s", i+1, strings.Join(unknown, ", ")), "")
		}
		v.g.NICs = append(v.g.NICs, n)
	}
}

func (v *conv) display() {
	d := &v.g.Display
	d.VNC = v.boolp("vnc")
	d.VNCListen, _ = v.str("vnclisten")
	d.VNCDisplay = v.intp("vncdisplay")
	if addr, num, ok := strings.Cut(d.VNCListen, ":"); ok && !strings.Contains(num, ":") {
		// vnclisten = "ADDRESS:DISPLAYNUM" (xl.cfg(5)).
		s := v.c.Get("vnclisten")
		n, err := ParseInt(num)
		switch {
		case err != nil || n < 0 || n > 59635:
			v.errf(s, "%q is not ADDRESS[:DISPLAYNUM]: the display number is 0 to 59635 (port 5900+N)", d.VNCListen)
		case d.VNCDisplay != nil && *d.VNCDisplay != int(n):
			v.errf(s, "display %d in %q contradicts vncdisplay = %d: give the display once", n, d.VNCListen, *d.VNCDisplay)
		default:
			d.VNCListen, d.VNCDisplay = addr, hvm.Int(int(n))
		}
	}
	d.VNCUnused = v.boolp("vncunused")
	pw, _ := v.str("vncpasswd")
	d.VNCPasswd = hvm.Secret(pw)
	d.SDL = v.boolp("sdl")
	d.Keymap, _ = v.str("keymap")
	d.VGA, _ = v.str("vga")
	if b := v.boolp("stdvga"); b != nil {
		s := v.c.Get("stdvga")
		v.warn(s, "deprecated-key", "stdvga is deprecated", Deprecated["stdvga"])
		switch {
		case d.VGA != "":
			v.warn(s, "ignored-key", "stdvga is ignored because vga is set", "")
		case *b:
			d.VGA = "stdvga"
		default:
			d.VGA = "cirrus"
		}
	}
	d.VideoRAM = v.intp("videoram")
	spice := false
	for _, k := range modelledKeys {
		if strings.HasPrefix(k, "spice") && v.c.Get(k) != nil {
			spice = true
		}
	}
	if spice {
		s := &hvm.Spice{Enabled: hvm.Val(v.boolp("spice"), false)}
		s.Host, _ = v.str("spicehost")
		s.Port = v.intp("spiceport")
		s.TLSPort = v.intp("spicetls_port")
		s.DisableTicketing = v.boolp("spicedisable_ticketing")
		pw, _ := v.str("spicepasswd")
		s.Passwd = hvm.Secret(pw)
		s.AgentMouse = v.boolp("spiceagent_mouse")
		s.VDAgent = v.boolp("spicevdagent")
		s.ClipboardSharing = v.boolp("spice_clipboard_sharing")
		d.Spice = s
	}
}

// chardevs reads serial or parallel: a string or a list; "none" is none.
func (v *conv) chardevs(key string) []string {
	specs, _ := v.strs(key)
	var out []string
	for _, s := range specs {
		if s != "none" && s != "" {
			out = append(out, s)
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// boot reads the boot order. xm and qemu-dm also took a (floppy); strata's
// guests have no floppy drive, so the letter is dropped with a warning.
func (v *conv) boot() {
	b, s := v.str("boot")
	if s == nil {
		return
	}
	if strings.ContainsRune(b, 'a') {
		v.warn(s, "ignored-key", fmt.Sprintf("boot %q: the floppy (a) is dropped from the boot order: strata's guests have no floppy drive", b), "")
		b = strings.ReplaceAll(b, "a", "")
	}
	v.g.Boot = b
}

// otherKeys treats every key conv did not read: dropped and refused keys
// as keys.go says, xm keys with another xl name under that name, the
// rest kept verbatim in Extra.
func (v *conv) otherKeys() {
	g := v.g
	keep := func(key string, val *Value) {
		if g.Extra == nil {
			g.Extra = map[string]string{}
		}
		g.Extra[key] = val.String()
	}
	for _, s := range v.c.Settings {
		if v.used[s.Key] {
			continue
		}
		if s.Key == "snapshot" {
			// xm's qemu-dm -snapshot: every write to the disks was
			// thrown away at power off. xl ignores the key, so the
			// same disks would keep every write.
			if on, err := ParseInt(s.Value.Text); s.Value.Kind == List || err != nil || on != 0 {
				v.errf(s, "refused: xm's snapshot discarded every write to the disks at power off, and xl would keep them; remove the key, and use a restore point (strata snapshot create) to roll back instead")
			} else {
				v.warn(s, "ignored-key", "snapshot = 0 (xm) is dropped: it is xl's behaviour anyway", "")
			}
			continue
		}
		switch t, why := KeyTreatment(s.Key); t {
		case Modelled:
			// Read only in a context this config does not have.
			v.warn(s, "ignored-key", fmt.Sprintf("%s is dropped: it has no effect without kernel (a kernel booted directly)", s.Key), "")
		case Refused:
			v.errf(s, "refused: %s", why)
		case Dropped:
			code, repl := "ignored-key", ""
			if r, ok := Deprecated[s.Key]; ok {
				code, repl = "deprecated-key", r
			}
			v.warn(s, code, fmt.Sprintf("%s is dropped: %s", s.Key, why), repl)
		default:
			if to, ok := xmRenamed[s.Key]; ok {
				if v.c.Get(to) != nil {
					v.warn(s, "ignored-key", fmt.Sprintf("%s (xm) is dropped: %s is set too", s.Key, to), "")
					continue
				}
				v.warn(s, "deprecated-key", fmt.Sprintf("%s (xm) is kept as xl's %s", s.Key, to), to)
				keep(to, s.Value)
				continue
			}
			keep(s.Key, s.Value)
		}
	}
}
