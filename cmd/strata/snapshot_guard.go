package main

import (
	"time"

	"github.com/urfave/cli/v2"
)

// newSnapshotGuardCommand is a live point's guard (snapshot.Manager.Guard):
// the strata that takes a live point of a guest under a driver without a
// watcher of strata's (libvirt) starts it detached; should that strata
// die mid-point, the guard resumes and thaws the guest and finishes or
// undoes the point. Hidden: not for users.
func newSnapshotGuardCommand() *cli.Command {
	return hiddenCommand("snapshot", "__guard", "GUEST-ID POINT-UID",
		"guard a live restore point: resume the guest if the strata taking it dies (started by strata)",
		"a guest ID and a point UID", snapshotGuardAction)
}

func snapshotGuardAction(c *cli.Context, args []string) error {
	m, err := openPoints(c)
	if err != nil {
		return err
	}
	return m.Guard(c.Context, args[0], args[1])
}

// guardArgv returns the command line of a point's guard in the state
// home (absolute) with the lock timeout of this command.
func guardArgv(home string, lockTimeout time.Duration) func(guestID, point string) []string {
	return func(guestID, point string) []string {
		return []string{executable(), "--home", home, "--lock-timeout", lockTimeout.String(), "snapshot", "__guard", guestID, point}
	}
}
