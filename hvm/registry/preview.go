package registry

import (
	"context"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage/catalog"
)

// Preview applies change to a stored definition and checks the result as
// Update would (defaults, pinned unique MACs, the volumes and media it
// names, no disk another guest writes, validation), without storing it:
// for a change that must be carried out somewhere else first (a device
// attached to the running guest) and recorded only once that worked.
// It returns the result as Update would store it and with its disks
// resolved to host paths.
func (r *Registry) Preview(ctx context.Context, name string, change func(g *hvm.Guest) error) (stored, resolved *hvm.Guest, err error) {
	err = r.st.Catalog.View(func(tx *catalog.Tx) error {
		rec, err := tx.Guest(name)
		if err != nil {
			return err
		}
		if stored, err = decode(tx, rec); err != nil {
			return err
		}
		if err := change(stored); err != nil {
			return err
		}
		if _, _, err := prepare(tx, stored, name); err != nil {
			return err
		}
		resolved, err = hvm.ResolveDisks(stored, resolver{tx})
		return err
	})
	return stored, resolved, err
}
