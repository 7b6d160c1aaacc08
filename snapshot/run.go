package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// RunResult is the outcome of Run.
type RunResult struct {
	Pre        Point  `json:"pre"`
	Post       *Point `json:"post"`
	ExitCode   int    `json:"exit_code"`
	RolledBack bool   `json:"rolled_back"`
	// PostUndoesRollback: the post point is also the rollback's undo
	// point, taken by the rollback in place of its pre-rollback point
	// (full-copy volumes: see Run).
	PostUndoesRollback bool `json:"post_undoes_rollback,omitempty"`
}

// Run takes a pre point, runs argv (no shell) with the given stdio, takes
// a post point paired with the pre, and, if the command failed and
// rollbackOnFailure is set, rolls back to the pre point (keeping the post
// point, so the failed state can still be examined). The target's lock is
// not held while the command runs. A running guest's points are taken
// live (live says how).
//
// rollback, if set, is how the rollback happens (snapshot run --restart:
// the lifecycle's stop, roll back, start again of a running guest);
// without it a running guest cannot be rolled back, so rollbackOnFailure
// of a guest that runs is refused (ErrInUse) before anything is taken or
// run, rather than after the command failed.
func (m *Manager) Run(ctx context.Context, r TargetRef, description string, rollbackOnFailure bool, rollback func(ctx context.Context, ref string) error, live LiveOptions, argv []string, stdin io.Reader, stdout, stderr io.Writer) (RunResult, error) {
	if len(argv) == 0 {
		return RunResult{}, storage.Errorf(storage.ErrInvalid, "give the command to run after --, e.g. strata snapshot run %s -- apt-get upgrade -y", r.Name)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return RunResult{}, storage.Errorf(storage.ErrInvalid, "command %q not found: give a program on PATH or its full path", argv[0])
	}
	if rollbackOnFailure && rollback == nil && !r.Volume {
		if err := m.refuseRunning(ctx, r); err != nil {
			return RunResult{}, err
		}
	}
	if rollback == nil {
		rollback = func(ctx context.Context, ref string) error {
			_, err := m.Rollback(ctx, r, ref)
			return err
		}
	}
	if description == "" {
		description = strings.Join(argv, " ")
	}
	var res RunResult
	if res.Pre, err = m.Create(ctx, r, CreateOptions{Kind: KindPre, Description: description, LiveOptions: live}); err != nil {
		return res, err
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// strata stopped (SIGINT, SIGTERM) passes the stop on, so that the
	// update can clean up, rather than killing it outright.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	runErr := cmd.Run()
	var ee *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &ee):
		res.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int(ws.Signal()) // as a shell reports it
		} else if res.ExitCode < 0 {
			res.ExitCode = 128
		}
	default:
		return res, fmt.Errorf("run %q: %w (pre point %d was taken)", argv[0], runErr, res.Pre.ID)
	}
	// Once the command has ended, the post point (and a rollback asked
	// for) happen even if strata was told to stop meanwhile: they record
	// what the command left.
	ctx = context.WithoutCancel(ctx)
	if res.ExitCode != 0 && rollbackOnFailure && m.copies(res.Pre) {
		return m.runRollbackAsPost(ctx, r, res, description, rollback, live)
	}
	post, err := m.Create(ctx, r, CreateOptions{Kind: KindPost, PreID: res.Pre.ID, Description: description, LiveOptions: live})
	if err != nil {
		return res, err
	}
	res.Post = &post
	if res.ExitCode != 0 && rollbackOnFailure {
		log.Warn().Int("exit_code", res.ExitCode).Int("pre", res.Pre.ID).Msg("the command failed: rolling back to the pre point")
		if err := rollback(ctx, fmt.Sprint(res.Pre.ID)); err != nil {
			return res, fmt.Errorf("the command exited %d, and the rollback to pre point %d failed: %w", res.ExitCode, res.Pre.ID, err)
		}
		res.RolledBack = true
	}
	return res, nil
}

// A failed command's post point and its rollback's pre-rollback point
// hold the same state: what the command left. Where a point is O(1)
// (qcow2-internal, reflink) two cost nothing; where it is a full copy they
// would be two copies of the same bytes, the post one a copy of the whole
// disk made only to be followed by the rollback. So on full-copy volumes
// the rollback's own undo point is the post point (kind post, paired with
// the pre point): it holds the live data the rollback moves aside (a
// pre-rollback point of a full-copy volume copies nothing), and there is
// no separate pre-rollback point. A rollback that fails before taking it
// leaves the live data as the command left it: the post point is then
// taken as usual.

// copies tells whether any disk of p is a full copy (not O(1) to take).
func (m *Manager) copies(p Point) bool {
	for _, d := range p.Disks {
		if _, pm, err := m.pointDriver(d); err == nil && !pm.O1Take {
			return true
		}
	}
	return false
}

// runRollbackAsPost rolls back after a failed command with the rollback's
// undo point taken as the post point (see above).
func (m *Manager) runRollbackAsPost(ctx context.Context, r TargetRef, res RunResult, description string, rollback func(ctx context.Context, ref string) error, live LiveOptions) (RunResult, error) {
	log.Warn().Int("exit_code", res.ExitCode).Int("pre", res.Pre.ID).Msg("the command failed: rolling back to the pre point; its undo point is the post point (full-copy volumes: one copy of the state the command left, not two)")
	rerr := rollback(withPostOf(ctx, postOf{pre: res.Pre.ID, description: description}), fmt.Sprint(res.Pre.ID))
	post, found, err := m.postOf(r, res.Pre.ID)
	if err != nil {
		return res, errors.Join(rerr, err)
	}
	if found {
		res.Post, res.PostUndoesRollback = &post, true
	}
	if rerr != nil {
		if !found {
			// Nothing was moved: the live data is what the command left.
			if post, err := m.Create(ctx, r, CreateOptions{Kind: KindPost, PreID: res.Pre.ID, Description: description, LiveOptions: live}); err == nil {
				res.Post = &post
			} else {
				rerr = errors.Join(rerr, fmt.Errorf("and the post point: %w", err))
			}
		}
		return res, fmt.Errorf("the command exited %d, and the rollback to pre point %d failed: %w", res.ExitCode, res.Pre.ID, rerr)
	}
	res.RolledBack = true
	return res, nil
}

// postOf returns the post point paired with pre point pre of r, if any.
func (m *Manager) postOf(r TargetRef, pre int) (Point, bool, error) {
	var out Point
	var found bool
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		t, err := r.resolve(tx)
		if err != nil {
			return err
		}
		return tx.Scan(bPoints, t.Key.String()+"/", func(_ string, raw []byte) error {
			var p Point
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			if p.State == stateReady && p.Kind == KindPost && p.PreID != nil && *p.PreID == pre {
				p.Target = t.String()
				out, found = p, true
			}
			return nil
		})
	})
	return out, found, err
}

// postOf, in a rollback's context, says that the rollback to pre point
// pre takes its undo point as that point's post point.
type postOf struct {
	pre         int
	description string
}

type postOfKey struct{}

func withPostOf(ctx context.Context, p postOf) context.Context {
	return context.WithValue(ctx, postOfKey{}, p)
}

// refuseRunning refuses a guest that runs: snapshot run could take its
// points, but not roll it back without stopping it.
func (m *Manager) refuseRunning(ctx context.Context, r TargetRef) error {
	t, err := m.target(r)
	if err != nil {
		return err
	}
	l, err := m.liveOf(ctx, t)
	if l == nil || err != nil {
		// A guest whose driver cannot take live points is refused by
		// the pre point itself, with the reason.
		return nil
	}
	l.close()
	return storage.Errorf(storage.ErrInUse, "guest %q is running: a rollback after the command failed would need it stopped; add --restart (stop it cleanly, roll back, start it again), or stop the guest first", r.Name)
}
