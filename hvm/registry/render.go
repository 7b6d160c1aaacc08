package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/hvm/lint"
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
	// out (a config meant for xl or virsh then needs them set by hand),
	// and a console off loopback that a password guarded is rendered on
	// loopback instead, never open.
	ShowSecrets bool
	// AllowExposed renders a guest whose lint finds a control surface
	// the network can reach (lint.IsExposure); without it Render refuses.
	AllowExposed bool
	// Bridges renames NIC bridges for the target host (--bridge-map
	// xenbr0=br0, hvm.ParseBridgeMap), in every format.
	Bridges map[string]string
	// AllowMissingDisks renders a guest whose writable disk's file or
	// device does not exist here (a config for the host that has it).
	AllowMissingDisks bool
	// QMP is the QMP socket of a qemu render (default: RenderQMPSocket
	// in the guest's root-only runtime directory), through which the
	// VNC password is set once QEMU runs.
	QMP string
}

// RenderQMPSocket is the QMP socket a qemu render gets in the guest's
// runtime directory: not the qemu driver's own (qmp.sock), so a rendered
// command line never takes over a guest strata runs.
const RenderQMPSocket = "qmp-render.sock"

// Render returns a guest as an xl.cfg or xm file, libvirt domain XML, or
// (format qemu) nil and the QEMU argv.
func (r *Registry) Render(ctx context.Context, name string, o RenderOptions) ([]byte, []string, error) {
	g, err := r.Resolved(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	g = g.RemapBridges(o.Bridges)
	if err := checkDiskFiles(g, o.AllowMissingDisks); err != nil {
		return nil, nil, err
	}
	if o.Format == "xm" && g.DeviceModel.Override == "" && g.DeviceModel.XMPath == "" {
		g.DeviceModel.XMPath = xlcfg.FindXMDeviceModel("/")
	}
	if o.Format == "qemu" && o.QMP == "" {
		_, rec, err := r.Get(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		rd, err := boot.RunDirFor(r.st.Catalog.Home(), rec.ID)
		if err != nil {
			return nil, nil, err
		}
		o.QMP = rd.Path(RenderQMPSocket)
	}
	exposed := lint.Exposures(g)
	if len(exposed) > 0 && !o.AllowExposed {
		msgs := make([]string, len(exposed))
		for i, f := range exposed {
			msgs[i] = f.Field + ": " + f.Message
		}
		return nil, nil, storage.Errorf(storage.ErrPrecondition, "guest %q opens what the network can reach: %s; fix it (strata guest lint %s says how) or add --allow-exposed to render it anyway",
			name, strings.Join(msgs, "; "), name)
	}
	var notes []string
	// The QEMU argv never holds the password (it is set over QMP), only
	// that one is required: leaving it out there would start an open console.
	if !o.ShowSecrets && o.Format != "qemu" && g.HasSecrets() {
		g, notes = g.WithoutSecrets()
		log.Warn().Str("guest", name).Msg("the console password is left out of the rendered config: add --show-secrets to include it")
		for _, n := range notes {
			log.Warn().Str("guest", name).Msg(n + ": add --show-secrets to render it as defined")
		}
		// What --allow-exposed allowed is the definition's own exposure,
		// never one made here by leaving a password out.
		if more := newExposures(exposed, lint.Exposures(g)); len(more) > 0 {
			return nil, nil, storage.Errorf(storage.ErrPrecondition, "guest %q: without its password %s: %s; render with --show-secrets", name, more[0].Field, more[0].Message)
		}
	}
	b, argv, err := render(g, o)
	if err != nil || len(notes) == 0 {
		return b, argv, err
	}
	// Say it in the file too, where whoever deploys it will look.
	var head strings.Builder
	for _, n := range notes {
		if o.Format == "libvirt" {
			// No "--" in an XML comment.
			fmt.Fprintf(&head, "<!-- %s (rendered with show-secrets it is as defined) -->\n", strings.ReplaceAll(n, "--", "-"))
		} else {
			fmt.Fprintf(&head, "# %s (strata guest render --show-secrets renders it as defined)\n", n)
		}
	}
	return append([]byte(head.String()), b...), argv, nil
}

// newExposures returns the findings of after that before does not have.
func newExposures(before, after []lint.Finding) []lint.Finding {
	var out []lint.Finding
	for _, f := range after {
		if !slices.ContainsFunc(before, func(b lint.Finding) bool { return b.ID == f.ID && b.Field == f.Field }) {
			out = append(out, f)
		}
	}
	return out
}

func render(g *hvm.Guest, o RenderOptions) ([]byte, []string, error) {
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
		argv, err := qemu.Argv(g, qemu.Options{Accel: accel, Network: o.Network, QMP: o.QMP})
		if err == nil && !g.Display.VNCPasswd.IsZero() {
			log.Info().Str("guest", g.Name).Str("qmp", o.QMP).Msg(`the VNC console waits for its password: once QEMU runs, send {"execute":"qmp_capabilities"} then {"execute":"change-vnc-password","arguments":{"password":"..."}} to the QMP socket`)
		}
		return nil, argv, err
	}
	return nil, nil, storage.Errorf(storage.ErrInvalid, "invalid format %q: use xl, xm, libvirt or qemu", o.Format)
}

// checkDiskFiles refuses to render a guest whose writable disk names a
// file or device that does not exist (the config would fail to start, or
// a toolstack would create an empty image in its place); a missing
// read-only disk or CD is only logged.
func checkDiskFiles(g *hvm.Guest, allowMissing bool) error {
	for _, d := range g.Disks {
		kind, src := d.Source()
		if kind != hvm.SourcePath && kind != hvm.SourceDevice || !strings.HasPrefix(src, "/") || d.Script != "" {
			continue // a backend URL (rbd:) or a block script's target
		}
		if _, err := os.Stat(src); err == nil || !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if d.ReadOnly() || allowMissing {
			log.Warn().Str("guest", g.Name).Str("disk", d.Vdev).Msg(src + " does not exist: the guest sees no medium there")
			continue
		}
		return storage.Errorf(storage.ErrNotFound, "guest %q: writable disk %s: %s does not exist: restore it, change the disk (strata guest set %s), or add --allow-missing-disks to render a config for the host that has it", g.Name, d.Vdev, src, g.Name)
	}
	return nil
}
