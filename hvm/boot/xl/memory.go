package xl

import (
	"context"
	"fmt"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
)

// Memory-state points under Xen: `xl save DOMID FILE` writes the
// domain's RAM and device state and then destroys the domain, and
// `xl restore -p CONFIG FILE` (Start with FromState) builds it again from
// the file, where it was. Neither -c (the domain runs on after the save:
// its disks would move on from the instant of its RAM before the point
// could capture them) nor -p (the domain stays, paused, its device model
// holding the images open and locked, so that they cannot be captured)
// is given to save: the domain ends with the save, its disks released
// exactly at the instant of the RAM, and the point's disks are taken
// before the restore (boot.StateSaver).

var _ boot.StateSaver = (*Driver)(nil)

// saveTimeout bounds an xl save. It is not the point's --max-pause: an
// xl save ended midway may leave the domain suspended, so it is never
// interrupted, and the pause is checked once it is over.
const saveTimeout = 30 * time.Minute

// SaveState implements boot.StateSaver with xl save.
func (d *Driver) SaveState(ctx context.Context, g *boot.Guest, path string) error {
	e, err := d.running(ctx, g)
	if err != nil {
		return err
	}
	if st := stateOf(e); st != boot.Running {
		return storage.Errorf(storage.ErrPrecondition, "guest %q is %s under Xen: only a running guest's memory is saved; resume it first", g.Def.Name, st)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if _, err := d.xl(sctx, "save", id(e), path); err != nil {
		return Classify(err, fmt.Sprintf("save the memory of guest %q (xl save)", g.Def.Name))
	}
	return boot.OwnStateFile(path)
}
