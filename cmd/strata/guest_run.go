package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
)

// openLifecycle opens the state home with the boot drivers attached.
func openLifecycle(c *cli.Context) (*lifecycle.Manager, error) {
	st, m, err := openManager(c)
	if err != nil {
		return nil, err
	}
	return &lifecycle.Manager{St: st, Reg: registry.New(st), Points: m, Drivers: drivers(c), LockTimeout: c.Duration("lock-timeout"), Owner: guestOwner(st)}, nil
}

// nameAction runs fn with the lifecycle manager for commands taking NAME.
func nameAction(fn func(c *cli.Context, lm *lifecycle.Manager, name string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := needArgs(c, "NAME"); err != nil {
			return err
		}
		lm, err := openLifecycle(c)
		if err != nil {
			return err
		}
		return fn(c, lm, c.Args().First())
	}
}

var driverFlag = &cli.StringFlag{Name: "driver", Usage: "auto, qemu, libvirt or xl (default: the guest's driver, else auto: xl where Xen runs, libvirt where libvirtd answers, else qemu)"}

var networkFlag = &cli.StringFlag{Name: "network", Usage: "qemu driver: how NICs attach: bridge (default: each NIC's bridge, through qemu-bridge-helper), user (QEMU's user-mode network, no bridge needed) or none"}

var stopTimeoutFlag = &cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "how long the guest has to shut down after the ACPI power button before it is ended"}

func guestRunCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "start", Usage: "boot a guest through QEMU, libvirt or Xen", ArgsUsage: "NAME",
			Flags: []cli.Flag{driverFlag,
				&cli.BoolFlag{Name: "paused", Usage: "start it paused before its first instruction (resume with guest resume)"},
				networkFlag,
				&cli.BoolFlag{Name: "wait", Usage: "wait until the guest runs (with --wait-serial: until its serial console prints a matching line)"},
				&cli.StringFlag{Name: "wait-serial", Usage: "a regular expression: wait until a line of the guest's first serial port matches it"},
				&cli.DurationFlag{Name: "wait-timeout", Value: 5 * time.Minute, Usage: "how long --wait/--wait-serial wait"},
				&cli.BoolFlag{Name: "allow-exposed", Usage: "start even if lint finds a console or monitor the network can reach (refused by default, exit 7)"},
			},
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				var re *regexp.Regexp
				if p := c.String("wait-serial"); p != "" {
					var err error
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
					if st, err = lm.Status(c.Context, name); err != nil {
						return err
					}
				}
				return printStatus(c, st)
			}),
		},
		{
			Name: "stop", Usage: "shut a guest down: ACPI power button (twice), then end it after --timeout", ArgsUsage: "NAME",
			Flags: []cli.Flag{stopTimeoutFlag, &cli.BoolFlag{Name: "force", Usage: "end it at once, without asking the guest (its disks may lose writes it has not flushed)"}},
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Stop(c.Context, name, lifecycle.StopOptions{Timeout: c.Duration("timeout"), Force: c.Bool("force")})
				if err != nil {
					return err
				}
				return printStatus(c, st)
			}),
		},
		{
			Name: "kill", Usage: "end a guest at once (as pulling its power cord)", ArgsUsage: "NAME",
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Kill(c.Context, name)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			}),
		},
		{
			Name: "pause", Usage: "pause a running guest", ArgsUsage: "NAME",
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Pause(c.Context, name)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			}),
		},
		{
			Name: "resume", Usage: "resume a paused guest", ArgsUsage: "NAME",
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Resume(c.Context, name)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			}),
		},
		{
			Name: "restart", Usage: "stop a guest cleanly and start it again (with its definition as it is now)", ArgsUsage: "NAME",
			Flags: []cli.Flag{stopTimeoutFlag},
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Restart(c.Context, name, lifecycle.StopOptions{Timeout: c.Duration("timeout")}, lifecycle.StartOptions{})
				if err != nil {
					return err
				}
				return printStatus(c, st)
			}),
		},
		{
			Name: "status", Usage: "state, driver, pid or domain, accelerator, VNC address, uptime and why it last stopped", ArgsUsage: "NAME",
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Status(c.Context, name)
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
			}),
		},
		{
			Name: "vnc", Usage: "the address of a running guest's VNC console, for a viewer", ArgsUsage: "NAME",
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				st, err := lm.Status(c.Context, name)
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
			}),
		},
		{
			Name: "screenshot", Usage: "save a running guest's screen as a PNG file", ArgsUsage: "NAME FILE.png",
			Action: func(c *cli.Context) error {
				if err := needArgs(c, "NAME", "FILE.png"); err != nil {
					return err
				}
				lm, err := openLifecycle(c)
				if err != nil {
					return err
				}
				return lm.Screenshot(c.Context, c.Args().Get(0), c.Args().Get(1))
			},
		},
		{
			Name: "console", Usage: "attach to a running guest's serial console (detach: Ctrl-] )", ArgsUsage: "NAME",
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
				return attachConsole(c.Context, lm, name)
			}),
		},
		{
			Name: "insert", Usage: "put a disc (an iso name or an ISO file) into a guest's CD-ROM drive; live when it runs", ArgsUsage: "NAME ISO [VDEV]",
			Action: func(c *cli.Context) error {
				if c.NArg() < 2 || c.NArg() > 3 {
					return storage.Errorf(storage.ErrInvalid, "guest insert takes NAME ISO [VDEV] (got %d arguments; see --help)", c.NArg())
				}
				return changeMedia(c, c.Args().Get(0), c.Args().Get(2), c.Args().Get(1))
			},
		},
		{
			Name: "eject", Usage: "take the disc out of a guest's CD-ROM drive; live when it runs", ArgsUsage: "NAME [VDEV]",
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 || c.NArg() > 2 {
					return storage.Errorf(storage.ErrInvalid, "guest eject takes NAME [VDEV] (got %d arguments; see --help)", c.NArg())
				}
				return changeMedia(c, c.Args().Get(0), c.Args().Get(1), "")
			},
		},
		{
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
			Action: nameAction(func(c *cli.Context, lm *lifecycle.Manager, name string) error {
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
				rec, err := lm.Install(c.Context, name, lifecycle.InstallOptions{Media: c.String("media"), XP: c.Bool("xp"), Unattend: c.String("unattend"), Driver: c.String("driver"),
					PhaseTimeout: c.Duration("phase-timeout"), Snapshot: c.Bool("snapshot"), Golden: c.String("golden"), AllowExposed: c.Bool("allow-exposed"), Network: c.String("network"),
					Progress: func(msg string) { fmt.Fprintln(os.Stderr, "install: "+msg) }})
				if err != nil {
					return err
				}
				return printInstall(c, rec)
			}),
		},
	}
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

// consoleDetach is the byte that ends `guest console`: Ctrl-], as telnet
// and virsh console use.
const consoleDetach = 0x1d

func attachConsole(ctx context.Context, lm *lifecycle.Manager, name string) error {
	conn, err := lm.Console(ctx, name)
	if err != nil {
		return err
	}
	defer conn.Close()
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
		fmt.Fprintf(os.Stderr, "connected to %s's serial console; detach with Ctrl-]\r\n", name)
	}
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(os.Stdout, conn)
		done <- err
	}()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if i := strings.IndexByte(string(chunk), consoleDetach); i >= 0 {
					conn.Write(chunk[:i])
					done <- nil
					return
				}
				if _, werr := conn.Write(chunk); werr != nil {
					done <- werr
					return
				}
			}
			if err != nil {
				done <- nil // stdin closed: detach
				return
			}
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	defer signal.Stop(sig)
	select {
	case err := <-done:
		return err
	case <-sig:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// changeMedia runs guest insert and eject, printing the drive and what it
// holds now.
func changeMedia(c *cli.Context, name, vdev, iso string) error {
	lm, err := openLifecycle(c)
	if err != nil {
		return err
	}
	vdev, err = lm.ChangeMedia(c.Context, name, vdev, iso)
	if err != nil {
		return err
	}
	out := map[string]string{"guest": name, "vdev": vdev, "media": iso}
	return emit(c, out, func(w *tabwriter.Writer) {
		row(w, "guest:", name)
		row(w, "drive:", vdev)
		row(w, "media:", orEmpty(iso))
	})
}

func orEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}
