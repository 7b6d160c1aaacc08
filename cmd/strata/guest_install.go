package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/storage"
)

func newGuestInstallCommand() *cli.Command {
	return &cli.Command{
		Name: "install", Usage: "install an OS from a CD in two phases (XP: text mode, then from the disk)", ArgsUsage: "NAME",
		Flags: []cli.Flag{driverFlag,
			&cli.StringFlag{Name: "media", Usage: "the install CD: an iso name or an ISO file"},
			networkFlag,
			&cli.BoolFlag{Name: "xp", Usage: "Windows XP/2003: phase 1 with ACPI and APIC off (the HAL-safe settings; see guest lint)"},
			&cli.StringFlag{Name: "unattend", Usage: "an answer file (Windows Vista and later): put on a CD of its own as autounattend.xml, in a second CD-ROM drive"},
			&cli.BoolFlag{Name: "snapshot", Usage: "take a restore point named installed at the end"},
			&cli.StringFlag{Name: "golden", Usage: "freeze the installed guest as this golden image"},
			&cli.DurationFlag{Name: "phase-timeout", Value: 4 * time.Hour, Usage: "end a phase that runs longer and mark the install failed"},
			&cli.BoolFlag{Name: "status", Usage: "show the phase and how each phase ended, and do nothing else"},
			&cli.BoolFlag{Name: "allow-exposed", Usage: "install even if lint finds a console the network can reach"},
		},
		Action: guestInstallAction,
	}
}

func guestInstallAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	if c.Bool("status") {
		rec, err := lm.InstallStatus(c.Context, name)
		if err != nil {
			return err
		}
		if rec == nil {
			return storage.Errorf(storage.ErrNotFound, "guest %q has no install on record: strata guest install %s --media ISO", name, name)
		}
		return printInstall(c, rec)
	}
	return printResult(c, printInstall)(lm.Install(c.Context, name, lifecycle.InstallOptions{Media: c.String("media"), XP: c.Bool("xp"), Unattend: c.String("unattend"), Driver: c.String("driver"),
		PhaseTimeout: c.Duration("phase-timeout"), Snapshot: c.Bool("snapshot"), Golden: c.String("golden"), AllowExposed: c.Bool("allow-exposed"), Network: c.String("network"),
		Progress: func(msg string) { fmt.Fprintln(os.Stderr, "install: "+msg) }}))
}

func printInstall(c *cli.Context, rec *lifecycle.InstallRecord) error {
	return emit(c, rec, func(w *tabwriter.Writer) {
		row(w, "guest:", rec.Guest)
		row(w, "state:", rec.State)
		row(w, "media:", rec.Media)
		for _, p := range rec.Phases {
			how := p.Result
			if p.Stop != nil {
				how += " (" + p.Stop.Reason + ")"
			}
			if how == "" {
				how = "running"
			}
			row(w, fmt.Sprintf("phase %d:", p.Phase), how, p.Started.Local().Format(time.DateTime))
		}
		if rec.Point > 0 {
			row(w, "restore point:", rec.Point)
		}
		if rec.Golden != "" {
			row(w, "golden:", rec.Golden)
		}
		if rec.Error != "" {
			row(w, "error:", rec.Error)
		}
	})
}
