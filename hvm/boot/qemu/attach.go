package qemu

// Hot-plug over QMP (boot.Attacher).
//
// Disks: only xvdX, which the qemu driver renders as virtio-blk-pci on
// the pc machine's PCI bus, where QEMU hot-plugs through ACPI (a guest
// with acpi off has no hot-plug). IDE (hdX) cannot be hot-plugged at
// all, and the LSI SCSI controller behind sdX does not tell the guest
// about a new disk. A hot-plugged disk is two block nodes and a device,
// all named after its vdev so that a later detach finds them again:
//
//	strata-VDEV-file   the protocol node (file or host_device)
//	strata-VDEV        the format node (raw, qcow2, ...)
//	strata-VDEV        the virtio-blk-pci device (qdev id)
//
// Detach is a request the guest must grant (ACPI eject): device_del,
// then DEVICE_DELETED once the guest let go, then blockdev-del of both
// nodes, retried while QEMU still calls them in use. A guest that does
// not answer (no OS yet, a boot sector, no ACPI hot-plug support) keeps
// the disk, and Detach fails after UnplugTimeout saying so; QEMU keeps
// the request, and a later detach finishes what the guest granted since.
//
// Disks that were there at start are -drive if=virtio devices without a
// stable id: the driver detaches live only the disks it attached live.
//
// NICs: netdev_add (the start's network mode: bridge or user) and
// device_add of the model's PCI card, id strata-net-MAC (colons out);
// detach finds the card by its MAC (any card, also those from start) and
// removes it, then its netdev.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage"
)

var _ boot.Attacher = (*Driver)(nil)

// DefaultUnplugTimeout is how long a detach waits for the guest to let a
// device go when Config.UnplugTimeout is not set.
const DefaultUnplugTimeout = 10 * time.Second

func (d *Driver) unplugTimeout() time.Duration {
	if d.cfg.UnplugTimeout > 0 {
		return d.cfg.UnplugTimeout
	}
	return DefaultUnplugTimeout
}

func supportsHotplug(g *hvm.Guest, f boot.Feature) error {
	if !g.EffectiveACPI() {
		return storage.Errorf(storage.ErrNotSupported, "guest %q has ACPI off: QEMU's pc machine hot-plugs %s through ACPI; turn it on (strata guest set %s acpi=1) and start the guest again", g.Name, map[boot.Feature]string{boot.AttachDisk: "disks", boot.AttachNIC: "NICs"}[f], g.Name)
	}
	return nil
}

// Node and device names of a hot-plugged disk or NIC.
func diskNode(vdev string) string { return "strata-" + vdev }
func fileNode(vdev string) string { return "strata-" + vdev + "-file" }
func nicID(mac string) string {
	return "strata-net-" + strings.ToLower(strings.ReplaceAll(mac, ":", ""))
}

// attachSession is a QMP connection to a running guest, with the
// runtime directory's lock held (no start, stop or other attach meanwhile).
type attachSession struct {
	c       *qmp.Client
	unlock  func()
	timeout time.Duration // for the guest to grant an unplug
}

func (s *attachSession) close() { s.c.Close(); s.unlock() }

func (d *Driver) session(ctx context.Context, g *boot.Guest) (*attachSession, error) {
	st, unlock, err := d.lockLive(ctx, g)
	if err != nil {
		return nil, err
	}
	if st == nil {
		unlock()
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q is not running", g.Def.Name)
	}
	c, err := dialQMP(ctx, g.Run)
	if err != nil {
		unlock()
		return nil, err
	}
	return &attachSession{c: c, unlock: unlock, timeout: d.unplugTimeout()}, nil
}

func qmpCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

// AttachDisk implements boot.Attacher: blockdev-add (protocol, then
// format node) and device_add virtio-blk-pci; what was added is removed
// again when a later step fails.
func (d *Driver) AttachDisk(ctx context.Context, g *boot.Guest, k hvm.Disk) error {
	if err := d.Supports(g.Def, boot.AttachDisk); err != nil {
		return err
	}
	if k.CDROM {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: the qemu driver cannot hot-plug a CD-ROM drive (virtio disks have no removable medium): add the drive while the guest is stopped, or change the disc of an existing drive (strata guest insert)", g.Def.Name)
	}
	if !boot.HotplugVdev(k.Vdev) {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: disk %s: the qemu driver hot-plugs disks only at xvdX (virtio): IDE (hdX) cannot be hot-plugged and its SCSI controller (sdX) does not announce new disks; use a free xvdX, or add it while the guest is stopped", g.Def.Name, k.Vdev)
	}
	kind, src := k.Source()
	if kind != hvm.SourcePath && kind != hvm.SourceDevice {
		return storage.Errorf(storage.ErrInvalid, "guest %q: disk %s: give a host path (resolve the volume first)", g.Def.Name, k.Vdev)
	}
	if strings.Contains(src, ":") && !strings.HasPrefix(src, "/") {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: disk %s: the qemu driver hot-plugs only files and block devices, not %s", g.Def.Name, k.Vdev, src)
	}
	format := k.Format
	if format == "" || kind == hvm.SourceDevice {
		format = "raw"
	}
	s, err := d.session(ctx, g)
	if err != nil {
		return err
	}
	defer s.close()
	qctx, cancel := qmpCtx(ctx)
	defer cancel()
	node, file := diskNode(k.Vdev), fileNode(k.Vdev)
	ro := k.ReadOnly()
	proto := map[string]any{"driver": "file", "node-name": file, "filename": src, "read-only": ro}
	if kind == hvm.SourceDevice {
		proto["driver"] = "host_device"
	}
	if k.Discard != nil && *k.Discard {
		proto["discard"] = "unmap"
	}
	fail := func(step string, err error) error {
		return storage.Errorf(storage.ErrPrecondition, "guest %q: attach disk %s (%s): %s: %w", g.Def.Name, k.Vdev, src, step, err)
	}
	// A strata killed in the middle of an attach may have left this
	// vdev's nodes without their device: they hold the image and block
	// the names. Without the device they are nobody's: removed first.
	if !s.hasDevice(qctx, node) {
		for _, n := range []string{node, file} {
			if _, err := s.c.Execute(qctx, "blockdev-del", map[string]string{"node-name": n}); err != nil {
				// Usually there is none; one that stays makes the
				// blockdev-add below fail, and that is reported.
				log.Debug().Err(err).Str("node", n).Msg("no leftover node removed")
			}
		}
	}
	if _, err := s.c.Execute(qctx, "blockdev-add", proto); err != nil {
		return fail("open the image", err)
	}
	if _, err := s.c.Execute(qctx, "blockdev-add", map[string]any{"driver": format, "node-name": node, "file": file, "read-only": ro}); err != nil {
		s.deleteNodes(qctx, file)
		return fail("open it as "+format, err)
	}
	if _, err := s.c.Execute(qctx, "device_add", map[string]any{"driver": "virtio-blk-pci", "id": node, "drive": node}); err != nil {
		s.deleteNodes(qctx, node, file)
		return fail("add the virtio disk", err)
	}
	editStarted(g.Run, func(st *started) { st.Disks = append(st.Disks, src) })
	return nil
}

// deleteNodes removes block nodes, each retried for a while as long as
// QEMU says it is in use (a device just unplugged may hold it a moment).
func (s *attachSession) deleteNodes(ctx context.Context, nodes ...string) error {
	var errs []error
	for _, n := range nodes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := s.c.Execute(ctx, "blockdev-del", map[string]string{"node-name": n})
			if err == nil || !inUse(err) || time.Now().After(deadline) {
				if err != nil {
					errs = append(errs, err)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

func inUse(err error) bool {
	var qe *qmp.Error
	return errors.As(err, &qe) && (strings.Contains(qe.Desc, "in use") || strings.Contains(qe.Desc, "busy"))
}

// DetachDisk implements boot.Attacher: device_del, DEVICE_DELETED (the
// guest's ACPI eject), blockdev-del of both nodes.
func (d *Driver) DetachDisk(ctx context.Context, g *boot.Guest, vdev string) error {
	if err := d.Supports(g.Def, boot.AttachDisk); err != nil {
		return err
	}
	if !boot.HotplugVdev(vdev) {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: disk %s: the qemu driver detaches live only the xvdX disks it attached live; stop the guest to remove it", g.Def.Name, vdev)
	}
	s, err := d.session(ctx, g)
	if err != nil {
		return err
	}
	defer s.close()
	qctx, cancel := qmpCtx(ctx)
	defer cancel()
	node := diskNode(vdev)
	path, err := s.nodeFile(qctx, node)
	if err != nil {
		return err
	}
	if path == "" {
		// Not attached live: there at start, or not in the running
		// guest at all (added to the definition for the next start).
		st, _ := readStarted(g.Run)
		for _, k := range g.Def.Disks {
			if _, src := k.Source(); k.Vdev == vdev && st != nil && slices.Contains(st.Disks, src) {
				return storage.Errorf(storage.ErrNotSupported, "guest %q: disk %s was there when the guest started: the qemu driver detaches live only what it attached live; stop the guest to remove it", g.Def.Name, vdev)
			}
		}
		return storage.Errorf(storage.ErrNotFound, "guest %q: the running guest has no disk %s", g.Def.Name, vdev)
	}
	if err := s.unplug(ctx, g, node, "disk "+vdev); err != nil {
		return err
	}
	// The guest let the disk go: what is left is QEMU's, finished even
	// when the caller's time is up.
	cctx, ccancel := qmpCtx(context.WithoutCancel(ctx))
	defer ccancel()
	if err := s.deleteNodes(cctx, node, fileNode(vdev)); err != nil {
		return storage.Errorf(storage.ErrBusy, "guest %q: disk %s is unplugged but QEMU still holds its image: %w", g.Def.Name, vdev, err)
	}
	editStarted(g.Run, func(st *started) {
		if i := slices.Index(st.Disks, path); i >= 0 {
			st.Disks = slices.Delete(st.Disks, i, i+1)
		}
	})
	return nil
}

// nodeFile returns the image file of block node name, "" when there is
// no such node.
func (s *attachSession) nodeFile(ctx context.Context, name string) (string, error) {
	r, err := s.c.Execute(ctx, "query-named-block-nodes", map[string]bool{"flat": true})
	if err != nil {
		return "", err
	}
	var nodes []struct {
		NodeName string `json:"node-name"`
		File     string `json:"file"`
	}
	if err := json.Unmarshal(r, &nodes); err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.NodeName == name {
			return n.File, nil
		}
	}
	return "", nil
}

// unplug asks the guest to let device id go and waits until QEMU says it
// is gone. An id QEMU no longer knows is gone already (a guest that
// granted an earlier request late).
func (s *attachSession) unplug(ctx context.Context, g *boot.Guest, id, what string) error {
	qctx, cancel := qmpCtx(ctx)
	defer cancel()
	_, err := s.c.Execute(qctx, "device_del", map[string]string{"id": id})
	var qe *qmp.Error
	switch {
	case err == nil:
	case errors.As(err, &qe) && qe.Class == "DeviceNotFound":
		return nil
	case errors.As(err, &qe) && strings.Contains(qe.Desc, "in the process of unplug"):
		// An earlier request still waits for the guest: wait with it.
	default:
		return storage.Errorf(storage.ErrPrecondition, "guest %q: detach %s: %w", g.Def.Name, what, err)
	}
	// The guest has UnplugTimeout, or less when the caller's context
	// ends sooner (detach --timeout).
	timeout := s.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl)-50*time.Millisecond, 0)
	}
	deadline := time.After(timeout)
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case ev, ok := <-s.c.Events():
			if !ok {
				return storage.Errorf(storage.ErrPrecondition, "guest %q: QEMU ended while %s was being detached", g.Def.Name, what)
			}
			if ev.Name == "DEVICE_DELETED" && deviceIs(ev.Data, id) {
				return nil
			}
		case <-poll.C:
			// Events may be missed (a reconnect); the device's absence
			// is the truth.
			if gone, err := s.deviceGone(qctx, id); err == nil && gone {
				return nil
			}
		case <-deadline:
			return storage.Errorf(storage.ErrPrecondition, "guest %q did not let %s go within %s: a hot-unplug needs the guest's consent (ACPI PCI hot-plug), which a guest still booting, one without an OS that supports it, or one that ignores it does not give; the device stays attached and the definition unchanged; try again once the guest runs such an OS, or stop the guest and detach it then", g.Def.Name, what, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func deviceIs(data json.RawMessage, id string) bool {
	var v struct {
		Device string `json:"device"`
		Path   string `json:"path"`
	}
	return json.Unmarshal(data, &v) == nil && (v.Device == id || v.Path == id)
}

// deviceGone reports whether no device has the qdev id (or QOM path) id.
func (s *attachSession) deviceGone(ctx context.Context, id string) (bool, error) {
	path := id
	if !strings.HasPrefix(id, "/") {
		path = "/machine/peripheral/" + id
	}
	_, err := s.c.Execute(ctx, "qom-list", map[string]string{"path": path})
	var qe *qmp.Error
	if errors.As(err, &qe) && qe.Class == "DeviceNotFound" {
		return true, nil
	}
	return false, err
}

// editStarted changes started.json (the disks the in-use check sees);
// the caller holds the runtime directory's lock. A failure only leaves
// the in-use view stale, never the guest: it is not an error.
func editStarted(rd *boot.RunDir, fn func(*started)) {
	st, err := readStarted(rd)
	if err != nil || st == nil {
		log.Debug().Err(err).Str("run_dir", rd.Dir).Msg("started.json not read: the in-use view of the guest's disks is stale until it stops")
		return
	}
	fn(st)
	if err := boot.WriteRuntimeJSON(rd.Path(startedFile), st); err != nil {
		log.Debug().Err(err).Str("run_dir", rd.Dir).Msg("started.json not updated: the in-use view of the guest's disks is stale until it stops")
	}
}

// AttachNIC implements boot.Attacher: netdev_add (the network mode the
// guest started with) and device_add of the NIC's card.
func (d *Driver) AttachNIC(ctx context.Context, g *boot.Guest, n hvm.NIC) error {
	if err := d.Supports(g.Def, boot.AttachNIC); err != nil {
		return err
	}
	if n.MAC == "" {
		return storage.Errorf(storage.ErrInvalid, "guest %q: a NIC to attach needs its MAC address (the definition pins one)", g.Def.Name)
	}
	dev, ok := qemuargv.NICDevice(n.Model)
	if !ok {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: NIC model %q is not a QEMU network card; use rtl8139, e1000, ne2k_pci, pcnet or virtio", g.Def.Name, n.Model)
	}
	mode := d.cfg.Network
	if st, _ := readStarted(g.Run); st != nil && st.Network != "" {
		mode = st.Network
	}
	if mode == "" {
		mode = qemuargv.NetBridge
	}
	id := nicID(n.MAC)
	netdev := map[string]any{"id": id}
	switch mode {
	case qemuargv.NetBridge:
		br := n.Bridge
		if br == "" {
			br = hvm.DefaultBridge
		}
		netdev["type"], netdev["br"] = "bridge", br
	case qemuargv.NetUser:
		netdev["type"] = "user"
	default:
		return storage.Errorf(storage.ErrNotSupported, "guest %q runs with network mode %q: it has no network to attach a NIC to; start it with --network user or bridge", g.Def.Name, mode)
	}
	s, err := d.session(ctx, g)
	if err != nil {
		return err
	}
	defer s.close()
	qctx, cancel := qmpCtx(ctx)
	defer cancel()
	if _, err := s.c.Execute(qctx, "netdev_add", netdev); err != nil {
		return storage.Errorf(storage.ErrPrecondition, "guest %q: attach NIC %s: add its %s network: %w", g.Def.Name, n.MAC, mode, err)
	}
	if _, err := s.c.Execute(qctx, "device_add", map[string]any{"driver": dev, "id": id, "netdev": id, "mac": strings.ToLower(n.MAC)}); err != nil {
		s.c.Execute(qctx, "netdev_del", map[string]string{"id": id})
		return storage.Errorf(storage.ErrPrecondition, "guest %q: attach NIC %s: add the %s card: %w", g.Def.Name, n.MAC, dev, err)
	}
	return nil
}

// DetachNIC implements boot.Attacher: the card with that MAC (attached
// live or there from start), device_del, DEVICE_DELETED, netdev_del.
func (d *Driver) DetachNIC(ctx context.Context, g *boot.Guest, mac string) error {
	if err := d.Supports(g.Def, boot.AttachNIC); err != nil {
		return err
	}
	s, err := d.session(ctx, g)
	if err != nil {
		return err
	}
	defer s.close()
	qctx, cancel := qmpCtx(ctx)
	defer cancel()
	path, netdev, err := s.nicByMAC(qctx, mac)
	if err != nil {
		return err
	}
	if path == "" {
		return storage.Errorf(storage.ErrNotFound, "guest %q has no NIC with MAC %s in its running QEMU", g.Def.Name, mac)
	}
	if err := s.unplug(ctx, g, path, "NIC "+mac); err != nil {
		return err
	}
	cctx, ccancel := qmpCtx(context.WithoutCancel(ctx))
	defer ccancel()
	if netdev != "" {
		if _, err := s.c.Execute(cctx, "netdev_del", map[string]string{"id": netdev}); err != nil {
			return storage.Errorf(storage.ErrBusy, "guest %q: NIC %s is unplugged but its network backend %s stays: %w", g.Def.Name, mac, netdev, err)
		}
	}
	return nil
}

// nicByMAC finds the card whose mac property is mac: its QOM path and
// the id of its netdev.
func (s *attachSession) nicByMAC(ctx context.Context, mac string) (path, netdev string, err error) {
	for _, parent := range []string{"/machine/peripheral", "/machine/peripheral-anon"} {
		r, err := s.c.Execute(ctx, "qom-list", map[string]string{"path": parent})
		if err != nil {
			return "", "", err
		}
		var props []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		}
		if err := json.Unmarshal(r, &props); err != nil {
			return "", "", err
		}
		for _, p := range props {
			if !strings.HasPrefix(p.Type, "child<") {
				continue
			}
			dev := parent + "/" + p.Name
			var m string
			if r, err := s.c.Execute(ctx, "qom-get", map[string]string{"path": dev, "property": "mac"}); err != nil || json.Unmarshal(r, &m) != nil {
				continue // not a NIC
			}
			if !strings.EqualFold(m, mac) {
				continue
			}
			var nd string
			if r, err := s.c.Execute(ctx, "qom-get", map[string]string{"path": dev, "property": "netdev"}); err == nil {
				json.Unmarshal(r, &nd)
			}
			return dev, nd, nil
		}
	}
	return "", "", nil
}

// hasDevice tells whether QEMU has a device with this id (the peripherals
// added with an id).
func (s *attachSession) hasDevice(ctx context.Context, id string) bool {
	raw, err := s.c.Execute(ctx, "qom-list", map[string]string{"path": "/machine/peripheral"})
	if err != nil {
		return true // unknown: leave the nodes alone
	}
	var props []struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &props) != nil {
		return true
	}
	for _, p := range props {
		if p.Name == id {
			return true
		}
	}
	return false
}
