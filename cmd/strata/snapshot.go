package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/hvm/registry"
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

// rollbackOutput is what snapshot rollback prints: the points, and what
// the rollback changed in the guest's definition.
type rollbackOutput struct {
	snapshot.RollbackResult
	DefinitionChanges []registry.Change `json:"definition_changes"`
}

// definitionChanges says what a rollback changed in a guest's definition:
// the pre-rollback point holds it as it was, the point rolled back to as
// it is now (the name aside: a rollback does not undo a rename).
func definitionChanges(res snapshot.RollbackResult) []registry.Change {
	was, now := res.PreRollback.Guest, res.To.Guest
	if was == nil || now == nil || was.Definition == "" || now.Definition == "" {
		return []registry.Change{}
	}
	a, err1 := hvm.Unmarshal("the definition before the rollback", []byte(was.Definition))
	b, err2 := hvm.Unmarshal("the definition rolled back to", []byte(now.Definition))
	if err1 != nil || err2 != nil {
		return []registry.Change{}
	}
	b.Name = a.Name
	changes, err := registry.Diff(a, b)
	if err != nil || changes == nil {
		return []registry.Change{}
	}
	return changes
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

var policyFlags = []cli.Flag{
	&cli.IntFlag{Name: "keep-last", DefaultText: "off", Usage: "keep the N newest points"},
	&cli.IntFlag{Name: "keep-hourly", DefaultText: "off", Usage: "keep the newest point of each of the last N hours with points"},
	&cli.IntFlag{Name: "keep-daily", DefaultText: "off", Usage: "keep the newest point of each of the last N days with points"},
	&cli.IntFlag{Name: "keep-weekly", DefaultText: "off", Usage: "keep the newest point of each of the last N weeks with points"},
	&cli.IntFlag{Name: "keep-monthly", DefaultText: "off", Usage: "keep the newest point of each of the last N months with points"},
	&cli.StringFlag{Name: "older-than", Usage: "only prune points older than this (e.g. 36h, 7d, 2w): newer ones are kept"},
	&cli.IntFlag{Name: "keep-pre-rollback", DefaultText: strconv.Itoa(snapshot.DefaultKeepPreRollback), Usage: "keep the N newest automatic pre-rollback points (the other rules count only your own points)"},
}

func policyOf(c *cli.Context) (snapshot.Policy, error) {
	within, err := snapshot.ParseAge(c.String("older-than"))
	p := snapshot.Policy{KeepLast: c.Int("keep-last"), KeepHourly: c.Int("keep-hourly"), KeepDaily: c.Int("keep-daily"),
		KeepWeekly: c.Int("keep-weekly"), KeepMonthly: c.Int("keep-monthly"), KeepWithin: within}
	if c.IsSet("keep-pre-rollback") {
		n := c.Int("keep-pre-rollback")
		p.KeepPreRollback = &n
	}
	if err == nil {
		err = p.Validate()
	}
	return p, err
}

func snapshotCommand() *cli.Command {
	pointAction := func(fn func(c *cli.Context, m *snapshot.Manager, t snapshot.TargetRef, point string) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			t, rest, err := target(c, "POINT")
			if err != nil {
				return err
			}
			_, m, err := openManager(c)
			if err != nil {
				return err
			}
			return fn(c, m, t, rest[0])
		}
	}
	return &cli.Command{
		Name:  "snapshot",
		Usage: "restore points of a guest (all its disks and its definition) or of one volume",
		Subcommands: []*cli.Command{
			{
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
				Action: func(c *cli.Context) error {
					t, _, err := target(c)
					if err != nil {
						return err
					}
					tags, err := snapshot.ParseTags(c.StringSlice("tag"))
					if err != nil {
						return err
					}
					live, err := liveOptions(c)
					if err != nil {
						return err
					}
					live.Memory = c.Bool("memory")
					o := snapshot.CreateOptions{Name: c.String("name"), Description: c.String("description"), Tags: tags, Method: c.String("method"), LiveOptions: live}
					switch {
					case c.Bool("pre") && c.IsSet("post"):
						return storage.Errorf(storage.ErrInvalid, "--pre and --post exclude each other")
					case c.Bool("pre"):
						o.Kind = snapshot.KindPre
					case c.IsSet("post"):
						if c.Int("post") <= 0 {
							return storage.Errorf(storage.ErrInvalid, "invalid --post %d: give the number of the pre point (numbers start at 1)", c.Int("post"))
						}
						o.Kind, o.PreID = snapshot.KindPost, c.Int("post")
					}
					_, m, err := openManager(c)
					if err != nil {
						return err
					}
					p, err := m.Create(c.Context, t, o)
					if err != nil {
						return err
					}
					return emitPoints(c, p)
				},
			},
			{
				Name: "list", Usage: "list restore points (of one target, or all)", ArgsUsage: "[GUEST]",
				Flags: []cli.Flag{volumeFlag},
				Action: func(c *cli.Context) error {
					var ref *snapshot.TargetRef
					if c.NArg() > 0 || c.IsSet("volume") {
						t, _, err := target(c)
						if err != nil {
							return err
						}
						ref = &t
					}
					_, m, err := openManager(c)
					if err != nil {
						return err
					}
					points, err := m.List(c.Context, ref)
					if err != nil {
						return err
					}
					return emitPoints(c, points)
				},
			},
			{
				Name: "show", Usage: "show a restore point", ArgsUsage: "GUEST POINT", Flags: []cli.Flag{volumeFlag},
				Action: pointAction(func(c *cli.Context, m *snapshot.Manager, t snapshot.TargetRef, point string) error {
					p, err := m.Show(c.Context, t, point)
					if err != nil {
						return err
					}
					return emitPoints(c, p)
				}),
			},
			{
				Name: "delete", Usage: "delete restore points and their data: numbers, names or ranges (3-7); all are checked before any goes", ArgsUsage: "GUEST POINT...", Flags: []cli.Flag{volumeFlag},
				Action: func(c *cli.Context) error {
					t, refs, err := targetAndPoints(c)
					if err != nil {
						return err
					}
					_, m, err := openManager(c)
					if err != nil {
						return err
					}
					_, err = m.DeleteMany(c.Context, t, refs)
					return err
				},
			},
			{
				Name: "pin", Usage: "keep a restore point from prune and delete", ArgsUsage: "GUEST POINT", Flags: []cli.Flag{volumeFlag},
				Action: pointAction(func(c *cli.Context, m *snapshot.Manager, t snapshot.TargetRef, point string) error {
					p, err := m.SetPinned(c.Context, t, point, true)
					if err != nil {
						return err
					}
					return emitPoints(c, p)
				}),
			},
			{
				Name: "unpin", Usage: "let prune and delete remove a restore point again", ArgsUsage: "GUEST POINT", Flags: []cli.Flag{volumeFlag},
				Action: pointAction(func(c *cli.Context, m *snapshot.Manager, t snapshot.TargetRef, point string) error {
					p, err := m.SetPinned(c.Context, t, point, false)
					if err != nil {
						return err
					}
					return emitPoints(c, p)
				}),
			},
			{
				Name: "rollback", Usage: "return to any restore point; the current state is kept as a pre-rollback point", ArgsUsage: "GUEST POINT",
				Flags: []cli.Flag{volumeFlag,
					&cli.BoolFlag{Name: "restart", Usage: "a running guest: stop it cleanly, roll back, start it again (else a running guest is refused, exit 5)"},
					&cli.BoolFlag{Name: "memory", Usage: "resume the guest from the point's saved memory (a point taken with create --memory) instead of leaving it stopped: it continues where it was, without a boot"},
					stopTimeoutFlag,
				},
				Action: pointAction(func(c *cli.Context, m *snapshot.Manager, t snapshot.TargetRef, point string) error {
					var res snapshot.RollbackResult
					var err error
					switch {
					case t.Volume && c.Bool("memory"):
						return storage.Errorf(storage.ErrInvalid, "a volume has no memory state: leave --memory out")
					case t.Volume:
						res, err = m.Rollback(c.Context, t, point)
					case c.Bool("memory"):
						var lm *lifecycle.Manager
						if lm, err = openLifecycle(c); err != nil {
							return err
						}
						res, err = lm.RollbackResume(c.Context, t.Name, point, c.Bool("restart"), c.Duration("timeout"))
					default:
						var lm *lifecycle.Manager
						if lm, err = openLifecycle(c); err != nil {
							return err
						}
						res, err = lm.Rollback(c.Context, t.Name, point, c.Bool("restart"), c.Duration("timeout"))
					}
					if err != nil {
						return err
					}
					out := rollbackOutput{DefinitionChanges: definitionChanges(res)}
					res.To, res.PreRollback = res.To.Printable(), res.PreRollback.Printable()
					out.RollbackResult = res
					return emit(c, out, func(w *tabwriter.Writer) {
						row(w, "rolled back to:", res.To.ID, res.To.Description)
						row(w, "pre-rollback point:", res.PreRollback.ID, fmt.Sprintf("(undo with: strata snapshot rollback %s %d)", t.Arg(), res.PreRollback.ID))
						for _, ch := range out.DefinitionChanges {
							row(w, "definition:", ch.Key, ch.Old+" → "+ch.New)
						}
					})
				}),
			},
			{
				Name: "run", Usage: "take a pre point, run a command (no shell), take a post point; optionally roll back if it fails", ArgsUsage: "GUEST -- COMMAND [ARGS...]",
				Flags: []cli.Flag{volumeFlag,
					&cli.StringFlag{Name: "description", Usage: "what the update is (default: the command)"},
					&cli.BoolFlag{Name: "rollback-on-failure", Usage: "roll back to the pre point when the command exits non-zero (a running guest needs --restart)"},
					&cli.BoolFlag{Name: "restart", Usage: "with --rollback-on-failure, a running guest: stop it cleanly, roll back, start it again (else a running guest is refused before the command runs, exit 5)"},
					stopTimeoutFlag,
					maxPauseFlag, quiesceFlag,
				},
				Action: func(c *cli.Context) error {
					// The command is what followed the "--" that ended
					// strata's arguments, as given (it may hold "--" itself).
					command := appOf(c).afterDash
					if command == nil {
						return storage.Errorf(storage.ErrInvalid, "put the command after --, e.g. strata snapshot run GUEST -- apt-get upgrade -y")
					}
					args := c.Args().Slice()
					before := args[:max(0, len(args)-len(command))]
					if n := len(before); n > 0 && before[n-1] == "--" {
						before = before[:n-1]
					}
					t := snapshot.TargetRef{Name: c.String("volume"), Volume: true}
					if !c.IsSet("volume") {
						if len(before) != 1 {
							return storage.Errorf(storage.ErrInvalid, "snapshot run takes GUEST before -- (or --volume NAME)")
						}
						t = snapshot.TargetRef{Name: before[0]}
					} else if len(before) != 0 {
						return storage.Errorf(storage.ErrInvalid, "snapshot run --volume takes no GUEST before --")
					}
					live, err := liveOptions(c)
					if err != nil {
						return err
					}
					var m *snapshot.Manager
					var rollback func(ctx context.Context, ref string) error
					switch {
					case c.Bool("restart") && !c.Bool("rollback-on-failure"):
						return storage.Errorf(storage.ErrInvalid, "--restart is for the rollback of --rollback-on-failure: add it, or leave --restart out")
					case c.Bool("restart") && t.Volume:
						return storage.Errorf(storage.ErrInvalid, "--restart restarts a guest: a volume has none; leave it out")
					case c.Bool("restart"):
						// The lifecycle's stop, roll back, start again
						// (as rollback --restart).
						lm, err := openLifecycle(c)
						if err != nil {
							return err
						}
						m = lm.Points
						rollback = func(ctx context.Context, ref string) error {
							_, err := lm.Rollback(ctx, t.Name, ref, true, c.Duration("timeout"))
							return err
						}
					default:
						if _, m, err = openManager(c); err != nil {
							return err
						}
					}
					res, err := m.Run(c.Context, t, c.String("description"), c.Bool("rollback-on-failure"), rollback, live, command, os.Stdin, os.Stdout, os.Stderr)
					if err != nil {
						return err
					}
					if res.ExitCode != 0 {
						return exitWith(res.ExitCode)
					}
					return nil
				},
			},
			{
				Name: "prune", Usage: "delete the points no retention rule keeps (pinned points always stay)", ArgsUsage: "GUEST",
				Flags: append([]cli.Flag{volumeFlag,
					&cli.BoolFlag{Name: "dry-run", Usage: "only show what would be deleted"},
					&cli.BoolFlag{Name: "all", Usage: "apply every stored policy (for cron)"},
					&cli.BoolFlag{Name: "empty-pairs", Usage: "also delete pre/post pairs whose post shows no change (full-copy and reflink points; qcow2 points cannot be compared)"},
				}, policyFlags...),
				Action: func(c *cli.Context) error {
					p, err := policyOf(c)
					if err != nil {
						return err
					}
					_, m, err := openManager(c)
					if err != nil {
						return err
					}
					var results []snapshot.PruneResult
					if c.Bool("all") {
						if c.NArg() > 0 || c.IsSet("volume") || !p.Empty() || c.Bool("empty-pairs") {
							return storage.Errorf(storage.ErrInvalid, "prune --all applies the stored policies: give no target, no rule and no --empty-pairs")
						}
						if results, err = m.PruneAll(c.Context, c.Bool("dry-run")); err != nil {
							return err
						}
					} else {
						t, _, err := target(c)
						if err != nil {
							return err
						}
						res, err := m.Prune(c.Context, t, p, c.Bool("dry-run"), c.Bool("empty-pairs"))
						if err != nil {
							return err
						}
						results = []snapshot.PruneResult{res}
					}
					for _, r := range results {
						for i := range r.Decisions {
							r.Decisions[i].Point = r.Decisions[i].Point.Printable()
						}
					}
					return emit(c, results, func(w *tabwriter.Writer) {
						row(w, "TARGET", "ID", "CREATED", "ACTION", "KEPT BY")
						for _, r := range results {
							for _, d := range r.Decisions {
								action := "delete"
								if r.DryRun {
									action = "would delete"
								}
								if d.Keep {
									action = "keep"
								}
								if d.EmptyPair {
									action += " (empty pair)"
								}
								row(w, r.Target, d.Point.ID, d.Point.Created.Format(time.RFC3339), action, strings.Join(d.Reasons, ","))
							}
						}
					})
				},
			},
			{
				Name: "policy", Usage: "store (or show, without rules) a target's retention policy for prune", ArgsUsage: "GUEST",
				Flags: append([]cli.Flag{volumeFlag, &cli.BoolFlag{Name: "clear", Usage: "remove the stored policy"}}, policyFlags...),
				Action: func(c *cli.Context) error {
					t, _, err := target(c)
					if err != nil {
						return err
					}
					p, err := policyOf(c)
					if err != nil {
						return err
					}
					_, m, err := openManager(c)
					if err != nil {
						return err
					}
					if c.Bool("clear") && !p.Empty() {
						return storage.Errorf(storage.ErrInvalid, "--clear removes the stored policy: give it without rules")
					}
					if !p.Empty() || c.Bool("clear") {
						if err := m.SetPolicy(c.Context, t, p); err != nil {
							return err
						}
					}
					if p, err = m.GetPolicy(c.Context, t); err != nil {
						return err
					}
					return emit(c, p, func(w *tabwriter.Writer) {
						row(w, "keep-last:", p.KeepLast)
						row(w, "keep-hourly:", p.KeepHourly)
						row(w, "keep-daily:", p.KeepDaily)
						row(w, "keep-weekly:", p.KeepWeekly)
						row(w, "keep-monthly:", p.KeepMonthly)
						row(w, "older-than:", p.KeepWithin)
						row(w, "keep-pre-rollback:", p.PreRollback())
					})
				},
			},
			snapshotGuardCommand,
		},
	}
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
