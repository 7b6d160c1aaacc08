package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lifecycle"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
)

func newSnapshotRollbackCommand() *cli.Command {
	return &cli.Command{
		Name: "rollback", Usage: "return to any restore point; the current state is kept as a pre-rollback point", ArgsUsage: "GUEST POINT",
		Flags: []cli.Flag{volumeFlag,
			&cli.BoolFlag{Name: "restart", Usage: "a running guest: stop it cleanly, roll back, start it again (else a running guest is refused, exit 5)"},
			&cli.BoolFlag{Name: "memory", Usage: "resume the guest from the point's saved memory (a point taken with create --memory) instead of leaving it stopped: it continues where it was, without a boot"},
			stopTimeoutFlag,
		},
		Action: snapshotRollbackAction,
	}
}

func snapshotRollbackAction(c *cli.Context) error {
	t, args, err := target(c, "POINT")
	if err != nil {
		return err
	}
	lm, err := openLifecycle(c)
	if err != nil {
		return err
	}
	res, err := rollback(c, lm, t, args[0])
	if err != nil {
		return err
	}
	return emitRollback(c, t, res)
}

// rollback rolls a volume back, or a guest through its lifecycle (which
// stops and starts it with --restart, and resumes it from the point's
// memory with --memory).
func rollback(c *cli.Context, lm *lifecycle.Manager, t snapshot.TargetRef, point string) (snapshot.RollbackResult, error) {
	switch {
	case t.Volume && c.Bool("memory"):
		return snapshot.RollbackResult{}, storage.Errorf(storage.ErrInvalid, "a volume has no memory state: leave --memory out")
	case t.Volume:
		return lm.Points.Rollback(c.Context, t, point)
	case c.Bool("memory"):
		return lm.RollbackResume(c.Context, t.Name, point, c.Bool("restart"), c.Duration("timeout"))
	}
	return lm.Rollback(c.Context, t.Name, point, c.Bool("restart"), c.Duration("timeout"))
}

// emitRollback prints where a rollback went, the pre-rollback point that
// undoes it, and what it changed in the guest's definition.
func emitRollback(c *cli.Context, t snapshot.TargetRef, res snapshot.RollbackResult) error {
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
}

// rollbackOutput is what snapshot rollback prints: the points, and what
// the rollback changed in the guest's definition.
type rollbackOutput struct {
	snapshot.RollbackResult
	DefinitionChanges []registry.Change `json:"definition_changes"`
}

// definitionChanges says what a rollback changed in a guest's definition:
// the pre-rollback point holds it as it was, the point rolled back to as
// it is now (the name aside: a rollback does not undo a rename). A
// definition it cannot read or compare (a point from an older strata)
// shows as no change: the rollback itself is done and reported either way.
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
