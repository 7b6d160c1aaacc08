package main

import (
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/boot/qemu"
)

// newGuestWatchCommand is the qemu driver's watcher: the driver starts it
// detached for each guest it starts (`strata guest __watch RUNDIR`); it
// records why the guest's QEMU stopped (hvm/boot/qemu.Watch). Hidden: not
// for users.
func newGuestWatchCommand() *cli.Command {
	return hiddenCommand("guest", "__watch", "RUNDIR",
		"watch a guest's QEMU and record why it stopped (started by the qemu driver)",
		"one runtime directory", func(c *cli.Context, args []string) error { return qemu.Watch(c.Context, args[0]) })
}
