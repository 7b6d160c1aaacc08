package main

import (
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/storage"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that the catalog and the files agree; --repair finishes or undoes interrupted operations and removes strata's orphans",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "repair", Usage: "repair what can be repaired (waits for other strata processes to finish)"}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c); err != nil {
				return err
			}
			st, m, err := openManager(c)
			if err != nil {
				return err
			}
			if c.Bool("repair") {
				opLock.Release()
				if opLock, err = st.LockExclusive(); err != nil {
					return err
				}
			}
			findings, err := m.Doctor(c.Context, c.Bool("repair"))
			if err != nil {
				return err
			}
			if err := emit(c, findings, func(w *tabwriter.Writer) {
				row(w, "KIND", "REPAIRED", "TARGET", "PATH", "DETAIL")
				for _, f := range findings {
					row(w, f.Kind, f.Repaired, f.Target, f.Path, f.Detail)
				}
			}); err != nil {
				return err
			}
			left := 0
			for _, f := range findings {
				if !f.Repaired {
					left++
				}
			}
			if left > 0 {
				return storage.Errorf(storage.ErrPrecondition, "%d problem(s) found; run 'strata doctor --repair' or follow the details above", left)
			}
			return nil
		},
	}
}
