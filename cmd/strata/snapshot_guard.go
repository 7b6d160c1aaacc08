package main

import (
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
)

// snapshotGuardCommand is a live point's guard (snapshot.Manager.Guard):
// the strata that takes a live point of a guest under a driver without a
// watcher of strata's (libvirt) starts it detached; should that strata
// die mid-point, the guard resumes and thaws the guest and finishes or
// undoes the point. Hidden: not for users.
var snapshotGuardCommand = &cli.Command{
	Name: "__guard", Hidden: true, ArgsUsage: "GUEST-ID POINT-UID",
	Usage: "guard a live restore point: resume the guest if the strata taking it dies (started by strata)",
	Action: func(c *cli.Context) error {
		if c.NArg() != 2 {
			return storage.Errorf(storage.ErrInvalid, "snapshot __guard takes a guest ID and a point UID")
		}
		_, m, err := openManager(c)
		if err != nil {
			return err
		}
		return m.Guard(c.Context, c.Args().Get(0), c.Args().Get(1))
	},
}

// guardArgv returns the command line of a point's guard in the state
// home (absolute) with the lock timeout of this command.
func guardArgv(home string, lockTimeout time.Duration) func(guestID, point string) []string {
	return func(guestID, point string) []string {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		return []string{exe, "--home", home, "--lock-timeout", lockTimeout.String(), "snapshot", "__guard", guestID, point}
	}
}
