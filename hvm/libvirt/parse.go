package libvirt

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
	"libvirt.org/go/libvirtxml"
)

// ParseXML reads libvirt domain XML (name is the file name used in
// messages) into a guest. It refuses non-HVM domains; elements strata
// does not model are listed in the returned warnings.
func ParseXML(name string, data []byte) (*hvm.Guest, []string, error) {
	if len(data) > hvm.MaxConfigSize {
		return nil, nil, storage.Errorf(storage.ErrInvalid, "%s: %d bytes is larger than the %d bytes a domain XML may have", name, len(data), hvm.MaxConfigSize)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(data)); err != nil {
		// The XML parser quotes what it trips on (an entity in a passwd
		// attribute: part of the password): only the line, then.
		var se *xml.SyntaxError
		if hvm.SecretValue(string(data)) {
			if errors.As(err, &se) {
				return nil, nil, storage.Errorf(storage.ErrInvalid, "%s: not libvirt domain XML: a syntax error on line %d (not quoted: the file holds a password)", name, se.Line)
			}
			return nil, nil, storage.Errorf(storage.ErrInvalid, "%s: not libvirt domain XML (the parser's message is not quoted: the file holds a password)", name)
		}
		return nil, nil, storage.Errorf(storage.ErrInvalid, "%s: not libvirt domain XML: %w", name, err)
	}
	bad := func(format string, args ...any) error {
		return storage.Errorf(storage.ErrInvalid, "%s: %s", name, fmt.Sprintf(format, args...))
	}
	if d.OS == nil || d.OS.Type == nil || d.OS.Type.Type != "hvm" {
		t := ""
		if d.OS != nil && d.OS.Type != nil {
			t = d.OS.Type.Type
		}
		return nil, nil, storage.Errorf(storage.ErrNotSupported, "%s: os type %q is not hvm: strata manages HVM guests only", name, t)
	}
	var ws []string
	warn := func(format string, args ...any) {
		ws = append(ws, fmt.Sprintf("%s: ", name)+fmt.Sprintf(format, args...))
	}
	g := &hvm.Guest{APIVersion: hvm.APIVersion, Name: d.Name, UUID: d.UUID}

	if d.CurrentMemory != nil {
		mib, err := toMiB(d.CurrentMemory.Value, d.CurrentMemory.Unit)
		if err != nil {
			return nil, ws, bad("currentMemory: %v", err)
		}
		g.Memory = &mib
	}
	if d.Memory != nil {
		mib, err := toMiB(d.Memory.Value, d.Memory.Unit)
		if err != nil {
			return nil, ws, bad("memory: %v", err)
		}
		if g.Memory == nil {
			g.Memory = &mib
		} else if mib != *g.Memory {
			g.MaxMem = &mib
		}
	}
	if d.VCPU != nil {
		if d.VCPU.Current != 0 && d.VCPU.Current != d.VCPU.Value {
			g.VCPUs, g.MaxVCPUs = hvm.Int(int(d.VCPU.Current)), hvm.Int(int(d.VCPU.Value))
		} else {
			g.VCPUs = hvm.Int(int(d.VCPU.Value))
		}
	}
	os := d.OS
	if l := os.Loader; l != nil {
		switch {
		case l.Type == "pflash":
			g.Firmware = "ovmf"
			if l.Path != XenOVMF && l.Path != KVMOVMF {
				g.FirmwarePath = l.Path
			}
		case l.Path != "" && l.Path != XenHVMLoader:
			g.FirmwarePath = l.Path
		}
	}
	if os.Firmware == "efi" {
		g.Firmware = "ovmf"
	}
	if os.Kernel != "" {
		g.DirectBoot = &hvm.DirectBoot{Kernel: os.Kernel, Ramdisk: os.Initrd, Cmdline: os.Cmdline}
	}
	for _, b := range os.BootDevices {
		c := map[string]string{"hd": "c", "cdrom": "d", "network": "n"}[b.Dev]
		if c == "" {
			warn("boot device %q ignored", b.Dev)
			continue
		}
		g.Boot += c
	}
	// libvirt writes every feature that is on, so absence means off.
	f := &g.Features
	fl := d.Features
	if fl == nil {
		fl = &libvirtxml.DomainFeatureList{}
	}
	f.ACPI, f.APIC, f.PAE = hvm.Bool(fl.ACPI != nil), hvm.Bool(fl.APIC != nil), hvm.Bool(fl.PAE != nil)
	if fl.HAP != nil {
		f.HAP = hvm.Bool(fl.HAP.State != "off")
	}
	if fl.Viridian != nil || fl.HyperV != nil && fl.HyperV.Mode != "passthrough" {
		f.Viridian = &hvm.Viridian{Enabled: true}
	}
	if x := fl.Xen; x != nil && x.Passthrough != nil {
		switch pt := x.Passthrough; {
		case pt.State == "off":
			g.Passthrough = "disabled"
		case pt.Mode != "":
			g.Passthrough = pt.Mode
		default:
			g.Passthrough = "enabled"
		}
	}
	if d.Clock != nil {
		for _, t := range d.Clock.Timer {
			if t.Name == "hpet" && t.Present != "" {
				f.HPET = hvm.Bool(t.Present == "yes")
			}
		}
		switch c := d.Clock; {
		case c.Offset == "localtime":
			g.Localtime = hvm.Bool(true)
		case c.Offset == "variable":
			if c.Basis == "localtime" {
				g.Localtime = hvm.Bool(true)
			}
			if c.Adjustment != "" && c.Adjustment != "reset" {
				n, err := strconv.Atoi(c.Adjustment)
				if err != nil {
					return nil, nil, bad("<clock adjustment=%q> is not a number of seconds", c.Adjustment)
				}
				g.RTCTimeOffset = hvm.Int(n)
			}
		case c.Offset != "" && c.Offset != "utc":
			warn("<clock offset=%q> is not modelled: the guest's clock is UTC", c.Offset)
		}
	}
	g.Lifecycle = hvm.Lifecycle{OnPoweroff: d.OnPoweroff, OnReboot: d.OnReboot, OnCrash: d.OnCrash}
	if d.CPU != nil {
		warn("<cpu> is not modelled and was dropped")
	}
	dev := d.Devices
	if dev == nil {
		dev = &libvirtxml.DomainDeviceList{}
	}
	if d.Type == "xen" && dev.Emulator != "" {
		g.DeviceModel.Override = dev.Emulator
	}
	for i, k := range dev.Disks {
		disk, err := parseDisk(k)
		if err != nil {
			return nil, ws, bad("disk %d: %v", i+1, err)
		}
		g.Disks = append(g.Disks, disk)
	}
	for i, n := range dev.Interfaces {
		nic, err := parseNIC(n)
		if err != nil {
			return nil, ws, bad("interface %d: %v", i+1, err)
		}
		g.NICs = append(g.NICs, nic)
	}
	for _, gr := range dev.Graphics {
		switch {
		case gr.VNC != nil:
			v := gr.VNC
			disp := &g.Display
			disp.VNC = hvm.Bool(true)
			disp.VNCListen = v.Listen
			for _, l := range v.Listeners {
				if l.Address != nil && l.Address.Address != "" {
					disp.VNCListen = l.Address.Address
				}
			}
			if v.AutoPort == "yes" || v.Port <= 0 {
				disp.VNCUnused = hvm.Bool(true)
			} else {
				disp.VNCUnused, disp.VNCDisplay = hvm.Bool(false), hvm.Int(v.Port-5900)
			}
			disp.VNCPasswd = hvm.Secret(v.Passwd)
			disp.Keymap = v.Keymap
		case gr.SDL != nil:
			g.Display.SDL = hvm.Bool(true)
		case gr.Spice != nil:
			sp := gr.Spice
			s := &hvm.Spice{Enabled: true, Host: sp.Listen, Passwd: hvm.Secret(sp.Passwd)}
			for _, l := range sp.Listeners {
				if l.Address != nil && l.Address.Address != "" {
					s.Host = l.Address.Address
				}
			}
			if sp.AutoPort != "yes" && sp.Port > 0 {
				s.Port = hvm.Int(sp.Port)
			}
			if sp.AutoPort != "yes" && sp.TLSPort > 0 {
				s.TLSPort = hvm.Int(sp.TLSPort)
			}
			if sp.Mouse != nil {
				s.AgentMouse = hvm.Bool(sp.Mouse.Mode == "client")
			}
			if sp.ClipBoard != nil {
				s.ClipboardSharing = hvm.Bool(sp.ClipBoard.CopyPaste == "yes")
			}
			g.Display.Spice = s
		default:
			warn("a graphics device other than vnc, sdl or spice was dropped")
		}
	}
	if g.Display.VNC == nil && (g.Display.SDL != nil || g.Display.Spice != nil) {
		g.Display.VNC = hvm.Bool(false)
	}
	if len(dev.Graphics) == 0 {
		g.Display.VNC = hvm.Bool(false)
	}
	for _, in := range dev.Inputs {
		if in.Bus == "usb" {
			g.USBDevices = append(g.USBDevices, in.Type)
		}
	}
	if len(g.USBDevices) > 0 {
		g.USB = hvm.Bool(true)
	}
	for i, s := range dev.Serials {
		spec, err := charSpec(s.Source, s.Protocol)
		if err != nil {
			return nil, ws, bad("serial %d: %v", i+1, err)
		}
		g.Serial = append(g.Serial, spec)
	}
	for i, s := range dev.Parallels {
		spec, err := charSpec(s.Source, s.Protocol)
		if err != nil {
			return nil, ws, bad("parallel %d: %v", i+1, err)
		}
		g.Parallel = append(g.Parallel, spec)
	}
	for _, s := range dev.Sounds {
		m := s.Model
		if m == "ich6" || m == "ich9" {
			m = "hda"
		}
		g.SoundHW = append(g.SoundHW, m)
	}
	for _, v := range dev.Videos {
		vga := map[string]string{"vga": "stdvga", "cirrus": "cirrus", "qxl": "qxl", "none": "none"}[v.Model.Type]
		if vga == "" {
			warn("video model %q was dropped", v.Model.Type)
			continue
		}
		g.Display.VGA = vga
		if v.Model.VRam > 0 {
			g.Display.VideoRAM = hvm.Int(int(v.Model.VRam / 1024))
		}
	}
	for _, h := range dev.Hostdevs {
		switch {
		case h.SubsysPCI != nil && h.SubsysPCI.Source != nil && h.SubsysPCI.Source.Address != nil:
			a := h.SubsysPCI.Source.Address
			g.PCI = append(g.PCI, fmt.Sprintf("%04x:%02x:%02x.%x", deref(a.Domain), deref(a.Bus), deref(a.Slot), deref(a.Function)))
		case h.SubsysUSB != nil && h.SubsysUSB.Source != nil && h.SubsysUSB.Source.Vendor != nil && h.SubsysUSB.Source.Product != nil:
			s := h.SubsysUSB.Source
			g.USBDevices = append(g.USBDevices, "host:"+strings.TrimPrefix(s.Vendor.ID, "0x")+":"+strings.TrimPrefix(s.Product.ID, "0x"))
		default:
			warn("a host device was dropped")
		}
	}
	// Extra device model arguments: xen:commandline is what libvirt's
	// libxl driver writes for xl's device_model_args; qemu:commandline
	// is the same for QEMU. Kept as device_model_args, so lint sees the
	// monitors and consoles they may open.
	var args []string
	if x := d.XenCommandline; x != nil {
		for _, a := range x.Args {
			args = append(args, a.Value)
		}
	}
	if q := d.QEMUCommandline; q != nil {
		for _, a := range q.Args {
			args = append(args, a.Value)
		}
		if len(q.Args) > 0 {
			warn("qemu:commandline is kept as xl's device_model_args (libvirt's xen:commandline); check it with strata guest lint")
		}
		if len(q.Envs) > 0 {
			warn("%d qemu:commandline environment variable(s) were dropped", len(q.Envs))
		}
	}
	if len(args) > 0 {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = xlcfg.Quote(a)
		}
		if g.Extra == nil {
			g.Extra = map[string]string{}
		}
		g.Extra["device_model_args"] = "[ " + strings.Join(q, ", ") + " ]"
	}
	// The guest agent's channel says the guest runs qemu-ga; other
	// channels (spice's vdagent, ...) are not modelled.
	channels := 0
	for _, c := range dev.Channels {
		if c.Target != nil && c.Target.VirtIO != nil && c.Target.VirtIO.Name == qga.ChannelName {
			g.Features.GuestAgent = hvm.Bool(true)
			continue
		}
		channels++
	}
	for _, what := range []struct {
		n    int
		name string
	}{{len(dev.RedirDevs), "redirdev"}, {len(dev.Smartcards), "smartcard"}, {channels, "channel"}, {len(dev.Filesystems), "filesystem"}, {len(dev.Watchdogs), "watchdog"}, {len(dev.RNGs), "rng"}, {len(dev.TPMs), "tpm"}} {
		if what.n > 0 {
			warn("%d %s device(s) were dropped", what.n, what.name)
		}
	}
	return g, ws, nil
}

func deref(p *uint) uint {
	if p == nil {
		return 0
	}
	return *p
}

func toMiB(v uint, unit string) (int, error) {
	mult := map[string]uint64{"": 1024, "b": 1, "bytes": 1, "KB": 1000, "k": 1024, "KiB": 1024, "MB": 1000 * 1000, "M": 1 << 20, "MiB": 1 << 20, "GB": 1000 * 1000 * 1000, "G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unit %q is not known", unit)
	}
	b := uint64(v) * mult
	return int((b + 1<<20 - 1) >> 20), nil
}

func parseDisk(k libvirtxml.DomainDisk) (hvm.Disk, error) {
	var d hvm.Disk
	if k.Target == nil || k.Target.Dev == "" {
		return d, fmt.Errorf("no target dev")
	}
	d.Vdev = k.Target.Dev
	if strings.HasPrefix(d.Vdev, "vd") {
		d.Vdev = "x" + d.Vdev
	}
	switch k.Device {
	case "", "disk":
	case "cdrom":
		d.CDROM = true
	default:
		return d, fmt.Errorf("device %q is not supported: use disk or cdrom", k.Device)
	}
	if k.ReadOnly != nil && !d.CDROM {
		d.Access = "ro"
	}
	if k.Driver != nil {
		if k.Driver.Type != "" && k.Driver.Type != "aio" {
			d.Format = k.Driver.Type
		}
		if k.Driver.Name == "tap" || k.Driver.Name == "tap2" {
			d.Backend = "tap"
		}
	}
	if s := k.Source; s != nil {
		switch {
		case s.File != nil:
			d.Path = s.File.File
		case s.Block != nil:
			d.Device = s.Block.Dev
		case s.Network != nil && s.Network.Protocol == "rbd":
			var b strings.Builder
			b.WriteString("rbd:" + s.Network.Name)
			if len(s.Network.Hosts) > 0 {
				b.WriteString(":auth_supported=none:mon_host=")
				for i, h := range s.Network.Hosts {
					if i > 0 {
						b.WriteString(`\;`)
					}
					b.WriteString(h.Name)
					if h.Port != "" {
						b.WriteString(`\:` + h.Port)
					}
				}
			}
			if a := s.Network.Auth; a != nil && a.Username != "" {
				b.WriteString(":id=" + rbdEscape(a.Username))
			}
			if c := s.Network.Config; c != nil && c.File != "" {
				b.WriteString(":conf=" + rbdEscape(c.File))
			}
			d.Path = b.String()
		default:
			return d, fmt.Errorf("only file, block and rbd disk sources are supported")
		}
	}
	if d.Path == "" && d.Device == "" {
		d.Format = ""
	}
	return d, nil
}

func parseNIC(n libvirtxml.DomainInterface) (hvm.NIC, error) {
	var nic hvm.NIC
	switch {
	case n.Source == nil:
		return nic, fmt.Errorf("no source")
	case n.Source.Bridge != nil:
		nic.Bridge = n.Source.Bridge.Bridge
	default:
		return nic, fmt.Errorf("only bridge interfaces are supported")
	}
	if n.VLan != nil && len(n.VLan.Tags) > 0 {
		if n.VLan.Trunk == "yes" || len(n.VLan.Tags) > 1 {
			for _, t := range n.VLan.Tags {
				nic.Bridge += ":" + strconv.FormatUint(uint64(t.ID), 10)
			}
		} else {
			nic.Bridge += "." + strconv.FormatUint(uint64(n.VLan.Tags[0].ID), 10)
		}
	}
	if n.MAC != nil {
		nic.MAC = strings.ToLower(n.MAC.Address)
	}
	if n.Model != nil {
		if n.Model.Type == "netfront" {
			nic.Type = "vif"
		} else {
			nic.Model = n.Model.Type
		}
	}
	if n.Script != nil {
		nic.Script = n.Script.Path
	}
	if n.Target != nil {
		nic.VifName = n.Target.Dev
	}
	if n.Bandwidth != nil && n.Bandwidth.Outbound != nil && n.Bandwidth.Outbound.Average != nil {
		nic.Rate = strconv.Itoa(*n.Bandwidth.Outbound.Average) + "KB/s"
	}
	if n.MTU != nil && n.MTU.Size > 0 {
		nic.MTU = hvm.Int(int(n.MTU.Size))
	}
	var ips []string
	for _, ip := range n.IP {
		ips = append(ips, ip.Address)
	}
	nic.IP = strings.Join(ips, " ")
	return nic, nil
}

func charSpec(src *libvirtxml.DomainChardevSource, proto *libvirtxml.DomainChardevProtocol) (string, error) {
	switch {
	case src == nil:
		return "", fmt.Errorf("no source")
	case src.Pty != nil:
		return "pty", nil
	case src.Null != nil:
		return "null", nil
	case src.VC != nil:
		return "vc", nil
	case src.StdIO != nil:
		return "stdio", nil
	case src.Dev != nil:
		return src.Dev.Path, nil
	case src.File != nil:
		return "file:" + src.File.Path, nil
	case src.Pipe != nil:
		return "pipe:" + src.Pipe.Path, nil
	case src.TCP != nil:
		kind := "tcp"
		if proto != nil && proto.Type == "telnet" {
			kind = "telnet"
		}
		s := kind + ":" + src.TCP.Host + ":" + src.TCP.Service
		if src.TCP.Mode == "bind" {
			s += ",server=on,wait=off"
		}
		return s, nil
	case src.UDP != nil:
		s := "udp:" + src.UDP.ConnectHost + ":" + src.UDP.ConnectService
		if src.UDP.BindService != "" {
			s += "@" + src.UDP.BindHost + ":" + src.UDP.BindService
		}
		return s, nil
	case src.UNIX != nil:
		s := "unix:" + src.UNIX.Path
		if src.UNIX.Mode == "bind" {
			s += ",server=on,wait=off"
		}
		return s, nil
	}
	return "", fmt.Errorf("character device type not supported")
}

// rbdEscape escapes a value for QEMU's rbd: filename.
func rbdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(v)
}
