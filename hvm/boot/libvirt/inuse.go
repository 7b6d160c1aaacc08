package libvirt

import (
	"context"
	"errors"
	"os"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage/inuse"
)

// InUse is the in-use source for every domain this libvirtd runs,
// strata's or not: their disks, asked in this process over the driver's
// socket (one connection, one call per domain), where virsh would cost a
// process start, a library load and a connection per domain on every
// command that writes a disk. Without the socket (no libvirtd) it answers
// nothing; a libvirtd that does not answer within the connect timeout, or
// fails to describe its domains, is passed over with a warning: the QEMU
// it runs holds its images' locks, which the host's own sources find.
func (d *Driver) InUse() inuse.Source {
	return inuse.Domains{Toolstack: "libvirt", How: "a disk of the running libvirt domain", List: func(ctx context.Context) ([]inuse.Domain, error) {
		if _, err := os.Stat(d.cfg.Socket); err != nil {
			return nil, nil // no libvirtd: it runs no domain
		}
		warn := func(err error) {
			log.Warn().Err(err).Str("uri", d.cfg.URI).Msg("libvirt's domains are not asked (the QEMU they run holds image locks, which strata checks)")
		}
		c, err := d.connect(ctx)
		if errors.Is(err, context.Canceled) {
			return nil, err // strata was interrupted: libvirt is not to blame
		}
		if err != nil {
			warn(err)
			return nil, nil
		}
		defer c.close()
		rs, err := d.listRunning(c)
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		if err != nil {
			warn(err)
			return nil, nil
		}
		doms := make([]inuse.Domain, len(rs))
		for i, r := range rs {
			doms[i] = inuse.Domain{Name: r.Name, Disks: r.Disks}
		}
		return doms, nil
	}}
}
