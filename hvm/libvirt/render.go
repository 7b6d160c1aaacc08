// Package libvirt renders hvm guests as libvirt domain XML (for the xen
// and kvm drivers) and reads domain XML back into a guest, through
// libvirt.org/go/libvirtxml. The mapping follows libvirt's own Xen config
// converter (src/libxl/xen_common.c): memory in KiB with <memory> the
// ceiling (maxmem) and <currentMemory> the boot size, Xen's hvmloader as
// the ROM loader, phy disks as block disks, vifs as bridge interfaces.
package libvirt

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/storage"
	"libvirt.org/go/libvirtxml"
)

// Hypervisor selects the libvirt driver the XML is written for.
type Hypervisor string

// Hypervisors.
const (
	Xen Hypervisor = "xen"
	KVM Hypervisor = "kvm"
)

// Firmware paths used when the guest does not name one.
const (
	XenHVMLoader = "/usr/lib/xen/boot/hvmloader"
	XenOVMF      = "/usr/lib/xen/boot/ovmf.bin"
	KVMOVMF      = "/usr/share/OVMF/OVMF_CODE.fd"
)

// ParseHypervisor checks a --hypervisor value.
func ParseHypervisor(s string) (Hypervisor, error) {
	switch h := Hypervisor(s); h {
	case Xen, KVM:
		return h, nil
	}
	return "", storage.Errorf(storage.ErrInvalid, "hypervisor %q is not supported: use xen or kvm", s)
}

// Render writes g as libvirt domain XML for hv. Disks must name host
// paths or devices (hvm.ResolveDisks); call FillDefaults and Validate
// first.
func Render(g *hvm.Guest, hv Hypervisor) ([]byte, error) {
	d, err := Domain(g, hv)
	if err != nil {
		return nil, err
	}
	s, err := d.Marshal()
	if err != nil {
		return nil, fmt.Errorf("guest %q: encode domain XML: %w", g.Name, err)
	}
	return []byte(s + "\n"), nil
}

func errf(g *hvm.Guest, format string, args ...any) error {
	return storage.Errorf(storage.ErrInvalid, "guest %q: %s", g.Name, fmt.Sprintf(format, args...))
}

func notSupported(g *hvm.Guest, format string, args ...any) error {
	return storage.Errorf(storage.ErrNotSupported, "guest %q: %s", g.Name, fmt.Sprintf(format, args...))
}

// Domain builds the libvirtxml document for g.
func Domain(g *hvm.Guest, hv Hypervisor) (*libvirtxml.Domain, error) {
	if _, err := ParseHypervisor(string(hv)); err != nil {
		return nil, err
	}
	if err := hvm.Unresolved(g); err != nil {
		return nil, err
	}
	if g.Memory == nil {
		return nil, errf(g, "memory: not set; give the memory size in MiB")
	}
	d := &libvirtxml.Domain{
		Type:          string(hv),
		Name:          g.Name,
		UUID:          g.UUID,
		Memory:        &libvirtxml.DomainMemory{Value: uint(g.EffectiveMaxMem()) * 1024, Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(*g.Memory) * 1024, Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(g.EffectiveMaxVCPUs())},
		Devices:       &libvirtxml.DomainDeviceList{},
	}
	if g.EffectiveVCPUs() != g.EffectiveMaxVCPUs() {
		d.VCPU.Current = uint(g.EffectiveVCPUs())
	}
	for _, section := range domainSections {
		if err := section(d, g, hv); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// domainSections fill the domain one element family each. Devices of one
// kind keep the order they are appended in (USB host devices before PCI
// ones), and the first that cannot be written is the error.
var domainSections = []func(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) error{
	renderOS,
	func(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) error {
		renderFeatures(d, g, hv)
		renderPassthrough(d, g, hv)
		return nil
	},
	renderLifecycle,
	renderDisksNICs,
	renderChardevs,
	renderUSB,
	func(d *libvirtxml.Domain, g *hvm.Guest, _ Hypervisor) error { return renderGraphics(d, g) },
	renderSoundVideo,
	renderPCI,
}

// renderLifecycle writes the on_* actions; only on_crash may dump core.
func renderLifecycle(d *libvirtxml.Domain, g *hvm.Guest, _ Hypervisor) error {
	for _, a := range []struct {
		name, v string
		dst     *string
		crash   bool
	}{{"on_poweroff", g.Lifecycle.OnPoweroff, &d.OnPoweroff, false}, {"on_reboot", g.Lifecycle.OnReboot, &d.OnReboot, false}, {"on_crash", g.Lifecycle.OnCrash, &d.OnCrash, true}} {
		switch a.v {
		case "", "destroy", "restart", "preserve", "rename-restart":
			*a.dst = a.v
		case "coredump-destroy", "coredump-restart":
			if !a.crash {
				return notSupported(g, "lifecycle.%s %s cannot be written in libvirt XML (only on_crash may dump core)", a.name, a.v)
			}
			*a.dst = a.v
		default:
			return notSupported(g, "lifecycle.%s %s cannot be written in libvirt XML: use destroy, restart, preserve or rename-restart", a.name, a.v)
		}
	}
	return nil
}

// renderDisksNICs writes the emulator (Xen only), disks and interfaces.
func renderDisksNICs(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) error {
	dev := d.Devices
	if hv == Xen {
		dev.Emulator = g.DeviceModel.Override
	}
	for i, k := range g.Disks {
		disk, err := renderDisk(g, k, hv)
		if err != nil {
			return fmt.Errorf("disks[%d]: %w", i, err)
		}
		dev.Disks = append(dev.Disks, disk)
	}
	for i, n := range g.NICs {
		nic, err := renderNIC(g, n, hv)
		if err != nil {
			return fmt.Errorf("nics[%d]: %w", i, err)
		}
		dev.Interfaces = append(dev.Interfaces, nic)
	}
	return nil
}

// renderChardevs writes serial ports, the guest agent's channel (KVM)
// and parallel ports.
func renderChardevs(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) error {
	dev := d.Devices
	for i, s := range g.Serial {
		src, proto, err := charDev(s)
		if err != nil {
			return errf(g, "serial[%d]: %v", i, err)
		}
		dev.Serials = append(dev.Serials, libvirtxml.DomainSerial{Source: src, Protocol: proto, Target: &libvirtxml.DomainSerialTarget{Port: uintp(uint(i))}})
	}
	if g.HasGuestAgent() && hv == KVM {
		// libvirt picks the socket's path (under its own state
		// directory) and connects to the agent itself; strata reaches
		// it through libvirt. libxl has no virtio-serial: for Xen the
		// flag renders nothing.
		dev.Channels = append(dev.Channels, libvirtxml.DomainChannel{
			Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{}},
			Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: qga.ChannelName}},
		})
	}
	for i, s := range g.Parallel {
		src, proto, err := charDev(s)
		if err != nil {
			return errf(g, "parallel[%d]: %v", i, err)
		}
		dev.Parallels = append(dev.Parallels, libvirtxml.DomainParallel{Source: src, Protocol: proto, Target: &libvirtxml.DomainParallelTarget{Port: uintp(uint(i))}})
	}
	return nil
}

// renderUSB writes USB input devices and passed-through host devices.
func renderUSB(d *libvirtxml.Domain, g *hvm.Guest, _ Hypervisor) error {
	dev := d.Devices
	for _, u := range g.USBDevices {
		switch {
		case u == "tablet" || u == "mouse" || u == "keyboard":
			dev.Inputs = append(dev.Inputs, libvirtxml.DomainInput{Type: u, Bus: "usb"})
		case strings.HasPrefix(u, "host:"):
			parts := strings.Split(u, ":")
			if len(parts) != 3 {
				return errf(g, "usb device %q is not host:VENDOR:PRODUCT", u)
			}
			dev.Hostdevs = append(dev.Hostdevs, libvirtxml.DomainHostdev{SubsysUSB: &libvirtxml.DomainHostdevSubsysUSB{Source: &libvirtxml.DomainHostdevSubsysUSBSource{
				Vendor:  &libvirtxml.DomainHostDevProductVendorID{ID: "0x" + parts[1]},
				Product: &libvirtxml.DomainHostDevProductVendorID{ID: "0x" + parts[2]},
			}}})
		default:
			return notSupported(g, "usb device %q has no libvirt equivalent", u)
		}
	}
	return nil
}

// vgaModels are xl's vga names as libvirt's video models.
var vgaModels = map[string]string{"stdvga": "vga", "cirrus": "cirrus", "qxl": "qxl", "none": "none"}

// renderSoundVideo writes sound cards (xl's hda is libvirt's ich6) and
// the video card, when one is named or sized: by default cirrus for Xen,
// vga for KVM.
func renderSoundVideo(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) error {
	dev := d.Devices
	for _, s := range g.SoundCards() {
		model := s
		if s == "hda" {
			model = "ich6"
		}
		dev.Sounds = append(dev.Sounds, libvirtxml.DomainSound{Model: model})
	}
	v := g.Display.VGA
	if v == "" && g.Display.VideoRAM == nil {
		return nil
	}
	model := vgaModels[v]
	if model == "" {
		model = "cirrus"
		if hv == KVM {
			model = "vga"
		}
	}
	video := libvirtxml.DomainVideo{Model: libvirtxml.DomainVideoModel{Type: model}}
	if g.Display.VideoRAM != nil && model != "none" {
		video.Model.VRam = uint(*g.Display.VideoRAM) * 1024
	}
	dev.Videos = append(dev.Videos, video)
	return nil
}

// renderPCI writes passed-through PCI functions, managed by libvirt.
func renderPCI(d *libvirtxml.Domain, g *hvm.Guest, _ Hypervisor) error {
	for i, p := range g.PCI {
		addr, err := pciAddress(p)
		if err != nil {
			return errf(g, "pci[%d]: %v", i, err)
		}
		d.Devices.Hostdevs = append(d.Devices.Hostdevs, libvirtxml.DomainHostdev{Managed: "yes", SubsysPCI: &libvirtxml.DomainHostdevSubsysPCI{
			Source: &libvirtxml.DomainHostdevSubsysPCISource{Address: addr},
		}})
	}
	return nil
}

func uintp(u uint) *uint { return &u }

func renderOS(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) error {
	os := &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "xenfv", Type: "hvm"}}
	if hv == KVM {
		os.Type.Machine = "pc"
	}
	switch {
	case g.Firmware == "ovmf":
		path := g.FirmwarePath
		if path == "" {
			path = XenOVMF
			if hv == KVM {
				path = KVMOVMF
			}
		}
		os.Loader = &libvirtxml.DomainLoader{Path: path, Readonly: "yes", Type: "pflash"}
	case hv == Xen:
		path := g.FirmwarePath
		if path == "" {
			path = XenHVMLoader
		}
		os.Loader = &libvirtxml.DomainLoader{Path: path, Type: "rom"}
	case g.FirmwarePath != "":
		os.Loader = &libvirtxml.DomainLoader{Path: g.FirmwarePath, Type: "rom"}
	}
	if b := g.DirectBoot; b != nil {
		os.Kernel, os.Initrd, os.Cmdline = b.Kernel, b.Ramdisk, b.Cmdline
	}
	if g.DirectBoot == nil || g.Boot != "" {
		for _, c := range g.EffectiveBoot() {
			dev := map[rune]string{'c': "hd", 'd': "cdrom", 'n': "network"}[c]
			if dev == "" {
				return errf(g, "boot: %q is not a boot order of c, d and n", g.Boot)
			}
			os.BootDevices = append(os.BootDevices, libvirtxml.DomainBootDevice{Dev: dev})
		}
	}
	d.OS = os
	return nil
}

func renderFeatures(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) {
	f := g.Features
	fl := &libvirtxml.DomainFeatureList{}
	if g.EffectiveACPI() {
		fl.ACPI = &libvirtxml.DomainFeature{}
	}
	if g.EffectiveAPIC() {
		fl.APIC = &libvirtxml.DomainFeatureAPIC{}
	}
	if hvm.Val(f.PAE, true) {
		fl.PAE = &libvirtxml.DomainFeature{}
	}
	if hv == Xen && f.HAP != nil && !*f.HAP {
		fl.HAP = &libvirtxml.DomainFeatureState{State: "off"}
	}
	if v := f.Viridian; v != nil && v.Enabled {
		if hv == Xen {
			fl.Viridian = &libvirtxml.DomainFeature{}
		} else {
			fl.HyperV = hyperV(v)
		}
	}
	d.Features = fl
	d.Clock = renderClock(g, hv)
}

// hyperV gives a KVM guest the Hyper-V enlightenments Windows uses, as
// virt-install does for Windows: relaxed timing, the virtual APIC and
// spinlock retries 8191 (Xen's base group), and for Xen's optional groups
// their KVM counterparts (freq: frequencies; stimer: synthetic timers,
// which need synic and vpindex; hcall_remote_tlb_flush and hcall_ipi:
// tlbflush and ipi, which need vpindex). A group Xen has and KVM has not
// adds nothing; "!group" removes one.
func hyperV(v *hvm.Viridian) *libvirtxml.DomainFeatureHyperV {
	on := func() *libvirtxml.DomainFeatureState { return &libvirtxml.DomainFeatureState{State: "on"} }
	h := &libvirtxml.DomainFeatureHyperV{
		Relaxed:   on(),
		VAPIC:     on(),
		Spinlocks: &libvirtxml.DomainFeatureHyperVSpinlocks{DomainFeatureState: libvirtxml.DomainFeatureState{State: "on"}, Retries: 8191},
	}
	for _, grp := range v.Groups {
		switch grp {
		case "freq", "all":
			h.Frequencies = on()
		}
		switch grp {
		case "stimer", "all":
			h.VPIndex, h.Synic = on(), on()
			h.STimer = &libvirtxml.DomainFeatureHyperVSTimer{DomainFeatureState: libvirtxml.DomainFeatureState{State: "on"}}
		}
		switch grp {
		case "hcall_remote_tlb_flush", "all":
			h.VPIndex, h.TLBFlush = on(), &libvirtxml.DomainFeatureHyperVTLBFlush{DomainFeatureState: libvirtxml.DomainFeatureState{State: "on"}}
		}
		switch grp {
		case "hcall_ipi", "all":
			h.VPIndex, h.IPI = on(), on()
		}
		switch grp {
		case "!base":
			h.Relaxed, h.VAPIC, h.Spinlocks = nil, nil, nil
		case "!apic_assist":
			h.VAPIC = nil
		case "!freq":
			h.Frequencies = nil
		}
	}
	return h
}

// renderClock writes the guest's RTC as libvirt's xen converter does
// (src/libxl/xen_common.c): localtime is offset='localtime', an
// rtc_timeoffset is offset='variable' with that adjustment on the basis
// of UTC or local time; a KVM Windows guest (viridian) gets the Hyper-V
// reference clock as virt-install gives it; hpet is a timer.
func renderClock(g *hvm.Guest, hv Hypervisor) *libvirtxml.DomainClock {
	c := &libvirtxml.DomainClock{Offset: "utc"}
	local := hvm.Val(g.Localtime, false)
	if local {
		c.Offset = "localtime"
	}
	if o := g.RTCTimeOffset; o != nil && *o != 0 {
		c.Offset, c.Basis, c.Adjustment = "variable", "utc", strconv.Itoa(*o)
		if local {
			c.Basis = "localtime"
		}
	}
	if v := g.Features.Viridian; hv == KVM && v != nil && v.Enabled {
		c.Timer = append(c.Timer, libvirtxml.DomainTimer{Name: "hypervclock", Present: "yes"})
	}
	if h := g.Features.HPET; h != nil {
		c.Timer = append(c.Timer, libvirtxml.DomainTimer{Name: "hpet", Present: map[bool]string{true: "yes", false: "no"}[*h]})
	}
	if c.Offset == "utc" && len(c.Timer) == 0 && g.Localtime == nil && g.RTCTimeOffset == nil {
		return nil // nothing said: libvirt's default (utc) as before
	}
	return c
}

func diskBus(vdev string, hv Hypervisor) (dev, bus string) {
	switch {
	case strings.HasPrefix(vdev, "hd"):
		return vdev, "ide"
	case strings.HasPrefix(vdev, "sd"):
		return vdev, "scsi"
	case hv == KVM:
		return "vd" + strings.TrimPrefix(vdev, "xvd"), "virtio"
	}
	return vdev, "xen"
}

func renderDisk(g *hvm.Guest, k hvm.Disk, hv Hypervisor) (libvirtxml.DomainDisk, error) {
	kind, src := k.Source()
	dev, bus := diskBus(k.Vdev, hv)
	disk := libvirtxml.DomainDisk{
		Device: "disk",
		Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: bus},
	}
	if k.CDROM {
		disk.Device = "cdrom"
	}
	if k.ReadOnly() {
		disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	}
	format := k.Format
	if format == "" {
		format = "raw"
	}
	driver := &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format}
	if hv == Xen && k.Backend == "tap" {
		driver.Name = "tap"
	}
	if hv == KVM && k.Discard != nil {
		driver.Discard = map[bool]string{true: "unmap", false: "ignore"}[*k.Discard]
	}
	switch kind {
	case hvm.SourceNone:
		if hv == Xen {
			driver.Name = "phy"
		}
		disk.Driver = driver
	case hvm.SourceDevice:
		if hv == Xen {
			driver.Name = "phy"
		}
		disk.Driver = driver
		disk.Source = &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: src}}
	case hvm.SourcePath:
		disk.Driver = driver
		if strings.HasPrefix(src, "rbd:") {
			net, err := rbdSource(src)
			if err != nil {
				return disk, errf(g, "disk %s: %v", k.Vdev, err)
			}
			disk.Source = &libvirtxml.DomainDiskSource{Network: net}
		} else {
			disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: src}}
		}
	default:
		return disk, hvm.Unresolved(g)
	}
	if k.Script != "" && hv == Xen {
		return disk, notSupported(g, "disk %s: block script %q has no libvirt equivalent", k.Vdev, k.Script)
	}
	return disk, nil
}

// rbdSource reads QEMU's rbd:pool/[namespace/]image[:opt=value...]
// filename (an rbd pool's volume path, storage/rbd.Path), where mon_host
// lists monitors separated by '\;' with ports after '\:'. conf= becomes
// libvirt's <config file> (librbd reads the monitors, and the keyring,
// from it); id= (a cephx client) becomes <auth username> with a
// reference to the libvirt secret of usage "client.ID secret", which the
// host's admin defines (virsh secret-define, secret-set-value): the key
// itself is never in the domain XML.
func rbdSource(s string) (*libvirtxml.DomainDiskSourceNetwork, error) {
	fields := splitUnescaped(strings.TrimPrefix(s, "rbd:"), ':')
	if len(fields) == 0 || fields[0] == "" {
		return nil, fmt.Errorf("%q names no rbd image", s)
	}
	net := &libvirtxml.DomainDiskSourceNetwork{Protocol: "rbd", Name: fields[0]}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "mon_host":
			for _, h := range strings.Split(v, `\;`) {
				h = strings.ReplaceAll(h, `\:`, ":")
				host, port, _ := strings.Cut(h, ":")
				net.Hosts = append(net.Hosts, libvirtxml.DomainDiskSourceHost{Name: host, Port: port})
			}
		case "conf":
			net.Config = &libvirtxml.DomainDiskSourceNetworkConfig{File: unescapeRBD(v)}
		case "id":
			id := unescapeRBD(v)
			net.Auth = &libvirtxml.DomainDiskAuth{Username: id, Secret: &libvirtxml.DomainDiskSecret{Type: "ceph", Usage: "client." + id + " secret"}}
		case "auth_supported":
		default:
			return nil, fmt.Errorf("rbd option %q has no libvirt equivalent", k)
		}
	}
	return net, nil
}

// unescapeRBD undoes QEMU's backslash escapes in an rbd option's value.
func unescapeRBD(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// splitUnescaped splits s at sep except where sep follows a backslash.
func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func renderNIC(g *hvm.Guest, n hvm.NIC, hv Hypervisor) (libvirtxml.DomainInterface, error) {
	bridge := n.Bridge
	if bridge == "" {
		bridge = hvm.DefaultBridge
	}
	nic := libvirtxml.DomainInterface{}
	if strings.Contains(n.Script, "openvswitch") {
		br, vlan, err := ovsBridge(bridge)
		if err != nil {
			return nic, errf(g, "nic bridge %q: %v", bridge, err)
		}
		bridge = br
		nic.VLan = vlan
		nic.VirtualPort = &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{OpenVSwitch: &libvirtxml.DomainInterfaceVirtualPortParamsOpenVSwitch{}}}
	}
	nic.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: bridge}}
	if n.MAC != "" {
		nic.MAC = &libvirtxml.DomainInterfaceMAC{Address: strings.ToLower(n.MAC)}
	}
	model := n.Model
	if hv == Xen && n.Type == "vif" {
		model = "netfront"
	}
	if model != "" {
		nic.Model = &libvirtxml.DomainInterfaceModel{Type: model}
	}
	if n.Script != "" && hv == Xen {
		nic.Script = &libvirtxml.DomainInterfaceScript{Path: n.Script}
	}
	if n.VifName != "" {
		nic.Target = &libvirtxml.DomainInterfaceTarget{Dev: n.VifName}
	}
	if n.Rate != "" {
		kbs, err := RateKBps(n.Rate)
		if err != nil {
			return nic, errf(g, "nic rate: %v", err)
		}
		nic.Bandwidth = &libvirtxml.DomainInterfaceBandwidth{Outbound: &libvirtxml.DomainInterfaceBandwidthParams{Average: &kbs}}
	}
	if n.MTU != nil {
		nic.MTU = &libvirtxml.DomainInterfaceMTU{Size: uint(*n.MTU)}
	}
	if n.IP != "" {
		for ip := range strings.FieldsSeq(n.IP) {
			nic.IP = append(nic.IP, libvirtxml.DomainInterfaceIP{Address: ip})
		}
	}
	return nic, nil
}

// ovsBridge splits Xen's openvswitch bridge syntax: "br.TAG" for one VLAN,
// "br:T1:T2" for a trunk.
func ovsBridge(s string) (string, *libvirtxml.DomainInterfaceVLan, error) {
	tags := func(parts []string) ([]libvirtxml.DomainInterfaceVLanTag, error) {
		var out []libvirtxml.DomainInterfaceVLanTag
		for _, p := range parts {
			id, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("VLAN tag %q is not a number", p)
			}
			out = append(out, libvirtxml.DomainInterfaceVLanTag{ID: uint(id)})
		}
		return out, nil
	}
	if parts := strings.Split(s, ":"); len(parts) > 1 {
		t, err := tags(parts[1:])
		return parts[0], &libvirtxml.DomainInterfaceVLan{Trunk: "yes", Tags: t}, err
	}
	if br, tag, ok := strings.Cut(s, "."); ok {
		t, err := tags([]string{tag})
		return br, &libvirtxml.DomainInterfaceVLan{Tags: t}, err
	}
	return s, nil, nil
}

// RateKBps converts an xl vif rate ("10240KB/s", "1Gb/s@20ms") to the
// KiB per second libvirt's bandwidth average takes.
func RateKBps(rate string) (int, error) {
	r, _, _ := strings.Cut(rate, "@")
	if !strings.HasSuffix(r, "/s") {
		return 0, fmt.Errorf("rate %q does not end in /s", rate)
	}
	r = strings.TrimSuffix(r, "/s")
	bitsPer := strings.HasSuffix(r, "b")
	r = strings.TrimRight(r, "Bb")
	mult := 1.0
	switch {
	case strings.HasSuffix(r, "K"):
		mult = 1024
	case strings.HasSuffix(r, "M"):
		mult = 1024 * 1024
	case strings.HasSuffix(r, "G"):
		mult = 1024 * 1024 * 1024
	}
	r = strings.TrimRight(r, "KMG")
	n, err := strconv.ParseUint(r, 10, 40)
	if err != nil {
		return 0, fmt.Errorf("rate %q is not NUMBER[K|M|G]B/s", rate)
	}
	bytesPer := float64(n) * mult
	if bitsPer {
		bytesPer /= 8
	}
	kib := int(bytesPer / 1024)
	if kib < 1 {
		kib = 1
	}
	return kib, nil
}

func renderGraphics(d *libvirtxml.Domain, g *hvm.Guest) error {
	disp := g.Display
	dev := d.Devices
	if disp.VNCEnabled() {
		vnc := &libvirtxml.DomainGraphicVNC{Keymap: disp.Keymap, Passwd: disp.VNCPasswd.Value()}
		if disp.VNCDisplay != nil && !hvm.Val(disp.VNCUnused, false) {
			vnc.Port, vnc.AutoPort = 5900+*disp.VNCDisplay, "no"
		} else {
			vnc.Port, vnc.AutoPort = -1, "yes"
		}
		listen := disp.EffectiveVNCListen()
		vnc.Listen = listen
		vnc.Listeners = []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: listen}}}
		dev.Graphics = append(dev.Graphics, libvirtxml.DomainGraphic{VNC: vnc})
	}
	if hvm.Val(disp.SDL, false) {
		dev.Graphics = append(dev.Graphics, libvirtxml.DomainGraphic{SDL: &libvirtxml.DomainGraphicSDL{}})
	}
	if s := disp.Spice; s != nil && s.Enabled {
		sp := &libvirtxml.DomainGraphicSpice{Listen: s.Host, Passwd: s.Passwd.Value(), Keymap: disp.Keymap}
		if s.Port != nil || s.TLSPort != nil {
			sp.AutoPort = "no"
			sp.Port, sp.TLSPort = hvm.Val(s.Port, 0), hvm.Val(s.TLSPort, 0)
		} else {
			sp.Port, sp.AutoPort = -1, "yes"
		}
		if s.Host != "" {
			sp.Listeners = []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: s.Host}}}
		}
		if hvm.Val(s.AgentMouse, false) {
			sp.Mouse = &libvirtxml.DomainGraphicSpiceMouse{Mode: "client"}
		}
		if s.ClipboardSharing != nil {
			sp.ClipBoard = &libvirtxml.DomainGraphicSpiceClipBoard{CopyPaste: map[bool]string{true: "yes", false: "no"}[*s.ClipboardSharing]}
		}
		dev.Graphics = append(dev.Graphics, libvirtxml.DomainGraphic{Spice: sp})
	}
	return nil
}

// charDev converts an xl/QEMU character device spec to a libvirt source.
func charDev(s string) (*libvirtxml.DomainChardevSource, *libvirtxml.DomainChardevProtocol, error) {
	src := &libvirtxml.DomainChardevSource{}
	var proto *libvirtxml.DomainChardevProtocol
	rest, opts, _ := strings.Cut(s, ",")
	server := strings.Contains(","+opts+",", ",server")
	switch {
	case s == "pty":
		src.Pty = &libvirtxml.DomainChardevSourcePty{}
	case s == "null":
		src.Null = &libvirtxml.DomainChardevSourceNull{}
	case s == "vc":
		src.VC = &libvirtxml.DomainChardevSourceVC{}
	case s == "stdio":
		src.StdIO = &libvirtxml.DomainChardevSourceStdIO{}
	case strings.HasPrefix(s, "/dev/"):
		src.Dev = &libvirtxml.DomainChardevSourceDev{Path: s}
	case strings.HasPrefix(s, "file:"):
		src.File = &libvirtxml.DomainChardevSourceFile{Path: strings.TrimPrefix(s, "file:")}
	case strings.HasPrefix(s, "pipe:"):
		src.Pipe = &libvirtxml.DomainChardevSourcePipe{Path: strings.TrimPrefix(s, "pipe:")}
	case strings.HasPrefix(s, "tcp:"), strings.HasPrefix(s, "telnet:"):
		kind, addr, _ := strings.Cut(rest, ":")
		i := strings.LastIndexByte(addr, ':')
		if i < 0 {
			return nil, nil, fmt.Errorf("%q is not %s:HOST:PORT", s, kind)
		}
		mode := "connect"
		if server {
			mode = "bind"
		}
		src.TCP = &libvirtxml.DomainChardevSourceTCP{Mode: mode, Host: addr[:i], Service: addr[i+1:]}
		proto = &libvirtxml.DomainChardevProtocol{Type: "raw"}
		if kind == "telnet" {
			proto.Type = "telnet"
		}
	case strings.HasPrefix(s, "udp:"):
		conn, bind, _ := strings.Cut(strings.TrimPrefix(rest, "udp:"), "@")
		u := &libvirtxml.DomainChardevSourceUDP{}
		split := func(a string) (string, string) {
			i := strings.LastIndexByte(a, ':')
			if i < 0 {
				return "", a
			}
			return a[:i], a[i+1:]
		}
		u.ConnectHost, u.ConnectService = split(conn)
		if bind != "" {
			u.BindHost, u.BindService = split(bind)
		}
		src.UDP = u
	case strings.HasPrefix(s, "unix:"):
		mode := "connect"
		if server {
			mode = "bind"
		}
		src.UNIX = &libvirtxml.DomainChardevSourceUNIX{Mode: mode, Path: strings.TrimPrefix(rest, "unix:")}
	default:
		return nil, nil, fmt.Errorf("%q has no libvirt equivalent", s)
	}
	return src, proto, nil
}

// pciAddress reads "[DDDD:]BB:SS.F[@VSLOT][,opts]"; the virtual slot and
// options have no libvirt equivalent here and are dropped.
func pciAddress(s string) (*libvirtxml.DomainAddressPCI, error) {
	bdf, _, _ := strings.Cut(s, ",")
	bdf, _, _ = strings.Cut(bdf, "@")
	parts := strings.Split(bdf, ":")
	dom := "0"
	if len(parts) == 3 {
		dom, parts = parts[0], parts[1:]
	}
	if len(parts) != 2 {
		return nil, fmt.Errorf("%q is not [DOMAIN:]BUS:SLOT.FUNC", s)
	}
	slot, fn, ok := strings.Cut(parts[1], ".")
	if !ok || fn == "*" {
		return nil, fmt.Errorf("%q is not [DOMAIN:]BUS:SLOT.FUNC with one function", s)
	}
	var vals [4]uint
	for i, t := range []string{dom, parts[0], slot, fn} {
		v, err := strconv.ParseUint(t, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("%q is not [DOMAIN:]BUS:SLOT.FUNC in hex", s)
		}
		vals[i] = uint(v)
	}
	return &libvirtxml.DomainAddressPCI{Domain: &vals[0], Bus: &vals[1], Slot: &vals[2], Function: &vals[3]}, nil
}
