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
func (m *Manager) Run(ctx context.Context, r TargetRef, description string, rollbackOnFailure bool, live LiveOptions, argv []string, stdin io.Reader, stdout, stderr io.Writer) (RunResult, error) {
	if len(argv) == 0 {
		return RunResult{}, storage.Errorf(storage.ErrInvalid, "give the command to run after --, e.g. strata snapshot run %s -- apt-get upgrade -y", r.Name)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return RunResult{}, storage.Errorf(storage.ErrInvalid, "command %q not found: give a program on PATH or its full path", argv[0])
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
		if _, err := m.Rollback(ctx, r, fmt.Sprint(res.Pre.ID)); err != nil {
			return res, err
		}
		res.RolledBack = true
	}
	return res, nil
}
