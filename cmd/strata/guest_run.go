package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/storage"
)

// The commands that run a guest: start, stop, kill, pause, resume,
// restart, status, vnc and screenshot; console, insert and eject
// (guest_console.go); install (guest_install.go). Each prints the guest's
// status (printStatus) unless it says otherwise.

var driverFlag = &cli.StringFlag{Name: "driver", Usage: "auto, qemu, libvirt or xl (default: the guest's driver, else auto: xl where Xen runs, libvirt where libvirtd answers, else qemu)"}

var networkFlag = &cli.StringFlag{Name: "network", Usage: "qemu driver: how NICs attach: bridge (default: each NIC's bridge, through qemu-bridge-helper), user (QEMU's user-mode network, no bridge needed) or none"}

var stopTimeoutFlag = &cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "how long the guest has to shut down after the ACPI power button before it is ended"}

func guestRunCommands() []*cli.Command {
	return []*cli.Command{
		newGuestStartCommand(),
		newGuestStopCommand(),
		newGuestPowerCommand("kill", "end a guest at once (as pulling its power cord)", (*lifecycle.Manager).Kill),
		newGuestPowerCommand("pause", "pause a running guest", (*lifecycle.Manager).Pause),
		newGuestPowerCommand("resume", "resume a paused guest", (*lifecycle.Manager).Resume),
		newGuestRestartCommand(),
		newGuestStatusCommand(),
		newGuestVNCCommand(),
		newGuestScreenshotCommand(),
		newGuestConsoleCommand(),
		newGuestInsertCommand(),
		newGuestEjectCommand(),
		newGuestInstallCommand(),
	}
}

func newGuestStartCommand() *cli.Command {
	return &cli.Command{
		Name: "start", Usage: "boot a guest through QEMU, libvirt or Xen", ArgsUsage: "NAME",
		Flags: []cli.Flag{driverFlag,
			&cli.BoolFlag{Name: "paused", Usage: "start it paused before its first instruction (resume with guest resume)"},
			networkFlag,
			&cli.BoolFlag{Name: "wait", Usage: "wait until the guest runs (with --wait-serial: until its serial console prints a matching line)"},
			&cli.StringFlag{Name: "wait-serial", Usage: "a regular expression: wait until a line of the guest's first serial port matches it"},
			&cli.DurationFlag{Name: "wait-timeout", Value: 5 * time.Minute, Usage: "how long --wait/--wait-serial wait"},
			&cli.BoolFlag{Name: "allow-exposed", Usage: "start even if lint finds a console or monitor the network can reach (refused by default, exit 7)"},
		},
		Action: guestStartAction,
	}
}

func guestStartAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	var re *regexp.Regexp
	if p := c.String("wait-serial"); p != "" {
		if re, err = regexp.Compile(p); err != nil {
			return storage.Errorf(storage.ErrInvalid, "--wait-serial %q is not a regular expression: %v", p, err)
		}
	}
	st, err := lm.Start(c.Context, name, lifecycle.StartOptions{Driver: c.String("driver"), Paused: c.Bool("paused"), Network: c.String("network"), AllowExposed: c.Bool("allow-exposed")})
	if err != nil {
		return err
	}
	if re != nil {
		line, err := lm.WaitSerial(c.Context, name, re, c.Duration("wait-timeout"))
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "serial: %s\n", boot.Printable(line, 512))
	}
	if c.Bool("wait") || re != nil {
		return printResult(c, printStatus)(lm.Status(c.Context, name))
	}
	return printStatus(c, st)
}

func newGuestStopCommand() *cli.Command {
	return &cli.Command{
		Name: "stop", Usage: "shut a guest down: ACPI power button (twice), then end it after --timeout", ArgsUsage: "NAME",
		Flags:  []cli.Flag{stopTimeoutFlag, &cli.BoolFlag{Name: "force", Usage: "end it at once, without asking the guest (its disks may lose writes it has not flushed)"}},
		Action: guestStopAction,
	}
}

func guestStopAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	return printResult(c, printStatus)(lm.Stop(c.Context, c.Args().First(), lifecycle.StopOptions{Timeout: c.Duration("timeout"), Force: c.Bool("force")}))
}

// newGuestPowerCommand is kill, pause or resume: one call of the
// lifecycle (do, a method of lifecycle.Manager) on the guest NAME.
func newGuestPowerCommand(name, usage string, do func(lm *lifecycle.Manager, ctx context.Context, guest string) (boot.Status, error)) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: "NAME",
		Action: func(c *cli.Context) error { return guestPowerAction(c, do) },
	}
}

func guestPowerAction(c *cli.Context, do func(lm *lifecycle.Manager, ctx context.Context, guest string) (boot.Status, error)) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	return printResult(c, printStatus)(do(lm, c.Context, c.Args().First()))
}

func newGuestRestartCommand() *cli.Command {
	return &cli.Command{
		Name: "restart", Usage: "stop a guest cleanly and start it again (with its definition as it is now)", ArgsUsage: "NAME",
		Flags:  []cli.Flag{stopTimeoutFlag},
		Action: guestRestartAction,
	}
}

func guestRestartAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	return printResult(c, printStatus)(lm.Restart(c.Context, c.Args().First(), lifecycle.StopOptions{Timeout: c.Duration("timeout")}, lifecycle.StartOptions{}))
}

func newGuestStatusCommand() *cli.Command {
	return &cli.Command{Name: "status", Usage: "state, driver, pid or domain, accelerator, VNC address, uptime and why it last stopped", ArgsUsage: "NAME", Action: guestStatusAction}
}

func guestStatusAction(c *cli.Context) error {
	lm, name, st, err := guestStatus(c)
	if err != nil {
		return err
	}
	if elsewhere, ok := runningElsewhereStatus(lm.St, name, st); ok {
		return emit(c, elsewhere, func(w *tabwriter.Writer) {
			row(w, "guest:", name)
			row(w, "state:", "running on host "+elsewhere.Host)
			row(w, "since:", elsewhere.Since.Format(time.RFC3339))
		})
	}
	return printStatus(c, st)
}

// guestStatus opens the lifecycle and reads the status of the guest
// NAME.
func guestStatus(c *cli.Context) (*lifecycle.Manager, string, boot.Status, error) {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return nil, "", boot.Status{}, err
	}
	st, err := lm.Status(c.Context, c.Args().First())
	return lm, c.Args().First(), st, err
}

func newGuestVNCCommand() *cli.Command {
	return &cli.Command{Name: "vnc", Usage: "the address of a running guest's VNC console, for a viewer", ArgsUsage: "NAME", Action: guestVNCAction}
}

func guestVNCAction(c *cli.Context) error {
	_, name, st, err := guestStatus(c)
	if err != nil {
		return err
	}
	if !st.State.Live() {
		return storage.Errorf(storage.ErrPrecondition, "guest %q is not running: start it first", name)
	}
	if st.VNC == "" {
		return storage.Errorf(storage.ErrPrecondition, "guest %q has no VNC console (vnc is off in its definition)", name)
	}
	return emit(c, map[string]string{"guest": name, "vnc": st.VNC}, func(w *tabwriter.Writer) { fmt.Fprintln(w, st.VNC) })
}

func newGuestScreenshotCommand() *cli.Command {
	return &cli.Command{Name: "screenshot", Usage: "save a running guest's screen as a PNG file", ArgsUsage: "NAME FILE.png", Action: guestScreenshotAction}
}

func guestScreenshotAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME", "FILE.png")
	if err != nil {
		return err
	}
	return lm.Screenshot(c.Context, c.Args().Get(0), c.Args().Get(1))
}

func printStatus(c *cli.Context, st boot.Status) error {
	return emit(c, st, func(w *tabwriter.Writer) {
		row(w, "guest:", st.Guest)
		row(w, "state:", st.State)
		if st.Hold != "" {
			row(w, "hold:", st.Hold)
		}
		if st.Driver != "" {
			row(w, "driver:", st.Driver)
		}
		if st.PID > 0 {
			row(w, "pid:", st.PID)
		}
		if st.Domain != "" {
			row(w, "domain:", st.Domain)
		}
		if st.Accel != "" {
			row(w, "accelerator:", st.Accel)
		}
		if st.VNC != "" {
			row(w, "vnc:", st.VNC)
		}
		if len(st.Features) > 0 {
			fs := make([]string, len(st.Features))
			for i, f := range st.Features {
				fs[i] = string(f)
			}
			row(w, "features:", strings.Join(fs, ", "))
		}
		if st.State.Live() && !st.Started.IsZero() {
			row(w, "uptime:", (time.Duration(st.UptimeSeconds * float64(time.Second))).Round(time.Second))
		}
		if s := st.LastStop; s != nil {
			why := s.Reason
			if s.Detail != "" {
				why += " (" + s.Detail + ")"
			}
			row(w, "last stop:", why, s.At.Local().Format(time.DateTime))
		}
	})
}
