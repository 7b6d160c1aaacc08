package qemu

import (
	"context"

	"github.com/strata-vm/strata/hvm/boot"
)

// Monitor implements boot.LiveMonitor: strata's own QMP socket of the
// guest's QEMU, with its events (STOP and RESUME time a live point's
// pause). QEMU serves one client there at a time: another strata command
// that needs it waits until this one closes.
func (d *Driver) Monitor(ctx context.Context, g *boot.Guest) (boot.Monitor, error) {
	if _, err := d.mustRun(ctx, g); err != nil {
		return nil, err
	}
	return dialQMP(ctx, g.Run)
}
