package lifecycle

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
)

// ChangeMedia puts a disc (an iso name or the path of an ISO file) into a
// guest's CD-ROM drive, or ejects it when iso is "". vdev "" is the
// guest's first CD-ROM drive. A running guest gets the change live,
// through its driver (refused with the reason where the driver cannot);
// the definition always keeps it, so the next start has the same disc.
// Returns the drive changed.
func (m *Manager) ChangeMedia(ctx context.Context, name, vdev, iso string) (string, error) {
	if iso != "" {
		if err := m.checkMedia(ctx, "ISO", iso); err != nil {
			return "", err
		}
		if strings.ContainsRune(iso, '/') {
			abs, err := filepath.Abs(iso)
			if err != nil {
				return "", err
			}
			iso = abs
		}
	}
	err := m.locked(ctx, name, func(l loaded) error {
		i, err := cdromDrive(l.def, vdev)
		if err != nil {
			return err
		}
		vdev = l.def.Disks[i].Vdev
		cur, err := m.status(ctx, l)
		if err != nil {
			return err
		}
		if cur.State.Live() {
			path := iso
			if iso != "" && !strings.ContainsRune(iso, '/') {
				if err := m.St.Catalog.View(func(tx *catalog.Tx) (err error) { path, err = media.Resolve(tx, iso); return err }); err != nil {
					return err
				}
			}
			d, err := m.Drivers.Get(cur.Driver)
			if err != nil {
				return err
			}
			if err := d.Supports(l.bg.Def, boot.ChangeMedia); err != nil {
				return err
			}
			mc, ok := d.(boot.MediaChanger)
			if !ok {
				return storage.Errorf(storage.ErrNotSupported, "the %s driver cannot change media of a running guest", d.Name())
			}
			if err := mc.ChangeMedia(ctx, l.bg, vdev, path); err != nil {
				return err
			}
		}
		_, _, err = m.Reg.Update(ctx, name, func(g *hvm.Guest) error {
			j, err := cdromDrive(g, vdev)
			if err != nil {
				return err
			}
			k := &g.Disks[j]
			k.Volume, k.Media, k.Path, k.Device = "", "", "", ""
			switch {
			case iso == "":
			case strings.ContainsRune(iso, '/'):
				k.Path = iso
			default:
				k.Media = iso
			}
			return nil
		})
		if err != nil && cur.State.Live() {
			log.Warn().Str("guest", name).Err(err).Msg("the disc was changed in the running guest, but not in its definition: the next start has the old one")
		}
		return err
	})
	return vdev, err
}

// cdromDrive finds the CD-ROM drive vdev (the first one for "").
func cdromDrive(g *hvm.Guest, vdev string) (int, error) {
	for i, d := range g.Disks {
		if d.CDROM && (vdev == "" || d.Vdev == vdev) {
			return i, nil
		}
	}
	if vdev == "" {
		return -1, storage.Errorf(storage.ErrPrecondition, "guest %q has no CD-ROM drive: add one (strata guest set, or define it with --cdrom \"\")", g.Name)
	}
	return -1, storage.Errorf(storage.ErrNotFound, "guest %q has no CD-ROM drive %s", g.Name, vdev)
}
