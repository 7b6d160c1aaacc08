package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"
)

// Point guards: resume always happens under drivers without a watcher.
//
// The qemu driver's watcher resumes a guest whose pause hold's holder died
// (livehold.go). A driver with no process of strata's beside the guest
// (libvirt: libvirtd runs QEMU) has nobody to do it, so the strata that
// takes a live point of such a guest starts a guard first: a small process
// of its own (this binary, detached in a session of its own) that lives as
// long as the point. The two share a pipe whose only writer is the strata
// that takes the point: it writes one byte when the point is over (Done)
// and the guard exits; the kernel closes the pipe when that strata dies,
// however it dies (SIGKILL included), and the guard, reading end of file
// without the byte, knows at once that the point was left unfinished. It
// then resumes and thaws what the hold says, and finishes or undoes the
// point as the next command on the guest would. While the point runs, the
// guard also looks at the hold every tick: a hold past its deadline (a
// hung strata) is resumed over its holder's head, as the watcher does.

// GuardFDEnv names the guard's inherited descriptor: the pipe's reading
// end.
const GuardFDEnv = "STRATA_GUARD_FD"

// GuardReadyFDEnv names the guard's second descriptor: the writing end of
// a pipe on which it says, once (GuardReady), that it has read what it
// needs to resume the guest without the catalog. StartGuard waits for
// that (at most guardReadyWait), so a guest is never paused before its
// guard could resume it with the catalog held or unreachable.
const GuardReadyFDEnv = "STRATA_GUARD_READY_FD"

// guardReadyWait bounds StartGuard's wait for a guard to be ready: a guard
// that is slower starts all the same (it then reads what it needs when
// the point's strata dies).
var guardReadyWait = 10 * time.Second

// guardDone is the byte a point that is over writes to its guard.
const guardDone = 'd'

// HoldReleaser is a driver that resumes and thaws guests whose pause hold
// went stale by itself (the qemu driver's watcher): its live points need
// no guard.
type HoldReleaser interface {
	ReleasesHolds() bool
}

// Guard is the strata side of a point's guard process.
type Guard struct {
	w *os.File
}

// guardEnvDrop lists the test-only fault injection variables a guard does
// not inherit: it must not crash at the steps its point was told to.
var guardEnvDrop = []string{"STRATA_CRASH_AT=", "STRATA_STOP_AT=", "STRATA_TEST_KILL_GUEST_AT=", "STRATA_CRASH_TRACE="}

// StartGuard starts argv as a point's guard, detached (a session of its
// own, so that a signal to strata's process group does not reach it),
// with its output appended to logPath. The guard runs once StartGuard
// returns: from then on, strata's death is seen, and (unless it was not
// ready within guardReadyWait) the guard holds what it needs to resume
// the guest.
func StartGuard(argv []string, logPath string) (*Guard, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	// Both ends are close-on-exec: no other child of strata (qemu-img,
	// snapshot run's command) holds the writing end and keeps the guard
	// from seeing strata's death.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	rr, rw, err := os.Pipe()
	if err != nil {
		pw.Close()
		return nil, err
	}
	defer rr.Close()
	defer rw.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{pr, rw}
	for _, e := range os.Environ() {
		if !slices.ContainsFunc(guardEnvDrop, func(p string) bool { return strings.HasPrefix(e, p) }) {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, GuardFDEnv+"=3", GuardReadyFDEnv+"=4")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start the point's guard (%s): %w", strings.Join(argv, " "), err)
	}
	go func() { _ = cmd.Wait() }() // reaped in a long-lived caller
	rw.Close()                     // the guard's alone: a guard that dies is end of file
	awaitReady(rr)
	return &Guard{w: pw}, nil
}

// awaitReady waits (at most guardReadyWait) for the guard's byte on r.
func awaitReady(r *os.File) {
	_ = r.SetReadDeadline(time.Now().Add(guardReadyWait))
	var b [1]byte
	if _, err := r.Read(b[:]); err != nil {
		log.Debug().Err(err).Msg("the point's guard did not say it is ready: it reads what it needs when it must")
	}
}

// GuardReady is the guard's word that it has read what it needs to resume
// the guest (see GuardReadyFDEnv). Once; harmless without the descriptor.
func GuardReady() {
	fd, err := strconv.Atoi(os.Getenv(GuardReadyFDEnv))
	if err != nil || fd < 3 {
		return
	}
	f := os.NewFile(uintptr(fd), "guard-ready")
	_, _ = f.Write([]byte{'r'})
	f.Close()
	os.Unsetenv(GuardReadyFDEnv)
}

// Done tells the guard that the point is over: it exits. Nil-safe.
func (g *Guard) Done() {
	if g == nil || g.w == nil {
		return
	}
	if _, err := g.w.Write([]byte{guardDone}); err != nil {
		// Safe: the guard then reads end of file and does what the next
		// command would, which for a point that is over changes nothing.
		log.Debug().Err(err).Msg("the point's guard was not told it is over; it checks for itself")
	}
	g.w.Close()
	g.w = nil
}

// AwaitHolder is the guard's wait: it returns gone true when the strata
// that started it ended without Done (it died), false when the point is
// over. Every tick it runs tick (nil: none), which looks for a hold past
// its deadline.
func AwaitHolder(ctx context.Context, every time.Duration, tick func()) (gone bool, err error) {
	fd, err := strconv.Atoi(os.Getenv(GuardFDEnv))
	if err != nil || fd < 3 {
		return false, fmt.Errorf("a point's guard is started by strata with the pipe to it (%s); not by hand", GuardFDEnv)
	}
	f := os.NewFile(uintptr(fd), "guard")
	defer f.Close()
	type result struct {
		done bool
		err  error
	}
	got := make(chan result, 1)
	go func() {
		var b [1]byte
		for {
			n, err := f.Read(b[:])
			switch {
			case n == 1 && b[0] == guardDone:
				got <- result{done: true}
			case n == 1:
				// Not strata's (its only byte is guardDone): someone
				// who opened the pipe through /proc. Only the end of
				// file says that strata died.
				continue
			case errors.Is(err, io.EOF):
				got <- result{}
			default:
				got <- result{err: err}
			}
			return
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case r := <-got:
			return !r.done && r.err == nil, r.err
		case <-t.C:
			if tick != nil {
				tick()
			}
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}
