package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
)

// RunResult is the outcome of Run.
type RunResult struct {
	Pre        Point  `json:"pre"`
	Post       *Point `json:"post"`
	ExitCode   int    `json:"exit_code"`
	RolledBack bool   `json:"rolled_back"`
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
		description = fmt.Sprint(argv)
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
