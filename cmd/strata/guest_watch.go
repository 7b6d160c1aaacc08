package main

import (
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/boot/qemu"
	"github.com/strata-vm/strata/storage"
)

// guestWatchCommand is the qemu driver's watcher: the driver starts it
// detached for each guest it starts (`strata guest __watch RUNDIR`); it
// records why the guest's QEMU stopped (hvm/boot/qemu.Watch). Hidden: not
// for users.
var guestWatchCommand = &cli.Command{
	Name: "__watch", Hidden: true, ArgsUsage: "RUNDIR",
	Usage: "watch a guest's QEMU and record why it stopped (started by the qemu driver)",
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return storage.Errorf(storage.ErrInvalid, "guest __watch takes one runtime directory")
		}
		return qemu.Watch(c.Context, c.Args().First())
	},
}
