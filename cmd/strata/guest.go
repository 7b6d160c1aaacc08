package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/store"
)

// newGuestCommand is the guest group: its definition (guest_define.go,
// guest_render.go), its life (guest_run.go, guest_console.go,
// guest_install.go), its devices (guest_attach.go) and its owner in a
// shared catalog (guest_owner.go).
func newGuestCommand() *cli.Command {
	return &cli.Command{
		Name:  "guest",
		Usage: "HVM guests: define, import, edit, render, lint; start, stop, install, status, console",
		Subcommands: append([]*cli.Command{
			newFlattenCommand(true),
			newGuestWatchCommand(),
			newGuestOwnCommand(),
			newGuestMoveCommand(),
			newGuestDefineCommand(),
			newGuestImportCommand(),
			newGuestSetCommand(),
			newGuestListCommand(),
			newGuestShowCommand(),
			newGuestRenderCommand(),
			newGuestInstalledCommand(),
			newGuestLintCommand(),
			newGuestDeleteCommand(),
		}, append(guestRunCommands(), newGuestAttachCommand(), newGuestDetachCommand())...),
	}
}

func newGuestListCommand() *cli.Command {
	return &cli.Command{Name: "list", Usage: "list guests", Action: guestListAction}
}

// listedGuest is a row of guest list.
type listedGuest struct {
	store.GuestView
	State boot.State `json:"state"`
	// Host runs the guest, when it is another host sharing the catalog.
	Host string `json:"host,omitempty"`
}

func guestListAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle)
	if err != nil {
		return err
	}
	return printResult(c, emitGuests)(listGuests(c, lm))
}

// listGuests is every guest with its state: here, or running on another
// host sharing the catalog.
func listGuests(c *cli.Context, lm *lifecycle.Manager) ([]listedGuest, error) {
	gs, err := lm.St.Guests(c.Context)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	states := lm.States(c.Context, names)
	out := make([]listedGuest, len(gs))
	for i, g := range gs {
		out[i] = listedGuest{GuestView: g, State: states[g.Name]}
		if !out[i].State.Live() {
			if host := runningOn(lm.St, g.ID); host != "" {
				out[i].State, out[i].Host = boot.Running, host
			}
		}
	}
	return out, nil
}

func emitGuests(c *cli.Context, out []listedGuest) error {
	return emit(c, out, func(w *tabwriter.Writer) {
		row(w, "NAME", "STATE", "ID", "DISKS")
		for _, g := range out {
			state := string(g.State)
			if g.Host != "" {
				state += " on " + g.Host
			}
			row(w, g.Name, state, g.ID, strings.Join(g.DiskNames, ","))
		}
	})
}

func newGuestShowCommand() *cli.Command {
	return &cli.Command{
		Name: "show", Usage: "show a guest's definition (--output yaml writes the YAML schema back)", ArgsUsage: "NAME",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "show-secrets", Usage: "print passwords instead of [redacted]"}},
		Action: guestShowAction,
	}
}

func guestShowAction(c *cli.Context) error {
	r, err := opened(c, openRegistry, "NAME")
	if err != nil {
		return err
	}
	return showGuest(c, r, c.Args().First())
}

func newGuestDeleteCommand() *cli.Command {
	return &cli.Command{
		Name: "delete", Usage: "forget a guest (its disks stay unless --with-disks)", ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "with-disks", Usage: "also delete the volumes that are its disks"},
			&cli.BoolFlag{Name: "with-points", Usage: "also delete its restore points (refused while one is pinned)"},
		},
		Action: guestDeleteAction,
	}
}

func guestDeleteAction(c *cli.Context) error {
	lm, err := opened(c, openLifecycle, "NAME")
	if err != nil {
		return err
	}
	name := c.Args().First()
	if c.Bool("with-points") {
		if c.Bool("with-disks") {
			// Checked before the points go: a disk in use refuses the
			// delete, which would otherwise come after them.
			g, _, err := lm.Reg.Get(c.Context, name)
			if err != nil {
				return err
			}
			var vols []string
			for _, d := range g.Disks {
				if d.Volume != "" && !slices.Contains(vols, d.Volume) {
					vols = append(vols, d.Volume)
				}
			}
			if err := lm.St.CheckDisksFree(c.Context, name, vols); err != nil {
				return err
			}
		}
		if err := deletePointsOf(c, lm, name); err != nil {
			return err
		}
	}
	if err := lm.Delete(c.Context, name, c.Bool("with-disks")); err != nil {
		return err
	}
	what := "guest deleted; its disks stay (see strata volume list)"
	if c.Bool("with-disks") {
		what = "guest deleted with its disks"
	}
	log.Info().Str("guest", name).Msg(what)
	return nil
}

// deletePointsOf deletes every restore point of a guest about to be
// deleted: not of a running guest (the delete would refuse it after the
// points were gone), and not at all when one is pinned.
func deletePointsOf(c *cli.Context, lm *lifecycle.Manager, name string) error {
	st, err := lm.Status(c.Context, name)
	if err != nil {
		return err
	}
	if st.State.Live() {
		return storage.Errorf(storage.ErrInUse, "guest %q is %s: stop it first (strata guest stop %s); nothing was deleted", name, st.State, name)
	}
	t := snapshot.TargetRef{Name: name}
	points, err := lm.Points.List(c.Context, &t)
	if err != nil || len(points) == 0 {
		return err
	}
	refs := make([]string, len(points))
	for i, p := range points {
		refs[i] = strconv.Itoa(p.ID)
	}
	return reportPointsDeleted(lm.Points.DeleteMany(c.Context, t, refs))(t)
}

// showGuest prints a guest: YAML (the schema, for define -f), JSON (the
// same keys plus id and disk volumes) or a summary table. Passwords are
// redacted unless --show-secrets.
func showGuest(c *cli.Context, r *registry.Registry, name string) error {
	g, rec, err := r.Get(c.Context, name)
	if err != nil {
		return err
	}
	if !c.Bool("show-secrets") {
		g = g.Redacted()
	}
	doc, err := hvm.Marshal(g)
	if err != nil {
		return err
	}
	if c.String("output") == "yaml" {
		_, err := os.Stdout.Write(doc)
		return err
	}
	var tree map[string]any
	if err := yaml.Unmarshal(doc, &tree); err != nil {
		return err
	}
	tree["id"] = rec.ID
	return emit(c, tree, func(w *tabwriter.Writer) {
		row(w, "name:", g.Name)
		row(w, "uuid:", g.UUID)
		row(w, "memory:", fmt.Sprintf("%d MiB", hvm.Val(g.Memory, 0)))
		row(w, "vcpus:", g.EffectiveVCPUs())
		row(w, "acpi/apic:", fmt.Sprintf("%v/%v", g.EffectiveACPI(), g.EffectiveAPIC()))
		row(w, "boot:", g.EffectiveBoot())
		for _, d := range g.Disks {
			kind, src := d.Source()
			row(w, "disk:", d.Vdev, kind, src, d.Format, map[bool]string{true: "cdrom", false: ""}[d.CDROM])
		}
		for _, n := range g.NICs {
			row(w, "nic:", n.MAC, n.Bridge, n.Model)
		}
		if g.Display.VNCEnabled() {
			row(w, "vnc:", g.Display.EffectiveVNCListen(), g.Display.VNCPasswd.String())
		}
	})
}

// warnIfRunning says that a change to a running guest's definition takes
// effect when it next starts.
// A status it cannot read gives no warning: the change is stored either
// way, and the warning is only advice.
func warnIfRunning(c *cli.Context, name string) {
	lm, err := openLifecycle(c)
	if err != nil {
		return
	}
	if st, err := lm.Status(c.Context, name); err == nil && st.State.Live() {
		log.Warn().Str("guest", name).Msg("the guest is running: the change takes effect when it next starts (strata guest restart " + name + ")")
	}
}
