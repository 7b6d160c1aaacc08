package hvm

import (
	"fmt"

	"github.com/strata-vm/strata/storage"
)

// Resolved is where a volume or medium lives on the host.
type Resolved struct {
	Path   string
	Block  bool   // Path is a block device
	Format string // raw, qcow2, ...; empty: keep the disk's own
}

// Resolver maps a strata volume or medium name to the host. The catalog
// implements it; tests use ResolverFunc.
type Resolver interface {
	ResolveDisk(kind SourceKind, name string) (Resolved, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(kind SourceKind, name string) (Resolved, error)

// ResolveDisk calls f.
func (f ResolverFunc) ResolveDisk(kind SourceKind, name string) (Resolved, error) {
	return f(kind, name)
}

// ResolveDisks returns a copy of g in which every disk that names a
// volume or medium names its host path or device instead, which is what
// the renderers need. g itself is not changed.
func ResolveDisks(g *Guest, r Resolver) (*Guest, error) {
	c := g.Clone()
	for i := range c.Disks {
		d := &c.Disks[i]
		kind, name := d.Source()
		if kind != SourceVolume && kind != SourceMedia {
			continue
		}
		if r == nil {
			return nil, storage.Errorf(storage.ErrPrecondition, "guest %q: disk %s names %s %q but no resolver was given", g.Name, d.Vdev, kind, name)
		}
		res, err := r.ResolveDisk(kind, name)
		if err != nil {
			return nil, fmt.Errorf("guest %q: disk %s: resolve %s %q: %w", g.Name, d.Vdev, kind, name, err)
		}
		d.Volume, d.Media = "", ""
		if res.Block {
			d.Device = res.Path
		} else {
			d.Path = res.Path
		}
		if d.Format == "" {
			d.Format = res.Format
		}
	}
	return c, nil
}

// Unresolved returns an error naming the first disk that still names a
// volume or medium; renderers call it.
func Unresolved(g *Guest) error {
	for _, d := range g.Disks {
		if kind, name := d.Source(); kind == SourceVolume || kind == SourceMedia {
			return storage.Errorf(storage.ErrPrecondition, "guest %q: disk %s names %s %q: resolve volume and media names to host paths first (hvm.ResolveDisks)", g.Name, d.Vdev, kind, name)
		}
	}
	return nil
}
