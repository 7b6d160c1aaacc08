package hvm

import (
	"maps"
	"slices"
)

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Clone returns a deep copy of g.
func (g *Guest) Clone() *Guest {
	if g == nil {
		return nil
	}
	c := *g
	c.Memory, c.MaxMem = clonePtr(g.Memory), clonePtr(g.MaxMem)
	c.VCPUs, c.MaxVCPUs = clonePtr(g.VCPUs), clonePtr(g.MaxVCPUs)
	f := &c.Features
	f.ACPI, f.APIC, f.PAE = clonePtr(f.ACPI), clonePtr(f.APIC), clonePtr(f.PAE)
	f.HAP, f.HPET, f.NX = clonePtr(f.HAP), clonePtr(f.HPET), clonePtr(f.NX)
	if f.Viridian != nil {
		v := *f.Viridian
		v.Groups = slices.Clone(v.Groups)
		f.Viridian = &v
	}
	c.DirectBoot = clonePtr(g.DirectBoot)
	c.Disks = slices.Clone(g.Disks)
	for i := range c.Disks {
		c.Disks[i].Discard = clonePtr(c.Disks[i].Discard)
		c.Disks[i].Options = slices.Clone(c.Disks[i].Options)
	}
	c.NICs = slices.Clone(g.NICs)
	for i := range c.NICs {
		c.NICs[i].MTU = clonePtr(c.NICs[i].MTU)
		c.NICs[i].Extra = maps.Clone(c.NICs[i].Extra)
	}
	d := &c.Display
	d.VNC, d.VNCDisplay, d.VNCUnused = clonePtr(d.VNC), clonePtr(d.VNCDisplay), clonePtr(d.VNCUnused)
	d.SDL, d.VideoRAM = clonePtr(d.SDL), clonePtr(d.VideoRAM)
	if d.Spice != nil {
		s := *d.Spice
		s.Port, s.TLSPort = clonePtr(s.Port), clonePtr(s.TLSPort)
		s.DisableTicketing, s.AgentMouse = clonePtr(s.DisableTicketing), clonePtr(s.AgentMouse)
		s.VDAgent, s.ClipboardSharing = clonePtr(s.VDAgent), clonePtr(s.ClipboardSharing)
		d.Spice = &s
	}
	c.Localtime, c.RTCTimeOffset = clonePtr(g.Localtime), clonePtr(g.RTCTimeOffset)
	c.USB = clonePtr(g.USB)
	c.USBDevices = slices.Clone(g.USBDevices)
	c.Serial = slices.Clone(g.Serial)
	c.Parallel = slices.Clone(g.Parallel)
	c.SoundHW = slices.Clone(g.SoundHW)
	c.PCI = slices.Clone(g.PCI)
	if g.Install != nil {
		in := *g.Install
		in.ACPI, in.APIC = clonePtr(in.ACPI), clonePtr(in.APIC)
		in.VCPUs, in.Memory = clonePtr(in.VCPUs), clonePtr(in.Memory)
		c.Install = &in
	}
	c.Extra = maps.Clone(g.Extra)
	return &c
}
