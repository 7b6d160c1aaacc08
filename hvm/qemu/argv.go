// Package qemu turns an hvm guest into a qemu-system-x86_64 command line.
// Argv is a pure function: it reads no files and starts nothing, so the
// same guest always gives the same argv (a guest with rtc_timeoffset: the
// same argv for the same Options.Now); hvm/boot (or a test) runs it
// through storage/run.
package qemu

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
)

// Binary is the QEMU system emulator strata runs.
const Binary = "qemu-system-x86_64"

// DefaultOVMFCode is Debian's OVMF image (package ovmf).
const DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"

// Network modes for the guest's NICs.
const (
	NetBridge = "bridge" // -netdev bridge on the NIC's bridge (needs qemu-bridge-helper)
	NetUser   = "user"   // user-mode networking, for tests and hosts without bridges
	NetNone   = "none"   // no NICs at all
)

// Options are choices the guest definition does not make.
type Options struct {
	Binary string // default qemu-system-x86_64
	// Accel is "tcg" (default: works everywhere) or "kvm" (only where
	// /proc/cpuinfo shows vmx or svm).
	Accel string
	// Network is NetBridge (default), NetUser or NetNone.
	Network string
	// OVMFCode and OVMFVars are the UEFI firmware images for a guest with
	// firmware ovmf; OVMFCode defaults to the guest's firmware_path, then
	// DefaultOVMFCode. OVMFVars (writable, one per guest) is optional.
	OVMFCode string
	OVMFVars string
	// Audio is the -audiodev backend for sound cards (default "none").
	Audio string
	// QMP is a unix socket path for a QMP monitor (-qmp unix:PATH,
	// server=on,wait=off), through which whoever runs the argv sets the
	// VNC password (change-vnc-password); "" for none (hvm/boot adds its
	// own).
	QMP string
	// Bridges renames bridges for the host the argv runs on (a NIC on
	// xenbr0 goes onto br0 with {"xenbr0": "br0"}); see hvm.RemapBridges.
	Bridges map[string]string
	// Now is the host's time at start, for a guest with rtc_timeoffset
	// (its RTC starts at Now plus the offset, as libvirt computes it);
	// zero means the time of the call.
	Now time.Time
}

// nicModels maps xl NIC models to QEMU devices.
var nicModels = map[string]string{
	"rtl8139": "rtl8139", "e1000": "e1000", "e1000e": "e1000e", "ne2k_pci": "ne2k_pci",
	"pcnet": "pcnet", "i82559er": "i82559er", "vmxnet3": "vmxnet3",
	"virtio": "virtio-net-pci", "virtio-net": "virtio-net-pci", "virtio-net-pci": "virtio-net-pci",
}

// NICDevice returns the QEMU device of an xl NIC model ("" for the
// default), for the driver that hot-plugs NICs.
func NICDevice(model string) (string, bool) {
	if model == "" {
		model = hvm.DefaultNICModel
	}
	dev, ok := nicModels[model]
	return dev, ok
}

// soundDevices maps xl soundhw names to QEMU devices.
var soundDevices = map[string][]string{
	"sb16": {"sb16"}, "es1370": {"ES1370"}, "ac97": {"AC97"}, "adlib": {"adlib"},
	"gus": {"gus"}, "cs4231a": {"cs4231a"}, "hda": {"intel-hda", "hda-duplex"},
}

func bad(g *hvm.Guest, kind error, format string, args ...any) error {
	return storage.Errorf(kind, "guest %q: %s", g.Name, fmt.Sprintf(format, args...))
}

// escape doubles commas, which QEMU's option parser reads as separators.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// fileOpts is how a drive names its image: a file or device by its path;
// an RBD image (an rbd pool's volume, rbd:POOL/[NS/]IMAGE[:id=][:conf=])
// as QEMU's rbd block driver options (file.driver=rbd, as -blockdev
// driver=rbd takes them; Debian's qemu-block-extra provides the driver),
// so that no legacy filename parsing is involved. An rbd: filename with
// other options, written by hand, is passed as it is.
func fileOpts(src string) []string {
	if !strings.HasPrefix(src, "rbd:") {
		return []string{"file=" + escape(src)}
	}
	s, err := rbd.ParsePath(src)
	if err != nil || rbd.Path(s) != src {
		return []string{"file=" + escape(src)}
	}
	o := []string{"file.driver=rbd", "file.pool=" + escape(s.Pool)}
	if s.Namespace != "" {
		o = append(o, "file.namespace="+escape(s.Namespace))
	}
	o = append(o, "file.image="+escape(s.Image))
	if s.Conf != "" {
		o = append(o, "file.conf="+escape(s.Conf))
	}
	if s.ID != "" {
		o = append(o, "file.user="+escape(s.ID))
	}
	return o
}

// Argv returns the command line that boots g. Disks must name host paths
// or devices (hvm.ResolveDisks); call FillDefaults and Validate first.
func Argv(g *hvm.Guest, o Options) ([]string, error) {
	if err := hvm.Unresolved(g); err != nil {
		return nil, err
	}
	if g.Memory == nil {
		return nil, bad(g, storage.ErrInvalid, "memory: not set; give the memory size in MiB")
	}
	bin := o.Binary
	if bin == "" {
		bin = Binary
	}
	accel := o.Accel
	switch accel {
	case "":
		accel = "tcg"
	case "tcg", "kvm":
	default:
		return nil, bad(g, storage.ErrInvalid, "accelerator %q is not tcg or kvm", accel)
	}
	a := []string{bin, "-name", "guest=" + escape(g.Name)}
	if g.UUID != "" {
		a = append(a, "-uuid", g.UUID)
	}
	a = append(a, machineArgs(g, accel)...)
	if rtc := rtcBase(g, o.Now); rtc != "" {
		a = append(a, "-rtc", "base="+rtc)
	}
	a = append(a, "-m", strconv.Itoa(*g.Memory))
	a = append(a, "-smp", fmt.Sprintf("%d,maxcpus=%d", g.EffectiveVCPUs(), g.EffectiveMaxVCPUs()))
	a = append(a, firmwareArgs(g, o)...)
	a = append(a, "-boot", "order="+g.EffectiveBoot())
	// The devices, each family from its own function, in QEMU's usual
	// order; the first that cannot be expressed is the error.
	for _, devices := range []func() ([]string, error){
		func() ([]string, error) { return drives(g) },
		func() ([]string, error) { return netArgs(g.RemapBridges(o.Bridges), o.Network) },
		func() ([]string, error) { return display(g), nil },
		func() ([]string, error) { return usbArgs(g) },
		func() ([]string, error) { return charArgs(g), nil },
		func() ([]string, error) { return soundArgs(g, o.Audio) },
		func() ([]string, error) { return pciArgs(g), nil },
	} {
		more, err := devices()
		if err != nil {
			return nil, err
		}
		a = append(a, more...)
	}
	if o.QMP != "" {
		a = append(a, "-qmp", "unix:"+escape(o.QMP)+",server=on,wait=off")
	}
	return append(a, lifecycleArgs(g)...), nil
}

// machineArgs gives -machine and, when a feature is off or Hyper-V
// enlightenments apply (KVM only), -cpu.
func machineArgs(g *hvm.Guest, accel string) []string {
	machine := "pc,accel=" + accel
	if !g.EffectiveACPI() {
		machine += ",acpi=off"
	}
	if g.Features.HPET != nil {
		machine += ",hpet=" + onOff(*g.Features.HPET)
	}
	a := []string{"-machine", machine}
	var cpu []string
	if !hvm.Val(g.Features.PAE, true) {
		cpu = append(cpu, "-pae")
	}
	if !hvm.Val(g.Features.NX, true) {
		cpu = append(cpu, "-nx")
	}
	if !g.EffectiveAPIC() && g.EffectiveMaxVCPUs() == 1 {
		cpu = append(cpu, "-apic")
	}
	if v := g.Features.Viridian; v != nil && v.Enabled && accel == "kvm" {
		cpu = append(cpu, "hv-relaxed=on", "hv-vapic=on", "hv-spinlocks=0x1fff")
	}
	if len(cpu) > 0 {
		a = append(a, "-cpu", "qemu64,"+strings.Join(cpu, ","))
	}
	return a
}

// firmwareArgs gives OVMF's pflash drives (code from the options, the
// guest or the default; vars only when given) and a directly booted
// kernel.
func firmwareArgs(g *hvm.Guest, o Options) []string {
	var a []string
	if g.Firmware == "ovmf" {
		code := o.OVMFCode
		if code == "" {
			code = g.FirmwarePath
		}
		if code == "" {
			code = DefaultOVMFCode
		}
		a = append(a, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(code))
		if o.OVMFVars != "" {
			a = append(a, "-drive", "if=pflash,format=raw,unit=1,file="+escape(o.OVMFVars))
		}
	}
	if b := g.DirectBoot; b != nil {
		a = append(a, "-kernel", b.Kernel)
		if b.Ramdisk != "" {
			a = append(a, "-initrd", b.Ramdisk)
		}
		if b.Cmdline != "" {
			a = append(a, "-append", b.Cmdline)
		}
	}
	return a
}

// usbDevices are xl's usbdevice names as QEMU devices.
var usbDevices = map[string]string{"tablet": "usb-tablet", "mouse": "usb-mouse", "keyboard": "usb-kbd"}

// usbArgs gives -usb and one device per USB device (host:VENDOR:PRODUCT
// passes a host device through).
func usbArgs(g *hvm.Guest) ([]string, error) {
	var a []string
	if g.USB != nil && *g.USB || len(g.USBDevices) > 0 {
		a = append(a, "-usb")
	}
	for _, u := range g.USBDevices {
		if dev, ok := usbDevices[u]; ok {
			a = append(a, "-device", dev)
			continue
		}
		if !strings.HasPrefix(u, "host:") {
			return nil, bad(g, storage.ErrNotSupported, "usb device %q has no QEMU equivalent", u)
		}
		p := strings.Split(u, ":")
		if len(p) != 3 {
			return nil, bad(g, storage.ErrInvalid, "usb device %q is not host:VENDOR:PRODUCT", u)
		}
		a = append(a, "-device", "usb-host,vendorid=0x"+p[1]+",productid=0x"+p[2])
	}
	return a, nil
}

// charArgs gives the serial and parallel ports, xl's specs being QEMU's.
func charArgs(g *hvm.Guest) []string {
	var a []string
	for _, s := range g.Serial {
		a = append(a, "-serial", s)
	}
	for _, s := range g.Parallel {
		a = append(a, "-parallel", s)
	}
	return a
}

// soundArgs gives one audio backend (none unless given) shared by every
// sound card.
func soundArgs(g *hvm.Guest, backend string) ([]string, error) {
	if len(g.SoundHW) == 0 {
		return nil, nil
	}
	if backend == "" {
		backend = "none"
	}
	a := []string{"-audiodev", backend + ",id=snd0"}
	for _, s := range g.SoundCards() {
		devs, ok := soundDevices[s]
		if !ok {
			return nil, bad(g, storage.ErrNotSupported, "sound card %q has no QEMU device here; use one of sb16, es1370, ac97, hda, adlib, gus, cs4231a", s)
		}
		for _, d := range devs {
			if d == "intel-hda" {
				a = append(a, "-device", d)
			} else {
				a = append(a, "-device", d+",audiodev=snd0")
			}
		}
	}
	return a, nil
}

// pciArgs passes PCI functions through with VFIO; xl's options after
// ',' and its '@' slot are dropped, a missing domain is 0000.
func pciArgs(g *hvm.Guest) []string {
	var a []string
	for _, p := range g.PCI {
		bdf, _, _ := strings.Cut(p, ",")
		bdf, _, _ = strings.Cut(bdf, "@")
		if strings.Count(bdf, ":") == 1 {
			bdf = "0000:" + bdf
		}
		a = append(a, "-device", "vfio-pci,host="+bdf)
	}
	return a
}

// lifecycleArgs gives the flags that keep QEMU from rebooting or exiting
// where xl's on_reboot and on_poweroff say so.
func lifecycleArgs(g *hvm.Guest) []string {
	var a []string
	switch g.Lifecycle.OnReboot {
	case "destroy", "preserve", "coredump-destroy":
		a = append(a, "-no-reboot")
	}
	if g.Lifecycle.OnPoweroff == "preserve" {
		a = append(a, "-no-shutdown")
	}
	return a
}

// rtcBase is QEMU's -rtc base for the guest's clock: "" (UTC, QEMU's
// default), localtime, or with rtc_timeoffset the start date itself, now
// plus the offset (in local time with localtime), as libvirt's qemu
// driver computes a variable clock.
func rtcBase(g *hvm.Guest, now time.Time) string {
	local := hvm.Val(g.Localtime, false)
	off := hvm.Val(g.RTCTimeOffset, 0)
	if off == 0 {
		if local {
			return "localtime"
		}
		return ""
	}
	if now.IsZero() {
		now = time.Now()
	}
	t := now.UTC().Add(time.Duration(off) * time.Second)
	if local {
		_, zone := now.In(time.Local).Zone()
		t = t.Add(time.Duration(zone) * time.Second)
	}
	return t.Format("2006-01-02T15:04:05")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func drives(g *hvm.Guest) ([]string, error) {
	var a []string
	scsi := false
	for i, d := range g.Disks {
		kind, src := d.Source()
		media := "disk"
		if d.CDROM {
			media = "cdrom"
		}
		opts := []string{}
		if kind != hvm.SourceNone {
			format := d.Format
			if format == "" || kind == hvm.SourceDevice {
				format = "raw"
			}
			opts = append(opts, fileOpts(src)...)
			opts = append(opts, "format="+format)
		}
		opts = append(opts, "media="+media)
		if d.ReadOnly() && !d.CDROM {
			opts = append(opts, "readonly=on")
		}
		if d.Discard != nil && *d.Discard {
			opts = append(opts, "discard=unmap")
		}
		id := fmt.Sprintf("disk%d", i)
		switch v := d.Vdev; {
		case strings.HasPrefix(v, "hd"):
			idx := int(v[2] - 'a')
			if len(v) != 3 || idx > 3 {
				return nil, bad(g, storage.ErrNotSupported, "disk %s: QEMU's IDE has four devices, hda to hdd", v)
			}
			a = append(a, "-drive", strings.Join(append(opts, "if=ide", "index="+strconv.Itoa(idx)), ","))
		case strings.HasPrefix(v, "sd"):
			if !scsi {
				a = append(a, "-device", "lsi53c895a,id=scsi0")
				scsi = true
			}
			dev := "scsi-hd"
			if d.CDROM {
				dev = "scsi-cd"
			}
			a = append(a, "-drive", strings.Join(append(opts, "if=none", "id="+id), ","),
				"-device", dev+",bus=scsi0.0,drive="+id)
		default:
			if d.CDROM {
				a = append(a, "-drive", strings.Join(append(opts, "if=none", "id="+id), ","), "-device", "ide-cd,drive="+id)
			} else {
				a = append(a, "-drive", strings.Join(append(opts, "if=virtio"), ","))
			}
		}
	}
	return a, nil
}

func netArgs(g *hvm.Guest, mode string) ([]string, error) {
	if mode == "" {
		mode = NetBridge
	}
	if mode == NetNone || len(g.NICs) == 0 {
		return []string{"-nic", "none"}, nil
	}
	var a []string
	for i, n := range g.NICs {
		model := n.Model
		if model == "" {
			model = hvm.DefaultNICModel
		}
		dev, ok := nicModels[model]
		if !ok {
			return nil, bad(g, storage.ErrNotSupported, "nics[%d]: model %q is not a QEMU network card; use rtl8139, e1000, ne2k_pci, pcnet or virtio", i, model)
		}
		id := fmt.Sprintf("net%d", i)
		switch mode {
		case NetBridge:
			br := n.Bridge
			if br == "" {
				br = hvm.DefaultBridge
			}
			a = append(a, "-netdev", "bridge,id="+id+",br="+escape(br))
		case NetUser:
			a = append(a, "-netdev", "user,id="+id)
		default:
			return nil, bad(g, storage.ErrInvalid, "network mode %q is not bridge, user or none", mode)
		}
		d := dev + ",netdev=" + id
		if n.MAC != "" {
			d += ",mac=" + n.MAC
		}
		a = append(a, "-device", d)
	}
	return a, nil
}

func display(g *hvm.Guest) []string {
	d := g.Display
	var a []string
	switch {
	case d.VNCEnabled():
		listen := d.EffectiveVNCListen()
		if strings.Contains(listen, ":") {
			listen = "[" + listen + "]"
		}
		spec := listen + ":"
		if d.VNCDisplay != nil {
			spec += strconv.Itoa(*d.VNCDisplay)
		} else {
			spec += "0"
		}
		if d.VNCDisplay == nil || hvm.Val(d.VNCUnused, false) {
			spec += ",to=99"
		}
		if !d.VNCPasswd.IsZero() {
			// The password itself goes through QMP (change-vnc-password),
			// never on the command line where ps would show it.
			spec += ",password=on"
		}
		a = append(a, "-vnc", spec)
	case hvm.Val(d.SDL, false):
		a = append(a, "-display", "sdl")
	default:
		a = append(a, "-display", "none")
	}
	if d.Keymap != "" {
		a = append(a, "-k", d.Keymap)
	}
	if v := d.VGA; v != "" {
		a = append(a, "-vga", map[string]string{"stdvga": "std", "cirrus": "cirrus", "qxl": "qxl", "none": "none"}[v])
	}
	if d.VideoRAM != nil {
		dev := map[string]string{"stdvga": "VGA", "cirrus": "cirrus-vga", "qxl": "qxl-vga"}[d.VGA]
		if d.VGA == "" {
			dev = "VGA"
		}
		if dev != "" {
			a = append(a, "-global", fmt.Sprintf("%s.vgamem_mb=%d", dev, *d.VideoRAM))
		}
	}
	return a
}
