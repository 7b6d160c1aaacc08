package registry

import (
	"context"

	"github.com/rs/zerolog/log"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
)

func nowUTC() time.Time { return time.Now().UTC() }

// resolver maps volume and media names to host paths within a catalog
// transaction.
type resolver struct{ tx *catalog.Tx }

func (r resolver) ResolveDisk(kind hvm.SourceKind, name string) (hvm.Resolved, error) {
	switch kind {
	case hvm.SourceVolume:
		v, err := r.tx.Volume(name)
		if err != nil {
			return hvm.Resolved{}, err
		}
		format := string(v.Format)
		if v.Format == storage.FormatISO {
			format = "raw"
		}
		return hvm.Resolved{Path: v.Path, Block: v.Device, Format: format}, nil
	case hvm.SourceMedia:
		p, err := media.Resolve(r.tx, name)
		return hvm.Resolved{Path: p, Format: "raw"}, err
	}
	return hvm.Resolved{}, storage.Errorf(storage.ErrInvalid, "cannot resolve a %s source", kind)
}

// Resolved returns a guest's definition with every volume and medium name
// replaced by its host path, as the renderers and boot drivers need.
func (r *Registry) Resolved(ctx context.Context, name string) (*hvm.Guest, error) {
	var out *hvm.Guest
	err := r.st.Catalog.View(func(tx *catalog.Tx) error {
		rec, err := tx.Guest(name)
		if err != nil {
			return err
		}
		g, err := decode(tx, rec)
		if err != nil {
			return err
		}
		out, err = hvm.ResolveDisks(g, resolver{tx})
		return err
	})
	return out, err
}

// RenderOptions choose the output of Render.
type RenderOptions struct {
	Format     string // xl, xm, libvirt or qemu
	Hypervisor string // xen or kvm (libvirt); qemu: kvm means -accel kvm
	Accel      string // qemu only: tcg or kvm (default: from Hypervisor)
	Network    string // qemu only: bridge (default), user or none
	// ShowSecrets keeps passwords in the output; without it they are left
	// out (a config meant for xl or virsh then needs them set by hand).
	ShowSecrets bool
}

// Render returns a guest as an xl.cfg or xm file, libvirt domain XML, or
// (format qemu) nil and the QEMU argv.
func (r *Registry) Render(ctx context.Context, name string, o RenderOptions) ([]byte, []string, error) {
	g, err := r.Resolved(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	// The QEMU argv never holds the password (it is set over QMP), only
	// that one is required: leaving it out there would start an open console.
	if !o.ShowSecrets && o.Format != "qemu" && g.HasSecrets() {
		g = g.WithoutSecrets()
		log.Warn().Str("guest", name).Msg("the console password is left out of the rendered config: add --show-secrets to include it")
	}
	switch o.Format {
	case "xl":
		b, err := xlcfg.Render(g)
		return b, nil, err
	case "xm":
		b, err := xlcfg.RenderXM(g)
		return b, nil, err
	case "libvirt":
		hv := o.Hypervisor
		if hv == "" {
			hv = "xen"
		}
		h, err := libvirt.ParseHypervisor(hv)
		if err != nil {
			return nil, nil, err
		}
		b, err := libvirt.Render(g, h)
		return b, nil, err
	case "qemu":
		accel := o.Accel
		if accel == "" {
			accel = "tcg"
			if o.Hypervisor == "kvm" {
				accel = "kvm"
			}
		}
		argv, err := qemu.Argv(g, qemu.Options{Accel: accel, Network: o.Network})
		return nil, argv, err
	}
	return nil, nil, storage.Errorf(storage.ErrInvalid, "invalid format %q: use xl, xm, libvirt or qemu", o.Format)
}
