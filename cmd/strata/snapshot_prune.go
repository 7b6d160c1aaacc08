package main

import (
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
)

// Retention: snapshot prune, and the policies it applies (snapshot policy).

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

// openWithPolicy reads the retention rules given (policyOf), then opens the
// restore-point manager.
func openWithPolicy(c *cli.Context) (*snapshot.Manager, snapshot.Policy, error) {
	p, err := policyOf(c)
	if err != nil {
		return nil, p, err
	}
	m, err := openPoints(c)
	return m, p, err
}

func newSnapshotPruneCommand() *cli.Command {
	return &cli.Command{
		Name: "prune", Usage: "delete the points no retention rule keeps (pinned points always stay)", ArgsUsage: "GUEST",
		Flags: append([]cli.Flag{volumeFlag,
			&cli.BoolFlag{Name: "dry-run", Usage: "only show what would be deleted"},
			&cli.BoolFlag{Name: "all", Usage: "apply every stored policy (for cron)"},
			&cli.BoolFlag{Name: "empty-pairs", Usage: "also delete pre/post pairs whose post shows no change (full-copy and reflink points; qcow2 points cannot be compared)"},
		}, policyFlags...),
		Action: snapshotPruneAction,
	}
}

func snapshotPruneAction(c *cli.Context) error {
	m, p, err := openWithPolicy(c)
	if err != nil {
		return err
	}
	return printResult(c, emitPruned)(prune(c, m, p))
}

// prune applies p to the target, or with --all every stored policy.
func prune(c *cli.Context, m *snapshot.Manager, p snapshot.Policy) ([]snapshot.PruneResult, error) {
	if c.Bool("all") {
		if c.NArg() > 0 || c.IsSet("volume") || !p.Empty() || c.Bool("empty-pairs") {
			return nil, storage.Errorf(storage.ErrInvalid, "prune --all applies the stored policies: give no target, no rule and no --empty-pairs")
		}
		return m.PruneAll(c.Context, c.Bool("dry-run"))
	}
	t, _, err := target(c)
	if err != nil {
		return nil, err
	}
	res, err := m.Prune(c.Context, t, p, c.Bool("dry-run"), c.Bool("empty-pairs"))
	return []snapshot.PruneResult{res}, err
}

// emitPruned prints what prune decided for each point, and why.
func emitPruned(c *cli.Context, results []snapshot.PruneResult) error {
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
}

func newSnapshotPolicyCommand() *cli.Command {
	return &cli.Command{
		Name: "policy", Usage: "store (or show, without rules) a target's retention policy for prune", ArgsUsage: "GUEST",
		Flags:  append([]cli.Flag{volumeFlag, &cli.BoolFlag{Name: "clear", Usage: "remove the stored policy"}}, policyFlags...),
		Action: snapshotPolicyAction,
	}
}

func snapshotPolicyAction(c *cli.Context) error {
	t, _, err := target(c)
	if err != nil {
		return err
	}
	m, p, err := openWithPolicy(c)
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
	return printResult(c, emitPolicy)(m.GetPolicy(c.Context, t))
}

func emitPolicy(c *cli.Context, p snapshot.Policy) error {
	return emit(c, p, func(w *tabwriter.Writer) {
		row(w, "keep-last:", p.KeepLast)
		row(w, "keep-hourly:", p.KeepHourly)
		row(w, "keep-daily:", p.KeepDaily)
		row(w, "keep-weekly:", p.KeepWeekly)
		row(w, "keep-monthly:", p.KeepMonthly)
		row(w, "older-than:", p.KeepWithin)
		row(w, "keep-pre-rollback:", p.PreRollback())
	})
}
