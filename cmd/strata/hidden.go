package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
)

// hiddenCommand is a subcommand strata starts itself, detached (a live
// point's guard, a QEMU watcher, a guest's keeper), not one for users: it
// takes exactly the arguments argsUsage names, and says what they are
// (want) when given others. parent is the group it is in.
func hiddenCommand(parent, name, argsUsage, usage, want string, action func(c *cli.Context, args []string) error) *cli.Command {
	n := len(strings.Fields(argsUsage))
	return &cli.Command{
		Name: name, Hidden: true, ArgsUsage: argsUsage, Usage: usage,
		Action: func(c *cli.Context) error {
			if c.NArg() != n {
				return storage.Errorf(storage.ErrInvalid, "%s %s takes %s", parent, name, want)
			}
			return action(c, c.Args().Slice())
		},
	}
}

// executable is this strata binary, to start a hidden command with.
func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}
