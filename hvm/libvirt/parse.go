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
// does not model are listed in the returned warnings. On an error there
// is no guest; the warnings are those found before it.
//
// It decodes the document, checks it is an HVM domain, then runs one
// small parser per element family (domainParsers) over it, in order:
// the order fixes which of two problems is reported and the order of
// the warnings.
func ParseXML(name string, data []byte) (*hvm.Guest, []string, error) {
	d, err := decodeDomain(name, data)
	if err != nil {
		return nil, nil, err
	}
	p := &domainParser{name: name, d: d, g: &hvm.Guest{APIVersion: hvm.APIVersion, Name: d.Name, UUID: d.UUID}}
	for _, parse := range domainParsers {
		if err := parse(p); err != nil {
			return nil, p.ws, err
		}
	}
	return p.g, p.ws, nil
}

// domainParsers read the domain into the guest, one element family each.
var domainParsers = []func(*domainParser) error{
	(*domainParser).memory,
	(*domainParser).vcpus,
	(*domainParser).osBoot,
	(*domainParser).features,
	(*domainParser).clock,
	(*domainParser).lifecycle,
	(*domainParser).disks,
	(*domainParser).interfaces,
	(*domainParser).graphics,
	(*domainParser).inputs,
	(*domainParser).chardevs,
	(*domainParser).sounds,
	(*domainParser).videos,
	(*domainParser).hostdevs,
	(*domainParser).commandline,
	(*domainParser).dropped,
}

// domainParser carries one ParseXML: the decoded domain, the guest being
// filled and the warnings so far. dev is never nil (an empty list when
// the domain has no <devices>).
type domainParser struct {
	name string
	d    *libvirtxml.Domain
	dev  *libvirtxml.DomainDeviceList
	g    *hvm.Guest
	ws   []string
}

func (p *domainParser) warn(format string, args ...any) {
	p.ws = append(p.ws, fmt.Sprintf("%s: ", p.name)+fmt.Sprintf(format, args...))
}

func (p *domainParser) bad(format string, args ...any) error {
	return storage.Errorf(storage.ErrInvalid, "%s: %s", p.name, fmt.Sprintf(format, args...))
}

// decodeDomain unmarshals the XML and refuses what is not an HVM domain.
func decodeDomain(name string, data []byte) (*libvirtxml.Domain, error) {
	if len(data) > hvm.MaxConfigSize {
		return nil, storage.Errorf(storage.ErrInvalid, "%s: %d bytes is larger than the %d bytes a domain XML may have", name, len(data), hvm.MaxConfigSize)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(data)); err != nil {
		// The XML parser quotes what it trips on (an entity in a passwd
		// attribute: part of the password): only the line, then.
		var se *xml.SyntaxError
		if hvm.SecretValue(string(data)) {
			if errors.As(err, &se) {
				return nil, storage.Errorf(storage.ErrInvalid, "%s: not libvirt domain XML: a syntax error on line %d (not quoted: the file holds a password)", name, se.Line)
			}
			return nil, storage.Errorf(storage.ErrInvalid, "%s: not libvirt domain XML (the parser's message is not quoted: the file holds a password)", name)
		}
		return nil, storage.Errorf(storage.ErrInvalid, "%s: not libvirt domain XML: %w", name, err)
	}
	if d.OS == nil || d.OS.Type == nil || d.OS.Type.Type != "hvm" {
		t := ""
		if d.OS != nil && d.OS.Type != nil {
			t = d.OS.Type.Type
		}
		return nil, storage.Errorf(storage.ErrNotSupported, "%s: os type %q is not hvm: strata manages HVM guests only", name, t)
	}
	return &d, nil
}

// memory reads <currentMemory> as the memory the guest starts with and
// <memory> as its maximum when the two differ.
func (p *domainParser) memory() error {
	d, g := p.d, p.g
	if d.CurrentMemory != nil {
		mib, err := toMiB(d.CurrentMemory.Value, d.CurrentMemory.Unit)
		if err != nil {
			return p.bad("currentMemory: %v", err)
		}
		g.Memory = &mib
	}
	if d.Memory != nil {
		mib, err := toMiB(d.Memory.Value, d.Memory.Unit)
		if err != nil {
			return p.bad("memory: %v", err)
		}
		if g.Memory == nil {
			g.Memory = &mib
		} else if mib != *g.Memory {
			g.MaxMem = &mib
		}
	}
	return nil
}

// vcpus reads <vcpu current=N>M</vcpu>: N to start with, up to M.
func (p *domainParser) vcpus() error {
	v := p.d.VCPU
	switch {
	case v == nil:
	case v.Current != 0 && v.Current != v.Value:
		p.g.VCPUs, p.g.MaxVCPUs = hvm.Int(int(v.Current)), hvm.Int(int(v.Value))
	default:
		p.g.VCPUs = hvm.Int(int(v.Value))
	}
	return nil
}

// bootDevices are libvirt's <boot dev> names as xl's boot letters.
var bootDevices = map[string]string{"hd": "c", "cdrom": "d", "network": "n"}

// osBoot reads <os>: firmware, direct kernel boot and the boot order.
func (p *domainParser) osBoot() error {
	os, g := p.d.OS, p.g
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
		c := bootDevices[b.Dev]
		if c == "" {
			p.warn("boot device %q ignored", b.Dev)
			continue
		}
		g.Boot += c
	}
	return nil
}

// features reads <features>. libvirt writes every feature that is on,
// so absence means off.
func (p *domainParser) features() error {
	f := &p.g.Features
	fl := p.d.Features
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
			p.g.Passthrough = "disabled"
		case pt.Mode != "":
			p.g.Passthrough = pt.Mode
		default:
			p.g.Passthrough = "enabled"
		}
	}
	return nil
}

// clock reads <clock>: the HPET timer, local time and a fixed offset.
func (p *domainParser) clock() error {
	c, g := p.d.Clock, p.g
	if c == nil {
		return nil
	}
	for _, t := range c.Timer {
		if t.Name == "hpet" && t.Present != "" {
			g.Features.HPET = hvm.Bool(t.Present == "yes")
		}
	}
	switch {
	case c.Offset == "localtime":
		g.Localtime = hvm.Bool(true)
	case c.Offset == "variable":
		if c.Basis == "localtime" {
			g.Localtime = hvm.Bool(true)
		}
		if c.Adjustment != "" && c.Adjustment != "reset" {
			n, err := strconv.Atoi(c.Adjustment)
			if err != nil {
				return p.bad("<clock adjustment=%q> is not a number of seconds", c.Adjustment)
			}
			g.RTCTimeOffset = hvm.Int(n)
		}
	case c.Offset != "" && c.Offset != "utc":
		p.warn("<clock offset=%q> is not modelled: the guest's clock is UTC", c.Offset)
	}
	return nil
}

// lifecycle reads the on_* actions and notes a dropped <cpu>; it also
// settles the device list the device parsers read.
func (p *domainParser) lifecycle() error {
	d := p.d
	p.g.Lifecycle = hvm.Lifecycle{OnPoweroff: d.OnPoweroff, OnReboot: d.OnReboot, OnCrash: d.OnCrash}
	if d.CPU != nil {
		p.warn("<cpu> is not modelled and was dropped")
	}
	p.dev = d.Devices
	if p.dev == nil {
		p.dev = &libvirtxml.DomainDeviceList{}
	}
	if d.Type == "xen" && p.dev.Emulator != "" {
		p.g.DeviceModel.Override = p.dev.Emulator
	}
	return nil
}

func (p *domainParser) disks() error {
	for i, k := range p.dev.Disks {
		disk, err := parseDisk(k)
		if err != nil {
			return p.bad("disk %d: %v", i+1, err)
		}
		p.g.Disks = append(p.g.Disks, disk)
	}
	return nil
}

func (p *domainParser) interfaces() error {
	for i, n := range p.dev.Interfaces {
		nic, err := parseNIC(n)
		if err != nil {
			return p.bad("interface %d: %v", i+1, err)
		}
		p.g.NICs = append(p.g.NICs, nic)
	}
	return nil
}

// graphics reads <graphics>: VNC, SDL and SPICE; VNC is off unless a
// VNC element says otherwise.
func (p *domainParser) graphics() error {
	disp := &p.g.Display
	for _, gr := range p.dev.Graphics {
		switch {
		case gr.VNC != nil:
			parseVNC(gr.VNC, disp)
		case gr.SDL != nil:
			disp.SDL = hvm.Bool(true)
		case gr.Spice != nil:
			disp.Spice = parseSpice(gr.Spice)
		default:
			p.warn("a graphics device other than vnc, sdl or spice was dropped")
		}
	}
	if disp.VNC == nil && (disp.SDL != nil || disp.Spice != nil) {
		disp.VNC = hvm.Bool(false)
	}
	if len(p.dev.Graphics) == 0 {
		disp.VNC = hvm.Bool(false)
	}
	return nil
}

// parseVNC reads a VNC element; a listener's address wins over listen=,
// and an automatic or missing port means "the first unused display".
func parseVNC(v *libvirtxml.DomainGraphicVNC, disp *hvm.Display) {
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
}

// parseSpice reads a SPICE element; ports are kept only when fixed.
func parseSpice(sp *libvirtxml.DomainGraphicSpice) *hvm.Spice {
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
	return s
}

// inputs keeps USB input devices (tablet, mouse) as xl's usbdevice list.
func (p *domainParser) inputs() error {
	for _, in := range p.dev.Inputs {
		if in.Bus == "usb" {
			p.g.USBDevices = append(p.g.USBDevices, in.Type)
		}
	}
	if len(p.g.USBDevices) > 0 {
		p.g.USB = hvm.Bool(true)
	}
	return nil
}

// chardevs reads serial and parallel ports as xl character specs.
func (p *domainParser) chardevs() error {
	for i, s := range p.dev.Serials {
		spec, err := charSpec(s.Source, s.Protocol)
		if err != nil {
			return p.bad("serial %d: %v", i+1, err)
		}
		p.g.Serial = append(p.g.Serial, spec)
	}
	for i, s := range p.dev.Parallels {
		spec, err := charSpec(s.Source, s.Protocol)
		if err != nil {
			return p.bad("parallel %d: %v", i+1, err)
		}
		p.g.Parallel = append(p.g.Parallel, spec)
	}
	return nil
}

// sounds keeps sound models; both Intel HDA models are xl's hda.
func (p *domainParser) sounds() error {
	for _, s := range p.dev.Sounds {
		m := s.Model
		if m == "ich6" || m == "ich9" {
			m = "hda"
		}
		p.g.SoundHW = append(p.g.SoundHW, m)
	}
	return nil
}

// videoModels are libvirt's video models as xl's vga names.
var videoModels = map[string]string{"vga": "stdvga", "cirrus": "cirrus", "qxl": "qxl", "none": "none"}

// videos reads <video>; the last known model wins, as xl has one.
func (p *domainParser) videos() error {
	for _, v := range p.dev.Videos {
		vga := videoModels[v.Model.Type]
		if vga == "" {
			p.warn("video model %q was dropped", v.Model.Type)
			continue
		}
		p.g.Display.VGA = vga
		if v.Model.VRam > 0 {
			p.g.Display.VideoRAM = hvm.Int(int(v.Model.VRam / 1024))
		}
	}
	return nil
}

// hostdevs reads passed-through PCI functions and USB devices.
func (p *domainParser) hostdevs() error {
	for _, h := range p.dev.Hostdevs {
		switch {
		case h.SubsysPCI != nil && h.SubsysPCI.Source != nil && h.SubsysPCI.Source.Address != nil:
			a := h.SubsysPCI.Source.Address
			p.g.PCI = append(p.g.PCI, fmt.Sprintf("%04x:%02x:%02x.%x", deref(a.Domain), deref(a.Bus), deref(a.Slot), deref(a.Function)))
		case h.SubsysUSB != nil && h.SubsysUSB.Source != nil && h.SubsysUSB.Source.Vendor != nil && h.SubsysUSB.Source.Product != nil:
			s := h.SubsysUSB.Source
			p.g.USBDevices = append(p.g.USBDevices, "host:"+strings.TrimPrefix(s.Vendor.ID, "0x")+":"+strings.TrimPrefix(s.Product.ID, "0x"))
		default:
			p.warn("a host device was dropped")
		}
	}
	return nil
}

// commandline reads extra device model arguments: xen:commandline is
// what libvirt's libxl driver writes for xl's device_model_args;
// qemu:commandline is the same for QEMU. Kept as device_model_args, so
// lint sees the monitors and consoles they may open.
func (p *domainParser) commandline() error {
	var args []string
	if x := p.d.XenCommandline; x != nil {
		for _, a := range x.Args {
			args = append(args, a.Value)
		}
	}
	if q := p.d.QEMUCommandline; q != nil {
		for _, a := range q.Args {
			args = append(args, a.Value)
		}
		if len(q.Args) > 0 {
			p.warn("qemu:commandline is kept as xl's device_model_args (libvirt's xen:commandline); check it with strata guest lint")
		}
		if len(q.Envs) > 0 {
			p.warn("%d qemu:commandline environment variable(s) were dropped", len(q.Envs))
		}
	}
	if len(args) == 0 {
		return nil
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = xlcfg.Quote(a)
	}
	if p.g.Extra == nil {
		p.g.Extra = map[string]string{}
	}
	p.g.Extra["device_model_args"] = "[ " + strings.Join(q, ", ") + " ]"
	return nil
}

// dropped notes the guest agent's channel (it says the guest runs
// qemu-ga) and warns about the device kinds strata does not model,
// other channels (spice's vdagent, ...) among them.
func (p *domainParser) dropped() error {
	dev := p.dev
	channels := 0
	for _, c := range dev.Channels {
		if c.Target != nil && c.Target.VirtIO != nil && c.Target.VirtIO.Name == qga.ChannelName {
			p.g.Features.GuestAgent = hvm.Bool(true)
			continue
		}
		channels++
	}
	for _, what := range []struct {
		n    int
		name string
	}{{len(dev.RedirDevs), "redirdev"}, {len(dev.Smartcards), "smartcard"}, {channels, "channel"}, {len(dev.Filesystems), "filesystem"}, {len(dev.Watchdogs), "watchdog"}, {len(dev.RNGs), "rng"}, {len(dev.TPMs), "tpm"}} {
		if what.n > 0 {
			p.warn("%d %s device(s) were dropped", what.n, what.name)
		}
	}
	return nil
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
			d.Path = rbdPath(s.Network)
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

// rbdPath writes a network rbd source as QEMU's rbd: filename, with its
// monitors, user and ceph.conf.
func rbdPath(n *libvirtxml.DomainDiskSourceNetwork) string {
	var b strings.Builder
	b.WriteString("rbd:" + n.Name)
	if len(n.Hosts) > 0 {
		b.WriteString(":auth_supported=none:mon_host=")
		for i, h := range n.Hosts {
			if i > 0 {
				b.WriteString(`\;`)
			}
			b.WriteString(h.Name)
			if h.Port != "" {
				b.WriteString(`\:` + h.Port)
			}
		}
	}
	if a := n.Auth; a != nil && a.Username != "" {
		b.WriteString(":id=" + rbdEscape(a.Username))
	}
	if c := n.Config; c != nil && c.File != "" {
		b.WriteString(":conf=" + rbdEscape(c.File))
	}
	return b.String()
}

// rbdEscape escapes a value for QEMU's rbd: filename.
func rbdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(v)
}
