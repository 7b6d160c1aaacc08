package hvm

import (
	"crypto/rand"
	"fmt"
)

// FillDefaults sets every field that is not set and has a documented
// default (xl.cfg(5)): the schema version, a random UUID, one vCPU, ACPI,
// APIC, PAE and HAP on, boot order "cd", a VNC console on loopback with a
// free port, NIC bridge xenbr0 and model rtl8139, raw disks, and the
// lifecycle actions destroy/restart/destroy. Fields already set are kept,
// so FillDefaults is idempotent. It neither generates MAC addresses (see
// PinMACs) nor memory sizes.
func (g *Guest) FillDefaults() error {
	if g.APIVersion == "" {
		g.APIVersion = APIVersion
	}
	if g.UUID == "" {
		u, err := NewUUID()
		if err != nil {
			return err
		}
		g.UUID = u
	}
	if g.VCPUs == nil {
		g.VCPUs = Int(DefaultVCPUs)
	}
	f := &g.Features
	for _, p := range []**bool{&f.ACPI, &f.APIC, &f.PAE, &f.HAP} {
		if *p == nil {
			*p = Bool(true)
		}
	}
	if g.Boot == "" && g.DirectBoot == nil {
		g.Boot = DefaultBoot
	}
	d := &g.Display
	if d.VNC == nil {
		d.VNC = Bool(d.VNCEnabled())
	}
	if *d.VNC {
		if d.VNCListen == "" {
			d.VNCListen = DefaultVNCListen
		}
		if d.VNCUnused == nil && d.VNCDisplay == nil {
			d.VNCUnused = Bool(true)
		}
	}
	if sp := d.Spice; sp != nil && sp.Enabled && sp.Host == "" {
		// As VNC: the console is on loopback unless asked otherwise
		// (without a host, QEMU would listen on every interface).
		sp.Host = DefaultVNCListen
	}
	for i := range g.NICs {
		n := &g.NICs[i]
		if n.Bridge == "" {
			n.Bridge = DefaultBridge
		}
		if n.Model == "" {
			n.Model = DefaultNICModel
		}
	}
	for i := range g.Disks {
		k := &g.Disks[i]
		if kind, _ := k.Source(); k.Format == "" && kind != SourceNone {
			k.Format = "raw"
		}
	}
	l := &g.Lifecycle
	if l.OnPoweroff == "" {
		l.OnPoweroff = "destroy"
	}
	if l.OnReboot == "" {
		l.OnReboot = "restart"
	}
	if l.OnCrash == "" {
		l.OnCrash = "destroy"
	}
	return nil
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
