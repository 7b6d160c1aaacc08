package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// Change is one difference between two definitions: a dotted key of the
// YAML schema (nics.0.bridge) with its old and new value ("" for none).
// Passwords are redacted.
type Change struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

// Diff lists what differs between two definitions, key by key in order,
// passwords redacted.
func Diff(a, b *hvm.Guest) ([]Change, error) {
	fa, err := flatten(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatten(b)
	if err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(fa))
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []Change
	for _, k := range keys {
		if fa[k] != fb[k] {
			out = append(out, Change{Key: k, Old: fa[k], New: fb[k]})
		}
	}
	return out, nil
}

func flatten(g *hvm.Guest) (map[string]string, error) {
	doc, err := hvm.Marshal(g.Redacted())
	if err != nil {
		return nil, err
	}
	var tree any
	if err := yaml.Unmarshal(doc, &tree); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(prefix string, n any)
	walk = func(prefix string, n any) {
		switch n := n.(type) {
		case map[string]any:
			for k, v := range n {
				walk(join(prefix, k), v)
			}
		case []any:
			for i, v := range n {
				walk(join(prefix, fmt.Sprint(i)), v)
			}
		default:
			out[prefix] = fmt.Sprint(n)
		}
	}
	walk("", tree)
	return out, nil
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// Replace updates an existing guest from an edited xl/xm config (or
// libvirt XML): the guest named o.Name, else the config's name. The
// config is the truth for everything it expresses; what is strata's own
// is kept: the install record (what Windows was installed with), the os
// hint, the default driver, features.pv_drivers and guest_agent, and the
// UUID and each NIC's MAC where the config gives none. A disk the config
// names by the path of one of the guest's volumes or media stays that
// volume or medium. The result passes the checks guest set makes (unique
// MACs, volumes that exist, no disk another guest writes, validation), or
// nothing changes. It returns the guest as stored and what changed; with
// o.DryRun nothing is stored.
func (r *Registry) Replace(ctx context.Context, file string, data []byte, o ImportOptions) (*hvm.Guest, []Change, []lint.Finding, error) {
	g, findings, err := parseConfig(file, data, o.Libvirt)
	if err != nil {
		return nil, nil, nil, err
	}
	// As on import: a disk the edited config names that is not there is
	// warned about now, not first at render or start.
	findings = append(findings, missingDisks(file, g)...)
	name := o.Name
	if name == "" {
		name = g.Name
	}
	old, _, err := r.Get(ctx, name)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil, nil, storage.Errorf(storage.ErrNotFound, "guest %q does not exist: import it without --replace to define it (or name the guest to update with --name)", name)
		}
		return nil, nil, nil, err
	}
	if err := r.mediaByPath(g); err != nil {
		return nil, nil, nil, err
	}
	byPath, err := r.diskSources(old)
	if err != nil {
		return nil, nil, nil, err
	}
	var adopted []string
	if o.AdoptDisks && !o.DryRun {
		if adopted, err = r.adopt(ctx, g, o.AllowBacking); err != nil {
			r.unadopt(ctx, adopted)
			return nil, nil, nil, err
		}
	}
	var before *hvm.Guest
	change := func(cur *hvm.Guest) error {
		before = cur.Clone()
		keepOwn(g, cur, byPath)
		g.Name = name
		*cur = *g.Clone()
		return nil
	}
	var stored *hvm.Guest
	var more []lint.Finding
	if o.DryRun {
		stored, _, err = r.Preview(ctx, name, change)
		if err == nil {
			more = lint.Check(stored)
		}
	} else {
		stored, more, err = r.Update(ctx, name, change)
	}
	if err != nil {
		r.unadopt(ctx, adopted)
		return nil, nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	changes, err := Diff(before, stored)
	if err != nil {
		return nil, nil, nil, err
	}
	return stored, changes, append(findings, more...), nil
}

// keepOwn carries into g (from a config) what the config cannot say about
// the stored guest cur.
func keepOwn(g, cur *hvm.Guest, byPath map[string]hvm.Disk) {
	g.APIVersion = cur.APIVersion
	g.Install = cur.Install
	g.OS, g.Driver = cur.OS, cur.Driver
	g.Features.PVDrivers, g.Features.GuestAgent = cur.Features.PVDrivers, cur.Features.GuestAgent
	if g.UUID == "" {
		g.UUID = cur.UUID
	}
	for i := range g.NICs {
		// Windows activation hashes the MAC: a config without one keeps
		// the NIC's (by position) rather than getting a new one.
		if g.NICs[i].MAC == "" && i < len(cur.NICs) {
			g.NICs[i].MAC = cur.NICs[i].MAC
		}
	}
	for i := range g.Disks {
		d := &g.Disks[i]
		kind, src := d.Source()
		if kind != hvm.SourcePath && kind != hvm.SourceDevice {
			continue
		}
		if was, ok := byPath[storage.RealPath(src)]; ok {
			d.Path, d.Device = "", ""
			d.Volume, d.Media = was.Volume, was.Media
		}
	}
}

// diskSources maps the host path of each volume and medium g names to
// that disk.
func (r *Registry) diskSources(g *hvm.Guest) (map[string]hvm.Disk, error) {
	out := map[string]hvm.Disk{}
	err := r.st.Catalog.View(func(tx *catalog.Tx) error {
		res := resolver{tx}
		for _, d := range g.Disks {
			kind, name := d.Source()
			if kind != hvm.SourceVolume && kind != hvm.SourceMedia {
				continue
			}
			p, err := res.ResolveDisk(kind, name)
			if err != nil {
				continue // gone: the config's path stands
			}
			out[storage.RealPath(p.Path)] = d
		}
		return nil
	})
	return out, err
}
