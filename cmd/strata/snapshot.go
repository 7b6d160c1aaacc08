package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
)

var volumeFlag = &cli.StringFlag{Name: "volume", Usage: "target one volume instead of a guest (then omit GUEST)"}

// target reads the target (GUEST, or --volume NAME) and the remaining
// positional arguments, which must be exactly rest.
func target(c *cli.Context, rest ...string) (snapshot.TargetRef, []string, error) {
	args := c.Args().Slice()
	if v := c.String("volume"); v != "" {
		if len(args) != len(rest) {
			return snapshot.TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "%s --volume %s takes %d argument(s): %s (got %d)", c.Command.FullName(), v, len(rest), strings.Join(rest, " "), len(args))
		}
		return snapshot.TargetRef{Name: v, Volume: true}, args, nil
	}
	if len(args) != len(rest)+1 {
		return snapshot.TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "%s takes %d argument(s): GUEST %s (or --volume NAME %s); got %d", c.Command.FullName(), len(rest)+1, strings.Join(rest, " "), strings.Join(rest, " "), len(args))
	}
	return snapshot.TargetRef{Name: args[0]}, args[1:], nil
}

// targetAndPoints reads GUEST POINT... (or --volume NAME POINT...).
func targetAndPoints(c *cli.Context) (snapshot.TargetRef, []string, error) {
	args := c.Args().Slice()
	if v := c.String("volume"); v != "" {
		if len(args) == 0 {
			return snapshot.TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "%s --volume %s takes one or more points (numbers, names or ranges such as 3-7)", c.Command.FullName(), v)
		}
		return snapshot.TargetRef{Name: v, Volume: true}, args, nil
	}
	if len(args) < 2 {
		return snapshot.TargetRef{}, nil, storage.Errorf(storage.ErrInvalid, "%s takes GUEST and one or more points (numbers, names or ranges such as 3-7), or --volume NAME POINT...; got %d argument(s)", c.Command.FullName(), len(args))
	}
	return snapshot.TargetRef{Name: args[0]}, args[1:], nil
}

// openTarget reads the target and the remaining positional arguments, which
// must be exactly rest (target), then opens the restore-point manager.
func openTarget(c *cli.Context, rest ...string) (*snapshot.Manager, snapshot.TargetRef, []string, error) {
	t, args, err := target(c, rest...)
	if err != nil {
		return nil, t, nil, err
	}
	m, err := openPoints(c)
	return m, t, args, err
}

// newSnapshotCommand is the snapshot group: taking and listing points (here),
// rollback (snapshot_rollback.go), run (snapshot_run.go), prune and
// policy (snapshot_prune.go), and the hidden guard of a live point
// (snapshot_guard.go).
func newSnapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "restore points of a guest (all its disks and its definition) or of one volume",
		Subcommands: []*cli.Command{
			newSnapshotCreateCommand(),
			newSnapshotListCommand(),
			newSnapshotShowCommand(),
			newSnapshotDeleteCommand(),
			newSnapshotPinCommand(true),
			newSnapshotPinCommand(false),
			newSnapshotRollbackCommand(),
			newSnapshotRunCommand(),
			newSnapshotPruneCommand(),
			newSnapshotPolicyCommand(),
			newSnapshotGuardCommand(),
		},
	}
}

func newSnapshotCreateCommand() *cli.Command {
	return &cli.Command{
		Name: "create", Usage: "take a restore point", ArgsUsage: "GUEST",
		Flags: []cli.Flag{volumeFlag,
			&cli.StringFlag{Name: "name", Usage: "a unique name for the point"},
			&cli.StringFlag{Name: "description", Usage: "what the point is for"},
			&cli.StringSliceFlag{Name: "tag", Usage: "KEY=VALUE (repeat)"},
			&cli.BoolFlag{Name: "pre", Usage: "a pre point, to pair with a post point after an update"},
			&cli.IntFlag{Name: "post", DefaultText: "none", Usage: "a post point paired with pre point N"},
			&cli.StringFlag{Name: "method", Usage: "qcow2-internal, reflink or copy (default: chosen per volume)"},
			maxPauseFlag, quiesceFlag,
			&cli.BoolFlag{Name: "memory", Usage: "a running guest: also save its RAM and device state with the disks, in one pause (qemu: as long as writing the RAM; libvirt and xl: their save, the disks and their restore, seconds: give --max-pause); rollback --memory resumes it there"},
		},
		Action: snapshotCreateAction,
	}
}

func snapshotCreateAction(c *cli.Context) error {
	t, _, err := target(c)
	if err != nil {
		return err
	}
	o, err := createOptions(c)
	if err != nil {
		return err
	}
	m, err := openPoints(c)
	if err != nil {
		return err
	}
	return printResult(c, emitPoints)(m.Create(c.Context, t, o))
}

// createOptions reads snapshot create's flags.
func createOptions(c *cli.Context) (snapshot.CreateOptions, error) {
	tags, err := snapshot.ParseTags(c.StringSlice("tag"))
	if err != nil {
		return snapshot.CreateOptions{}, err
	}
	live, err := liveOptions(c)
	if err != nil {
		return snapshot.CreateOptions{}, err
	}
	live.Memory = c.Bool("memory")
	o := snapshot.CreateOptions{Name: c.String("name"), Description: c.String("description"), Tags: tags, Method: c.String("method"), LiveOptions: live}
	switch {
	case c.Bool("pre") && c.IsSet("post"):
		return o, storage.Errorf(storage.ErrInvalid, "--pre and --post exclude each other")
	case c.Bool("pre"):
		o.Kind = snapshot.KindPre
	case c.IsSet("post"):
		if c.Int("post") <= 0 {
			return o, storage.Errorf(storage.ErrInvalid, "invalid --post %d: give the number of the pre point (numbers start at 1)", c.Int("post"))
		}
		o.Kind, o.PreID = snapshot.KindPost, c.Int("post")
	}
	return o, nil
}

func newSnapshotListCommand() *cli.Command {
	return &cli.Command{
		Name: "list", Usage: "list restore points (of one target, or all)", ArgsUsage: "[GUEST]",
		Flags:  []cli.Flag{volumeFlag},
		Action: snapshotListAction,
	}
}

func snapshotListAction(c *cli.Context) error {
	var ref *snapshot.TargetRef
	if c.NArg() > 0 || c.IsSet("volume") {
		t, _, err := target(c)
		if err != nil {
			return err
		}
		ref = &t
	}
	m, err := openPoints(c)
	if err != nil {
		return err
	}
	return printResult(c, emitPoints)(m.List(c.Context, ref))
}

func newSnapshotShowCommand() *cli.Command {
	return &cli.Command{Name: "show", Usage: "show a restore point", ArgsUsage: "GUEST POINT", Flags: []cli.Flag{volumeFlag}, Action: snapshotShowAction}
}

func snapshotShowAction(c *cli.Context) error {
	m, t, args, err := openTarget(c, "POINT")
	if err != nil {
		return err
	}
	return printResult(c, emitPoints)(m.Show(c.Context, t, args[0]))
}

func newSnapshotDeleteCommand() *cli.Command {
	return &cli.Command{
		Name: "delete", Usage: "delete restore points and their data: numbers, names or ranges (3-7); all are checked before any goes", ArgsUsage: "GUEST POINT...",
		Flags:  []cli.Flag{volumeFlag},
		Action: snapshotDeleteAction,
	}
}

func snapshotDeleteAction(c *cli.Context) error {
	t, refs, err := targetAndPoints(c)
	if err != nil {
		return err
	}
	m, err := openPoints(c)
	if err != nil {
		return err
	}
	return reportPointsDeleted(m.DeleteMany(c.Context, t, refs))(t)
}

// reportPointsDeleted says which points of a target a delete removed,
// one line each.
func reportPointsDeleted(ids []int, err error) func(t snapshot.TargetRef) error {
	return func(t snapshot.TargetRef) error {
		if err != nil {
			return err
		}
		target := "guest:" + t.Name
		if t.Volume {
			target = "volume:" + t.Name
		}
		for _, id := range ids {
			log.Info().Str("target", target).Int("point", id).Msg("restore point deleted")
		}
		return nil
	}
}

// newSnapshotPinCommand is snapshot pin (pin), or unpin.
func newSnapshotPinCommand(pin bool) *cli.Command {
	name, usage := "unpin", "let prune and delete remove a restore point again"
	if pin {
		name, usage = "pin", "keep a restore point from prune and delete"
	}
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: "GUEST POINT", Flags: []cli.Flag{volumeFlag},
		Action: func(c *cli.Context) error { return snapshotPinAction(c, pin) },
	}
}

func snapshotPinAction(c *cli.Context, pin bool) error {
	m, t, args, err := openTarget(c, "POINT")
	if err != nil {
		return err
	}
	return printResult(c, emitPoints)(m.SetPinned(c.Context, t, args[0], pin))
}

func emitPoints(c *cli.Context, v any) error {
	header := []any{"TARGET", "ID", "NAME", "KIND", "CREATED", "METHOD", "PINNED", "BYTES", "PRE", "DESCRIPTION"}
	pointRow := func(p snapshot.Point) []any {
		bytes, pre := "", ""
		if p.Bytes != nil {
			bytes = storage.FormatSize(*p.Bytes)
		}
		if p.PreID != nil {
			pre = fmt.Sprint(*p.PreID)
		}
		return []any{p.Target, p.ID, p.Name, p.Kind, p.Created.Format(time.RFC3339), p.Method, p.Pinned, bytes, pre, p.Description}
	}
	switch p := v.(type) {
	case snapshot.Point:
		v = p.Printable()
	case []snapshot.Point:
		for i := range p {
			p[i] = p[i].Printable()
		}
	}
	return emitOneOrList(c, v, oneOrList[snapshot.Point]{
		// One point: its row, then what only it shows.
		fields: func(w *tabwriter.Writer, one snapshot.Point) {
			row(w, header...)
			row(w, pointRow(one)...)
			if one.Consistency != "" {
				pause := ""
				if one.PauseMS != nil {
					pause = fmt.Sprintf("live, guest paused %.1f ms", *one.PauseMS)
				}
				row(w, "  consistency:", one.Consistency, pause)
			}
			if one.Memory != nil {
				row(w, "  memory:", storage.FormatSize(one.Memory.Bytes), one.Memory.Path)
			}
			for _, d := range one.Disks {
				row(w, "  disk:", d.Volume, d.Method, d.Ref)
			}
		},
		header: header,
		row:    pointRow,
	})
}

var maxPauseFlag = &cli.DurationFlag{Name: "max-pause", Value: snapshot.DefaultMaxPause, Usage: "a running guest: the longest it may be paused for the point; a longer pause is undone (the guest resumes, nothing is recorded, exit 7)"}

var quiesceFlag = &cli.BoolFlag{Name: "quiesce", Usage: "a running guest: freeze its filesystems through its QEMU guest agent during the point (refused, exit 8, where it has none)"}

// liveOptions reads --max-pause and --quiesce.
func liveOptions(c *cli.Context) (snapshot.LiveOptions, error) {
	d := c.Duration("max-pause")
	if d <= 0 {
		return snapshot.LiveOptions{}, storage.Errorf(storage.ErrInvalid, "invalid --max-pause %s: give a positive duration such as 500ms or 2s", d)
	}
	return snapshot.LiveOptions{MaxPause: d, Quiesce: c.Bool("quiesce")}, nil
}
