package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
)

// The commands that read a guest's definition for another tool or for
// the user: render and lint.

func newGuestRenderCommand() *cli.Command {
	return &cli.Command{
		Name: "render", Usage: "render a guest as xl.cfg, xm, libvirt domain XML or a QEMU command line", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "xl", Usage: "xl, xm, libvirt or qemu"},
			&cli.StringFlag{Name: "hypervisor", Usage: "xen or kvm (libvirt: default xen; qemu: kvm selects -accel kvm)"},
			&cli.StringFlag{Name: "accel", Usage: "qemu: tcg or kvm"},
			&cli.StringFlag{Name: "network", Usage: "qemu: bridge (default), user or none"},
			&cli.BoolFlag{Name: "show-secrets", Usage: "include console passwords (left out by default; a console off loopback is then rendered on 127.0.0.1)"},
			&cli.BoolFlag{Name: "allow-exposed", Usage: "render even if lint finds a console, monitor or port the network can reach (refused by default, exit 7)"},
			&cli.StringSliceFlag{Name: "bridge-map", Usage: "FROM=TO: put NICs on bridge FROM (default xenbr0) onto TO, for a host without Xen's bridges, e.g. xenbr0=br0 (repeat)"},
			&cli.BoolFlag{Name: "allow-missing-disks", Usage: "render even if a writable disk's file or device does not exist here (a config for the host that has it)"},
			&cli.StringFlag{Name: "qmp", Usage: "qemu: the QMP socket to render, through which the VNC password is set (default: in the guest's runtime directory)"},
		},
		Action: guestRenderAction,
	}
}

func guestRenderAction(c *cli.Context) error {
	if err := needArgs(c, "NAME"); err != nil {
		return err
	}
	bridges, err := hvm.ParseBridgeMap(c.StringSlice("bridge-map"))
	if err != nil {
		return err
	}
	r, err := openRegistry(c)
	if err != nil {
		return err
	}
	text, argv, err := r.Render(c.Context, c.Args().First(), registry.RenderOptions{Format: c.String("format"), Hypervisor: c.String("hypervisor"), Accel: c.String("accel"), Network: c.String("network"), ShowSecrets: c.Bool("show-secrets"), AllowExposed: c.Bool("allow-exposed"), Bridges: bridges, QMP: c.String("qmp"), AllowMissingDisks: c.Bool("allow-missing-disks")})
	if err != nil {
		return err
	}
	if argv != nil {
		return emit(c, argv, func(w *tabwriter.Writer) {
			for _, a := range argv {
				fmt.Fprintln(w, a)
			}
		})
	}
	_, err = os.Stdout.Write(text)
	return err
}

func newGuestLintCommand() *cli.Command {
	return &cli.Command{
		Name: "lint", Usage: "check a guest for Windows pitfalls (HAL, activation, XP install, exposed VNC, ...); exits 7 when a finding is an error, unless --warn-only", ArgsUsage: "NAME",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "warn-only", Usage: "report findings and exit 0 even when one is an error"}},
		Action: guestLintAction,
	}
}

func guestLintAction(c *cli.Context) error {
	r, err := opened(c, openRegistry, "NAME")
	if err != nil {
		return err
	}
	fs, err := r.Lint(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	if fs == nil {
		fs = []lint.Finding{}
	}
	if err := emit(c, fs, func(w *tabwriter.Writer) {
		row(w, "SEVERITY", "ID", "FIELD", "MESSAGE", "FIX")
		for _, f := range fs {
			row(w, f.Severity, f.ID, f.Field, f.Message, f.Fix)
		}
	}); err != nil {
		return err
	}
	var errs []string
	for _, f := range fs {
		if f.Severity == lint.Error {
			errs = append(errs, f.ID)
		}
	}
	if len(errs) > 0 && !c.Bool("warn-only") {
		return storage.Errorf(storage.ErrPrecondition, "guest %q: %d finding(s) of error severity (%s); --warn-only reports without failing", c.Args().First(), len(errs), strings.Join(errs, ", "))
	}
	return nil
}
