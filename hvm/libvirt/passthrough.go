package libvirt

import (
	"github.com/strata-vm/strata/hvm"
	"libvirt.org/go/libvirtxml"
)

// renderPassthrough writes xl's passthrough (how Xen sets up the IOMMU
// for PCI passthrough) as libvirt's <features><xen><passthrough>: state
// on or off, with the mode xl names (sync_pt, share_pt); "enabled" lets
// Xen choose the mode and "default" says nothing. KVM has no such
// setting.
func renderPassthrough(d *libvirtxml.Domain, g *hvm.Guest, hv Hypervisor) {
	if hv != Xen || g.Passthrough == "" || g.Passthrough == "default" {
		return
	}
	pt := &libvirtxml.DomainFeatureXenPassthrough{State: "on"}
	switch g.Passthrough {
	case "disabled":
		pt.State = "off"
	case "sync_pt", "share_pt":
		pt.Mode = g.Passthrough
	}
	if d.Features == nil {
		d.Features = &libvirtxml.DomainFeatureList{}
	}
	d.Features.Xen = &libvirtxml.DomainFeatureXen{Passthrough: pt}
}
