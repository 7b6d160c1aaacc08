package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// newCatalogCommand is the catalog's own care: copies, and the way back from
// a catalog that is missing or damaged (these commands work then; every
// other command refuses with exit code 9).
func newCatalogCommand() *cli.Command {
	return &cli.Command{
		Name:  "catalog",
		Usage: "back up the catalog, restore it when it is missing or damaged, and move it between the file and etcd",
		Subcommands: append(catalogMoveCommands(), []*cli.Command{
			newCatalogBackupCommand(),
			newCatalogRestoreCommand(),
			newCatalogInitCommand(),
			newCatalogAcceptCommand(),
		}...),
	}
}

func newCatalogBackupCommand() *cli.Command {
	return &cli.Command{
		Name: "backup", Usage: "write a consistent copy of the catalog (mode 0600) while strata keeps working", ArgsUsage: "FILE",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace FILE if it exists"}},
		Action: catalogBackupAction,
	}
}

func catalogBackupAction(c *cli.Context) error {
	st, err := opened(c, openStore, "FILE")
	if err != nil {
		return err
	}
	file := c.Args().First()
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	return reported(st.Catalog.Backup(c.Args().First(), c.Bool("force")), "catalog backed up", "file", file)
}

func newCatalogRestoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "put a copy of the catalog in place (the current one is kept in HOME/backups); no file is deleted",
		ArgsUsage: "FILE",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace a catalog that is sound, or take another home's catalog"}},
		Action:    catalogRestoreAction,
	}
}

func catalogRestoreAction(c *cli.Context) error {
	st, err := opened(c, exclusiveStore, "FILE")
	if err != nil {
		return err
	}
	return thenSay(st.Catalog.Restore(c.Args().First(), c.Bool("force")),
		"catalog restored; run 'strata doctor': files the copy does not know are reported and kept. When every one is imported again or not needed, run 'strata catalog accept'")
}

func newCatalogInitCommand() *cli.Command {
	return &cli.Command{
		Name:   "init",
		Usage:  "start an empty catalog over a home whose catalog is missing or damaged, keeping every file",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "over-existing", Usage: "required: the home's volumes, points and goldens are forgotten (their files stay)", Required: true}},
		Action: catalogInitAction,
	}
}

func catalogInitAction(c *cli.Context) error {
	st, err := opened(c, exclusiveStore)
	if err != nil {
		return err
	}
	return thenSay(st.Catalog.InitOver(),
		"an empty catalog is in place; every file is kept and 'strata doctor' reports those it does not know without removing them, until 'strata catalog accept'")
}

func newCatalogAcceptCommand() *cli.Command {
	return &cli.Command{
		Name:   "accept",
		Usage:  "declare a restored catalog complete: doctor --repair may again remove files it does not know",
		Action: catalogAcceptAction,
	}
}

func catalogAcceptAction(c *cli.Context) error {
	st, err := opened(c, openStore)
	if err != nil {
		return err
	}
	was, err := st.Catalog.Accept()
	if err == nil && !was {
		fmt.Fprintln(os.Stderr, "the catalog was not restored: nothing to accept")
	} else if err == nil {
		fmt.Fprintln(os.Stderr, "catalog accepted: doctor --repair removes files it does not know again")
	}
	return err
}

// thenSay tells the user on stderr what to do next after a change to the
// catalog that went well (err nil), and returns err.
func thenSay(err error, next string) error {
	if err == nil {
		fmt.Fprintln(os.Stderr, next)
	}
	return err
}
