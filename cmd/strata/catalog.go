package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage/store"
)

// catalogCommand is the catalog's own care: copies, and the way back from
// a catalog that is missing or damaged (these commands work then; every
// other command refuses with exit code 9).
func catalogCommand() *cli.Command {
	return &cli.Command{
		Name:  "catalog",
		Usage: "back up the catalog, restore it when it is missing or damaged, and move it between the file and etcd",
		Subcommands: append(catalogMoveCommands(), []*cli.Command{
			{
				Name: "backup", Usage: "write a consistent copy of the catalog (mode 0600) while strata keeps working", ArgsUsage: "FILE",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace FILE if it exists"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "FILE"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					return st.Catalog.Backup(c.Args().First(), c.Bool("force"))
				},
			},
			{
				Name:      "restore",
				Usage:     "put a copy of the catalog in place (the current one is kept in HOME/backups); no file is deleted",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace a catalog that is sound, or take another home's catalog"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "FILE"); err != nil {
						return err
					}
					st, err := exclusiveStore(c)
					if err != nil {
						return err
					}
					if err := st.Catalog.Restore(c.Args().First(), c.Bool("force")); err != nil {
						return err
					}
					fmt.Fprintln(os.Stderr, "catalog restored; run 'strata doctor': files the copy does not know are reported and kept. When every one is imported again or not needed, run 'strata catalog accept'")
					return nil
				},
			},
			{
				Name:  "init",
				Usage: "start an empty catalog over a home whose catalog is missing or damaged, keeping every file",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "over-existing", Usage: "required: the home's volumes, points and goldens are forgotten (their files stay)", Required: true}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c); err != nil {
						return err
					}
					st, err := exclusiveStore(c)
					if err != nil {
						return err
					}
					if err := st.Catalog.InitOver(); err != nil {
						return err
					}
					fmt.Fprintln(os.Stderr, "an empty catalog is in place; every file is kept and 'strata doctor' reports those it does not know without removing them, until 'strata catalog accept'")
					return nil
				},
			},
			{
				Name:  "accept",
				Usage: "declare a restored catalog complete: doctor --repair may again remove files it does not know",
				Action: func(c *cli.Context) error {
					if err := needArgs(c); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					was, err := st.Catalog.Accept()
					if err == nil && !was {
						fmt.Fprintln(os.Stderr, "the catalog was not restored: nothing to accept")
					}
					return err
				},
			},
		}...),
	}
}

// exclusiveStore opens the home holding it exclusively: no other strata
// process works while its catalog is replaced.
func exclusiveStore(c *cli.Context) (*store.Store, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	a := appOf(c)
	a.opLock.Release()
	if a.opLock, err = st.LockExclusive(); err != nil {
		return nil, err
	}
	return st, nil
}
