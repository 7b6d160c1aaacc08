package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/inuse"
)

// Hot attach and detach: a disk or NIC is added to (or removed from) a
// guest's definition, and, while the guest runs, live through its driver
// first. The definition always records the result, so the next start
// has the same devices; a live step that fails leaves the definition as
// it was, and a definition that cannot be recorded after a live step has
// the live step undone.

// AttachDisk adds disk d (a volume, an iso name or a file path; CDROM
// for a CD-ROM drive) to the guest called name and returns it as
// recorded. d.Vdev "" picks one: for a disk the first xvdX whose letter
// no disk uses (xvdX is the bus every driver hot-plugs: virtio under
// qemu and libvirt/KVM, a PV disk under Xen), for a CD-ROM drive the
// first free of hdc, hdd, hdb, then sdX. A running guest gets the disk
// live, after the checks a start makes (the image is there, a volume's
// image is the file strata registered, nobody else holds a writable one)
// and only where its driver can (else ErrNotSupported with the reason).
func (m *Manager) AttachDisk(ctx context.Context, name string, d hvm.Disk) (out hvm.Disk, live bool, err error) {
	if strings.ContainsRune(d.Path, '/') {
		abs, err := filepath.Abs(d.Path)
		if err != nil {
			return hvm.Disk{}, false, err
		}
		d.Path = abs
	}
	if kind, src := d.Source(); d.CDROM && src != "" && kind != hvm.SourceVolume {
		if err := m.checkMedia(ctx, "ISO", src); err != nil {
			return hvm.Disk{}, false, err
		}
	} else if kind == hvm.SourceNone && !d.CDROM {
		return hvm.Disk{}, false, storage.Errorf(storage.ErrInvalid, "guest %q: a disk to attach needs a volume or a file", name)
	}
	err = m.locked(ctx, name, func(l loaded) error {
		if d.Vdev == "" {
			d.Vdev = freeVdev(l.def, d.CDROM)
		}
		for _, k := range l.def.Disks {
			if k.Vdev == d.Vdev {
				return storage.Errorf(storage.ErrExists, "guest %q already has a disk at %s: give another --vdev, or detach that one first", name, d.Vdev)
			}
		}
		add := func(g *hvm.Guest) error { g.Disks = append(g.Disks, d); return nil }
		stored, resolved, err := m.Reg.Preview(ctx, name, add)
		if err != nil {
			return err
		}
		out = stored.Disks[len(stored.Disks)-1]
		rd := resolved.Disks[len(resolved.Disks)-1]
		live, err = m.liveChange(ctx, l, boot.AttachDisk, false,
			func(at boot.Attacher) error {
				if err := m.checkNewDisk(ctx, l, out, rd); err != nil {
					return err
				}
				err := at.AttachDisk(ctx, l.bg, rd)
				if err != nil && !errors.Is(err, storage.ErrInUse) {
					// Another guest (or program) may have taken the image
					// since the check (QEMU's image lock then refuses it):
					// the check again names the holder.
					if cerr := m.checkNewDisk(ctx, l, out, rd); errors.Is(cerr, storage.ErrInUse) {
						return cerr
					}
				}
				return err
			},
			func(at boot.Attacher) error { return at.DetachDisk(ctx, l.bg, out.Vdev) },
			func(g *hvm.Guest) error { g.Disks = append(g.Disks, out); return nil })
		return err
	})
	return out, live, err
}

// checkNewDisk makes the checks a start makes (checkDisks) for one disk
// about to be attached live: k as the definition names it, r resolved.
func (m *Manager) checkNewDisk(ctx context.Context, l loaded, k, r hvm.Disk) error {
	kind, name := k.Source()
	_, src := r.Source()
	if src == "" || strings.Contains(src, ":") && !strings.HasPrefix(src, "/") {
		return nil // an empty drive, a network source
	}
	what := fmt.Sprintf("disk %s (%s)", k.Vdev, src)
	if kind == hvm.SourceVolume || kind == hvm.SourceMedia {
		what = fmt.Sprintf("disk %s (%s %q, %s)", k.Vdev, map[hvm.SourceKind]string{hvm.SourceVolume: "volume", hvm.SourceMedia: "iso"}[kind], name, src)
	}
	if kind == hvm.SourceVolume {
		if err := m.verifyVolume(name); err != nil {
			return fmt.Errorf("guest %q: %w", l.def.Name, err)
		}
	}
	if _, err := os.Stat(src); err != nil {
		return storage.Errorf(storage.ErrNotFound, "guest %q: %s is missing (%v)", l.def.Name, what, errors.Unwrap(err))
	}
	if r.ReadOnly() {
		return nil
	}
	return m.St.InUse.CheckAll(ctx, []inuse.Image{{What: fmt.Sprintf("guest %q %s", l.def.Name, what), Path: src}})
}

// attacher returns the running guest's driver as an Attacher that can do
// f for it, or why not.
func (m *Manager) attacher(l loaded, cur boot.Status, f boot.Feature) (boot.Attacher, error) {
	d, err := m.Drivers.Get(cur.Driver)
	if err != nil {
		return nil, err
	}
	if err := d.Supports(l.bg.Def, f); err != nil {
		return nil, err
	}
	at, ok := d.(boot.Attacher)
	if !ok {
		return nil, storage.Errorf(storage.ErrNotSupported, "the %s driver cannot add or remove devices of a running guest", d.Name())
	}
	return at, nil
}

// freeVdev picks the vdev of a disk attached without one (AttachDisk).
func freeVdev(g *hvm.Guest, cdrom bool) string {
	used := map[string]bool{}
	letters := map[string]bool{} // hda, sda and xvda are one disk to Xen
	for _, k := range g.Disks {
		used[k.Vdev] = true
		for _, p := range []string{"xvd", "hd", "sd"} {
			if l, ok := strings.CutPrefix(k.Vdev, p); ok {
				letters[l] = true
				break
			}
		}
	}
	if cdrom {
		for _, v := range []string{"hdc", "hdd", "hdb", "hda"} {
			if !used[v] {
				return v
			}
		}
	}
	prefix := "xvd"
	if cdrom {
		prefix = "sd"
	}
	for c := 'a'; c <= 'z'; c++ {
		if !letters[string(c)] && !used[prefix+string(c)] {
			return prefix + string(c)
		}
	}
	return ""
}

// DetachDisk removes the disk (or CD-ROM drive) vdev from the guest
// called name and returns it as it was recorded; from a running guest
// live first, where its driver can and the guest lets it go.
func (m *Manager) DetachDisk(ctx context.Context, name, vdev string) (out hvm.Disk, live bool, err error) {
	err = m.locked(ctx, name, func(l loaded) error {
		i := slices.IndexFunc(l.def.Disks, func(k hvm.Disk) bool { return k.Vdev == vdev })
		if i < 0 {
			return storage.Errorf(storage.ErrNotFound, "guest %q has no disk %s", name, vdev)
		}
		out = l.def.Disks[i]
		remove := func(g *hvm.Guest) error {
			g.Disks = slices.DeleteFunc(g.Disks, func(k hvm.Disk) bool { return k.Vdev == vdev })
			return nil
		}
		if _, _, err := m.Reg.Preview(ctx, name, remove); err != nil {
			return err
		}
		live, err = m.liveChange(ctx, l, boot.AttachDisk, true,
			func(at boot.Attacher) error { return at.DetachDisk(ctx, l.bg, vdev) },
			func(at boot.Attacher) error { return at.AttachDisk(ctx, l.bg, l.bg.Def.Disks[i]) },
			remove)
		return err
	})
	return out, live, err
}

// AttachNIC adds NIC n to the guest called name and returns it as
// recorded (with the MAC the definition pins when n has none); a running
// guest gets it live first, where its driver can.
func (m *Manager) AttachNIC(ctx context.Context, name string, n hvm.NIC) (out hvm.NIC, live bool, err error) {
	err = m.locked(ctx, name, func(l loaded) error {
		stored, _, err := m.Reg.Preview(ctx, name, func(g *hvm.Guest) error { g.NICs = append(g.NICs, n); return nil })
		if err != nil {
			return err
		}
		out = stored.NICs[len(stored.NICs)-1]
		for _, k := range l.def.NICs {
			if strings.EqualFold(k.MAC, out.MAC) {
				return storage.Errorf(storage.ErrExists, "guest %q already has a NIC with MAC %s", name, out.MAC)
			}
		}
		live, err = m.liveChange(ctx, l, boot.AttachNIC, false,
			func(at boot.Attacher) error { return at.AttachNIC(ctx, l.bg, out) },
			func(at boot.Attacher) error { return at.DetachNIC(ctx, l.bg, out.MAC) },
			func(g *hvm.Guest) error { g.NICs = append(g.NICs, out); return nil })
		return err
	})
	return out, live, err
}

// DetachNIC removes the NIC with MAC address mac from the guest called
// name and returns it as it was recorded; from a running guest live
// first, where its driver can and the guest lets it go.
func (m *Manager) DetachNIC(ctx context.Context, name, mac string) (out hvm.NIC, live bool, err error) {
	err = m.locked(ctx, name, func(l loaded) error {
		i := slices.IndexFunc(l.def.NICs, func(n hvm.NIC) bool { return strings.EqualFold(n.MAC, mac) })
		if i < 0 {
			return storage.Errorf(storage.ErrNotFound, "guest %q has no NIC with MAC %s", name, mac)
		}
		out = l.def.NICs[i]
		remove := func(g *hvm.Guest) error {
			g.NICs = slices.DeleteFunc(g.NICs, func(n hvm.NIC) bool { return strings.EqualFold(n.MAC, mac) })
			return nil
		}
		live, err = m.liveChange(ctx, l, boot.AttachNIC, true,
			func(at boot.Attacher) error { return at.DetachNIC(ctx, l.bg, out.MAC) },
			func(at boot.Attacher) error { return at.AttachNIC(ctx, l.bg, out) },
			remove)
		return err
	})
	return out, live, err
}

// liveChange carries out one device change: through the running guest's
// driver first (do, where the driver can do f), then in the definition
// (change, always). A definition that cannot be changed gets the live step
// taken back (undo), so the two never disagree. With absentOK (a detach),
// a device the running guest does not have (added to the definition for
// the next start: do answers ErrNotFound) changes the definition only. It
// returns whether the running guest got the change.
func (m *Manager) liveChange(ctx context.Context, l loaded, f boot.Feature, absentOK bool, do, undo func(boot.Attacher) error, change func(*hvm.Guest) error) (bool, error) {
	cur, err := m.status(ctx, l)
	if err != nil {
		return false, err
	}
	var at boot.Attacher
	if cur.State.Live() {
		if at, err = m.attacher(l, cur, f); err != nil {
			return false, err
		}
		switch err := do(at); {
		case absentOK && errors.Is(err, storage.ErrNotFound):
			log.Info().Str("guest", l.def.Name).Err(err).Msg("not in the running guest: removed from the definition only")
			at = nil
		case err != nil:
			return false, err
		}
	}
	if _, _, err := m.Reg.Update(ctx, l.def.Name, change); err != nil {
		if at != nil {
			if uerr := undo(at); uerr != nil {
				log.Warn().Str("guest", l.def.Name).Str("change", string(f)).Err(uerr).Msg("the running guest got the change, its definition could not record it, and taking the change back failed: the next start differs from the running guest")
			}
		}
		return false, err
	}
	return at != nil, nil
}
