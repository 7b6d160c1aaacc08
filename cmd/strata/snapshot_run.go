package main

import (
	"context"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
)

func newSnapshotRunCommand() *cli.Command {
	return &cli.Command{
		Name: "run", Usage: "take a pre point, run a command (no shell), take a post point; optionally roll back if it fails", ArgsUsage: "GUEST -- COMMAND [ARGS...]",
		Flags: []cli.Flag{volumeFlag,
			&cli.StringFlag{Name: "description", Usage: "what the update is (default: the command)"},
			&cli.BoolFlag{Name: "rollback-on-failure", Usage: "roll back to the pre point when the command exits non-zero (a running guest needs --restart)"},
			&cli.BoolFlag{Name: "restart", Usage: "with --rollback-on-failure, a running guest: stop it cleanly, roll back, start it again (else a running guest is refused before the command runs, exit 5)"},
			stopTimeoutFlag,
			maxPauseFlag, quiesceFlag,
		},
		Action: snapshotRunAction,
	}
}

// snapshotRunAction runs the command that followed the "--" that ended
// strata's arguments, as given (it may hold "--" itself), and exits with
// its exit code.
func snapshotRunAction(c *cli.Context) error {
	var volume *string
	if c.IsSet("volume") {
		v := c.String("volume")
		volume = &v
	}
	t, command, err := snapshot.SplitRunArgv(c.Args().Slice(), appOf(c).afterDash, volume)
	if err != nil {
		return err
	}
	live, err := liveOptions(c)
	if err != nil {
		return err
	}
	m, rollback, err := runManager(c, t)
	if err != nil {
		return err
	}
	res, err := m.Run(c.Context, t, c.String("description"), c.Bool("rollback-on-failure"), rollback, live, command, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return exitWith(res.ExitCode)
	}
	return nil
}

// runManager opens the manager snapshot run works with and, with
// --restart, the rollback it does on failure: the lifecycle's stop, roll
// back, start again (as rollback --restart).
func runManager(c *cli.Context, t snapshot.TargetRef) (*snapshot.Manager, func(ctx context.Context, ref string) error, error) {
	switch {
	case c.Bool("restart") && !c.Bool("rollback-on-failure"):
		return nil, nil, storage.Errorf(storage.ErrInvalid, "--restart is for the rollback of --rollback-on-failure: add it, or leave --restart out")
	case c.Bool("restart") && t.Volume:
		return nil, nil, storage.Errorf(storage.ErrInvalid, "--restart restarts a guest: a volume has none; leave it out")
	case c.Bool("restart"):
		lm, err := openLifecycle(c)
		if err != nil {
			return nil, nil, err
		}
		return lm.Points, func(ctx context.Context, ref string) error {
			_, err := lm.Rollback(ctx, t.Name, ref, true, c.Duration("timeout"))
			return err
		}, nil
	}
	m, err := openPoints(c)
	return m, nil, err
}
