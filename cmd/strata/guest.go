package main

import (
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage/store"
)

func guestCommand() *cli.Command {
	return &cli.Command{
		Name:  "guest",
		Usage: "manage guests: a name and its disks (full HVM definitions come later)",
		Subcommands: []*cli.Command{
			flattenCommand(true),
			{
				Name: "define", Usage: "define a guest from its disks", ArgsUsage: "NAME",
				Flags: []cli.Flag{&cli.StringSliceFlag{Name: "disk", Usage: "a volume that is a disk of the guest (repeat, in order)"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					if _, err := st.DefineGuest(c.Context, c.Args().First(), c.StringSlice("disk")); err != nil {
						return err
					}
					g, err := st.Guest(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					return emitGuests(c, g)
				},
			},
			{
				Name: "list", Usage: "list guests",
				Action: func(c *cli.Context) error {
					if err := needArgs(c); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					gs, err := st.Guests(c.Context)
					if err != nil {
						return err
					}
					return emitGuests(c, gs)
				},
			},
			{
				Name: "show", Usage: "show a guest", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					g, err := st.Guest(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					return emitGuests(c, g)
				},
			},
			{
				Name: "delete", Usage: "forget a guest (its volumes stay)", ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, "NAME"); err != nil {
						return err
					}
					st, err := openStore(c)
					if err != nil {
						return err
					}
					return st.DeleteGuest(c.Context, c.Args().First())
				},
			},
		},
	}
}

func emitGuests(c *cli.Context, v any) error {
	gs, _ := v.([]store.GuestView)
	if g, ok := v.(store.GuestView); ok {
		gs = []store.GuestView{g}
	}
	return emit(c, v, func(w *tabwriter.Writer) {
		row(w, "NAME", "ID", "DISKS")
		for _, g := range gs {
			row(w, g.Name, g.ID, strings.Join(g.DiskNames, ","))
		}
	})
}
