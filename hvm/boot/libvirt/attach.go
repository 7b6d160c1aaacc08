package libvirt

// Hot-plug through libvirt (boot.Attacher): the disk or NIC element is
// rendered as for a start (hvm/libvirt), attached to or detached from the
// live domain only (strata defines the domain again from its own
// definition at each start). libvirt sends QEMU's unplug request and
// waits a few seconds for the guest; a device still there after that is
// waited for here, up to UnplugTimeout or the caller's deadline.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	hvmlibvirt "github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/storage"
)

var _ boot.Attacher = (*Driver)(nil)

// DefaultUnplugTimeout is how long a detach waits for the guest to let a
// device go when Config.UnplugTimeout is not set.
const DefaultUnplugTimeout = 10 * time.Second

func supportsHotplug(g *hvm.Guest) error {
	if !g.EffectiveACPI() {
		return storage.Errorf(storage.ErrNotSupported, "guest %q has ACPI off: QEMU (under libvirt) hot-plugs PCI devices through ACPI; turn it on (strata guest set %s acpi=1) and start the guest again", g.Name, g.Name)
	}
	return nil
}

// renderOne renders g with k added (a disk) or n added (a NIC) and
// returns the element libvirt takes.
func renderOne(g *hvm.Guest, k *hvm.Disk, n *hvm.NIC) (string, error) {
	def := *g
	def.Disks = append([]hvm.Disk(nil), g.Disks...)
	def.NICs = append([]hvm.NIC(nil), g.NICs...)
	if k != nil {
		def.Disks = append(def.Disks, *k)
	}
	if n != nil {
		def.NICs = append(def.NICs, *n)
	}
	dx, err := hvmlibvirt.Domain(&def, hvmlibvirt.KVM)
	if err != nil {
		return "", err
	}
	if k != nil {
		return dx.Devices.Disks[len(dx.Devices.Disks)-1].Marshal()
	}
	return dx.Devices.Interfaces[len(dx.Devices.Interfaces)-1].Marshal()
}

// AttachDisk implements boot.Attacher. IDE (hdX) cannot be hot-plugged;
// xvdX is a virtio disk (the guest's vdX), sdX a SCSI one.
func (d *Driver) AttachDisk(ctx context.Context, g *boot.Guest, k hvm.Disk) error {
	if err := d.Supports(g.Def, boot.AttachDisk); err != nil {
		return err
	}
	if strings.HasPrefix(k.Vdev, "hd") {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: disk %s: IDE disks cannot be hot-plugged; use xvdX (virtio) or sdX (SCSI), or add it while the guest is stopped", g.Def.Name, k.Vdev)
	}
	x, err := renderOne(g.Def, &k, nil)
	if err != nil {
		return err
	}
	_, src := k.Source()
	before := map[string][2]int{}
	if k.ReadOnly() {
		before = owners(&boot.Guest{Def: &hvm.Guest{Disks: []hvm.Disk{k}}})
	}
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, _ lv.DomainState) error {
		if err := c.DomainAttachDeviceFlags(dm, x, uint32(lv.DomainDeviceModifyLive)); err != nil {
			return storage.Errorf(storage.ErrPrecondition, "libvirt: attach disk %s (%s) to domain %q: %w%s", k.Vdev, src, dm.Name, err, permissionHint(err, g.Def))
		}
		if k.ReadOnly() {
			d.lendMore(c, g, dm, before)
		}
		return nil
	})
}

// lendMore adds what libvirt lent for a disk attached read-only to the
// files given back when the guest stops.
func (d *Driver) lendMore(c *conn, g *boot.Guest, dm lv.Domain, before map[string][2]int) {
	rs, err := g.Run.ReadState()
	if err != nil || rs == nil {
		return
	}
	lx, err := liveXML(c, dm)
	if err != nil {
		return
	}
	var had []lentFile
	if s := rs.Extra[extraLent]; s != "" {
		json.Unmarshal([]byte(s), &had)
	}
	for _, l := range lent(lx, before) {
		if _, ok := before[l.Path]; ok {
			had = append(had, l)
		}
	}
	if rs.Extra == nil {
		rs.Extra = map[string]string{}
	}
	b, err := json.Marshal(had)
	if err != nil {
		return
	}
	rs.Extra[extraLent] = string(b)
	if uid, gid, ok := imageLabel(lx); ok {
		rs.Extra[extraLabel] = fmt.Sprintf("%d:%d", uid, gid)
	}
	g.Run.WriteState(*rs)
}

// DetachDisk implements boot.Attacher: the disk's element as the live
// domain has it, detached, and waited for.
func (d *Driver) DetachDisk(ctx context.Context, g *boot.Guest, vdev string) error {
	if err := d.Supports(g.Def, boot.AttachDisk); err != nil {
		return err
	}
	dev, _ := hvmlibvirtTarget(vdev)
	return d.detach(ctx, g, "disk "+vdev, func(x *libvirtxml.Domain) (string, error) {
		for _, k := range x.Devices.Disks {
			if k.Target != nil && k.Target.Dev == dev {
				return k.Marshal()
			}
		}
		return "", nil
	})
}

// hvmlibvirtTarget is the target dev libvirt gives a vdev under KVM.
func hvmlibvirtTarget(vdev string) (string, bool) {
	if v, ok := strings.CutPrefix(vdev, "xvd"); ok {
		return "vd" + v, true
	}
	return vdev, false
}

// AttachNIC implements boot.Attacher.
func (d *Driver) AttachNIC(ctx context.Context, g *boot.Guest, n hvm.NIC) error {
	if err := d.Supports(g.Def, boot.AttachNIC); err != nil {
		return err
	}
	x, err := renderOne(g.Def, nil, &n)
	if err != nil {
		return err
	}
	return d.onRunning(ctx, g, func(c *conn, dm lv.Domain, _ lv.DomainState) error {
		if err := c.DomainAttachDeviceFlags(dm, x, uint32(lv.DomainDeviceModifyLive)); err != nil {
			return storage.Errorf(storage.ErrPrecondition, "libvirt: attach NIC %s to domain %q: %w", n.MAC, dm.Name, err)
		}
		return nil
	})
}

// DetachNIC implements boot.Attacher.
func (d *Driver) DetachNIC(ctx context.Context, g *boot.Guest, mac string) error {
	if err := d.Supports(g.Def, boot.AttachNIC); err != nil {
		return err
	}
	return d.detach(ctx, g, "NIC "+mac, func(x *libvirtxml.Domain) (string, error) {
		for _, n := range x.Devices.Interfaces {
			if n.MAC != nil && strings.EqualFold(n.MAC.Address, mac) {
				return n.Marshal()
			}
		}
		return "", nil
	})
}

// detach finds a device in the live domain (find returns its element, ""
// when it has none), detaches it and waits until it is gone.
func (d *Driver) detach(ctx context.Context, g *boot.Guest, what string, find func(*libvirtxml.Domain) (string, error)) error {
	timeout := d.cfg.UnplugTimeout
	if timeout <= 0 {
		timeout = DefaultUnplugTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl)-50*time.Millisecond, 0)
	}
	deadline := time.Now().Add(timeout)
	return d.onRunning(context.WithoutCancel(ctx), g, func(c *conn, dm lv.Domain, _ lv.DomainState) error {
		lx, err := liveXML(c, dm)
		if err != nil {
			return err
		}
		x, err := find(lx)
		if err != nil {
			return err
		}
		if x == "" {
			return storage.Errorf(storage.ErrNotFound, "guest %q: libvirt domain %q has no %s", g.Def.Name, dm.Name, what)
		}
		if err := c.DomainDetachDeviceFlags(dm, x, uint32(lv.DomainDeviceModifyLive)); err != nil {
			return storage.Errorf(storage.ErrPrecondition, "libvirt: detach %s from domain %q: %w", what, dm.Name, err)
		}
		for {
			lx, err := liveXML(c, dm)
			if err != nil {
				return err
			}
			if x, err := find(lx); err == nil && x == "" {
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return storage.Errorf(storage.ErrPrecondition, "guest %q did not let %s go within %s: a hot-unplug needs the guest's consent (ACPI PCI hot-plug), which a guest still booting, one without an OS that supports it, or one that ignores it does not give; the device stays attached and the definition unchanged; try again once the guest runs such an OS, or stop the guest and detach it then", g.Def.Name, what, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
