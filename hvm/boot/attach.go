package boot

import (
	"context"
	"strings"

	"github.com/strata-vm/strata/hvm"
)

// Attacher is a driver that can add disks and NICs to a running guest and
// remove them (Supports AttachDisk and AttachNIC say for which guests).
// Disks come resolved to host paths, as at start. A device is named by
// what the definition names it by: a disk by its vdev, a NIC by its MAC.
//
// Hot-plugged disks must sit on a bus the guest can take them on while it
// runs: xvdX (virtio under qemu and libvirt/KVM, a PV disk under Xen)
// everywhere; drivers refuse the others with the reason (IDE, hdX,
// cannot be hot-plugged at all).
type Attacher interface {
	AttachDisk(ctx context.Context, g *Guest, d hvm.Disk) error
	// DetachDisk removes disk vdev; the guest must let it go (an
	// unplug request it ignores ends in an error after a while, and
	// the disk stays).
	DetachDisk(ctx context.Context, g *Guest, vdev string) error
	AttachNIC(ctx context.Context, g *Guest, n hvm.NIC) error
	DetachNIC(ctx context.Context, g *Guest, mac string) error
}

// HotplugVdev reports whether a disk at vdev is on a bus every driver
// that attaches disks can hot-plug (xvdX).
func HotplugVdev(vdev string) bool {
	return strings.HasPrefix(vdev, "xvd") && hvm.VdevPattern.MatchString(vdev)
}
