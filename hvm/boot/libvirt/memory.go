package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
)

// Memory-state points through libvirt use libvirt's own save and restore
// (virDomainSaveFlags, virDomainRestoreFlags), not a migration through
// the monitor passthrough: libvirt keeps its view of the domain right
// (a passthrough migration would leave it believing a QEMU runs that
// has handed its disks over), libvirtd (root) opens the state file and
// passes QEMU a descriptor, so the file stays root's in strata's 0700
// directory and QEMU's user never gets a path to it, and the file is
// libvirt's save image, which libvirt alone can start a domain from.
// The price is the pause: libvirt's save ends the domain's QEMU, the
// point's disks are captured while it is gone (so RAM and disks are of
// one instant) and the restore starts a new QEMU that loads the RAM;
// the guest resumes where it was (its clock and counters continue), but
// it is paused for the whole of it, seconds rather than milliseconds,
// and strata records that pause as measured.

var _ boot.StateSaver = (*Driver)(nil)

// SaveState implements boot.StateSaver: libvirt saves the running
// domain's RAM and device state into path and ends it. A save still
// running when ctx ends is aborted (libvirt lets the guest run on).
func (d *Driver) SaveState(ctx context.Context, g *boot.Guest, path string) error {
	// The connection outlives ctx: an abort must still reach libvirt.
	c, err := d.connect(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	defer c.close()
	dm, st, err := d.running(c, g)
	if err != nil {
		return err
	}
	if st != lv.DomainRunning {
		return storage.Errorf(storage.ErrPrecondition, "guest %q is not running (libvirt state %d): only a running guest's memory is saved; resume it first", g.Def.Name, st)
	}
	done := make(chan error, 1)
	go func() {
		done <- c.DomainSaveFlags(dm, path, nil, uint32(lv.DomainSaveRunning))
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		// libvirt resumes the guest when its save job is aborted. The
		// job may not have begun yet: asked again until the save ends.
		var aerr error
		for err = nil; ; {
			aerr = c.DomainAbortJob(dm)
			select {
			case err = <-done:
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
		if err == nil {
			// It finished first: the caller's measure of the whole
			// pause fails the point.
			return boot.OwnStateFile(path)
		}
		if aerr != nil && libvirtCode(aerr) != lv.ErrOperationInvalid {
			err = errors.Join(err, aerr)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: libvirt was still saving the guest's memory when --max-pause was over (the save was aborted and the guest runs on): %v", boot.ErrPauseTooLong, err)
		}
		return fmt.Errorf("libvirt: save domain %q: %w (%v)", dm.Name, ctx.Err(), err)
	}
	if err != nil {
		return fmt.Errorf("libvirt: save the memory of domain %q: %w", dm.Name, err)
	}
	// libvirt opened the file as root and QEMU wrote it through a
	// descriptor; it stays root's alone, whatever libvirt's labelling
	// did to it.
	return boot.OwnStateFile(path)
}

// restore starts g's domain from a state file libvirt saved (Start with
// FromState): libvirt starts a QEMU that loads the guest's RAM, and the
// guest continues where it was. The file must be a save of this guest's
// domain (strata's marker with its ID).
func (d *Driver) restore(ctx context.Context, g *boot.Guest, path string, o boot.StartOptions) (boot.Status, error) {
	if err := boot.CheckState(boot.Libvirt, path, 0); err != nil {
		return boot.Status{}, err
	}
	c, err := d.connect(ctx)
	if err != nil {
		return boot.Status{}, err
	}
	defer c.close()
	if _, _, err := d.mineStopped(c, g); err != nil {
		return boot.Status{}, err
	}
	if err := d.cephSecrets(ctx, c, g.Def); err != nil {
		return boot.Status{}, err
	}
	sx, err := c.DomainSaveImageGetXMLDesc(path, 0)
	if err != nil {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "libvirt cannot read the saved memory state %s: %v", path, err)
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(sx); err != nil {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "the saved memory state %s holds a domain libvirt's XML cannot describe: %v", path, err)
	}
	if id := markerIn(&x); id != g.ID {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "the saved memory state %s is not of guest %q (its domain %q carries no strata marker of this guest): strata does not start it", path, g.Def.Name, x.Name)
	}
	flags := uint32(lv.DomainSaveRunning)
	if o.Paused {
		flags = uint32(lv.DomainSavePaused)
	}
	before := owners(g)
	started := time.Now().UTC()
	if err := c.DomainRestoreFlags(path, nil, flags); err != nil {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "libvirt could not start guest %q from its saved memory %s: %v%s", g.Def.Name, path, err, permissionHint(err, g.Def))
	}
	dm, err := c.DomainLookupByName(x.Name)
	if err != nil {
		return boot.Status{}, fmt.Errorf("libvirt: look up domain %q after its restore: %w", x.Name, err)
	}
	rs := boot.RunState{Driver: boot.Libvirt, Domain: dm.Name, Accel: map[string]string{"kvm": "kvm", "qemu": "tcg"}[x.Type], Started: started,
		Extra: map[string]string{"uuid": uuidString(dm.UUID), "restored_from": path}}
	return d.recordRun(c, g, dm, rs, before)
}

// markerIn returns the guest ID of strata's marker in a domain's XML
// ("" when it has none).
func markerIn(x *libvirtxml.Domain) string {
	if x.Metadata == nil {
		return ""
	}
	dec := xml.NewDecoder(strings.NewReader(x.Metadata.XML))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Space == MarkerNS && se.Name.Local == "guest" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					return a.Value
				}
			}
			return ""
		}
	}
}
