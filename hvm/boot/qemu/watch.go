package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/hvm/qmp"
)

// Watch watches the QEMU of the guest whose runtime directory is runDir
// until it ends, then records why (stopped.json) and clears state.json.
// It is the body of the hidden command `strata guest __watch RUNDIR`,
// which the driver starts detached; it carries out the lifecycle actions
// QEMU cannot (restart after a power-off or a panic). It returns when the
// guest has stopped and its stop is recorded, or at once when the guest
// does not run.
func Watch(ctx context.Context, runDir string) error {
	rd := &boot.RunDir{Dir: runDir}
	run, err := watchedRun(rd)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	c, err := takeEvents(ctx, rd, run, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	me, err := boot.ProcStart(os.Getpid())
	if err != nil {
		return err
	}
	if err := boot.WriteRuntimeJSON(rd.Path(watcherFile), watcher{PID: os.Getpid(), Start: me}); err != nil {
		return err
	}
	signalReady()
	st, err := waitRecorded(ctx, rd, c, deadline)
	if err != nil {
		return err
	}
	sd, err := ownStart(rd, run)
	if err != nil {
		return err
	}
	if sd.OwnSerial {
		max := sd.SerialLogMax
		if max <= 0 {
			max = DefaultSerialLogMax
		}
		defer capLog(rd.Path(SerialLog), max, 100*time.Millisecond)()
	}
	w := &guestWatch{rd: rd, c: c, sd: sd, rec: diedUnseen()}
	w.follow(ctx)
	// QEMU closed its socket: it is on its way out. The stop is recorded
	// only once its process is gone, so that nobody is told the guest
	// stopped while QEMU still holds its disks.
	if !boot.WaitGone(ctx, st, 0) {
		return ctx.Err()
	}
	if w.rec.At.IsZero() {
		w.rec.At = time.Now().UTC()
	}
	return finish(rd, st, w.rec)
}

// watchedRun is the run id of the start that ran this watcher. The start
// that ran it wrote started.json first; a later start writes its own
// (another run id). A watcher whose start was killed before state.json
// must not take the next start's guest (QEMU serves one client on the
// events socket): it watches only the state.json of its own
// started.json. The run id comes from the start itself (the
// environment), not from started.json, which a start right after a
// killed one may already have rewritten when this watcher reads it.
func watchedRun(rd *boot.RunDir) (string, error) {
	if run := os.Getenv(WatchRunEnv); run != "" {
		return run, nil
	}
	mine, err := readStarted(rd)
	if err != nil || mine == nil {
		return "", fmt.Errorf("no guest is starting in %s (%v)", rd.Dir, err)
	}
	return mine.Run, nil
}

// ownStart reads started.json and checks it is still the watcher's own
// start's.
func ownStart(rd *boot.RunDir, run string) (*started, error) {
	sd, err := readStarted(rd)
	if err != nil {
		return nil, err
	}
	if sd == nil || sd.Run != run {
		return nil, fmt.Errorf("the start that ran this watcher in %s was abandoned; another start runs the guest", rd.Dir)
	}
	return sd, nil
}

// takeEvents connects to QEMU's events socket. Started before QEMU (so
// that its start-up overlaps QEMU's), the watcher takes the socket as
// soon as QEMU opens it, while its start still talks to QEMU: the guest
// runs (cont) only once the watcher holds it. Before each try it checks
// that started.json is still its start's: a watcher whose start was
// killed must not take the next start's QEMU. A start that fails kills
// it; one whose strata died leaves it to give up at the deadline.
func takeEvents(ctx context.Context, rd *boot.RunDir, run string, deadline time.Time) (*qmp.Client, error) {
	for {
		if _, err := ownStart(rd, run); err != nil {
			return nil, err
		}
		if _, err := os.Lstat(rd.Path(eventsSock)); err == nil {
			dctx, cancel := context.WithTimeout(ctx, time.Until(deadline))
			c, err := qmp.Dial(dctx, rd.Path(eventsSock))
			cancel()
			if err == nil {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no guest started in %s within 10 s", rd.Dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(socketPoll):
		}
	}
}

// waitRecorded waits for the start to write state.json (QEMU's pid),
// which it does before it lets the guest run: events that come
// meanwhile wait in the client's buffer.
func waitRecorded(ctx context.Context, rd *boot.RunDir, c *qmp.Client, deadline time.Time) (*boot.RunState, error) {
	for {
		st, err := rd.ReadState()
		if err != nil || st != nil {
			return st, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no guest started in %s within 10 s", rd.Dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.Done():
			return nil, fmt.Errorf("QEMU closed its events socket before its start recorded it")
		case <-time.After(boot.PollInterval):
		}
	}
}

// diedUnseen is the stop record until QEMU says why it stops.
func diedUnseen() boot.StopRecord {
	return boot.StopRecord{Reason: boot.ReasonDied, Detail: "QEMU ended without a shutdown event (killed from outside, or it crashed)"}
}

// guestWatch follows one running guest's events: rec is why it stops, as
// far as the events said; quitting is set once the watcher told QEMU to
// quit (that quit's own SHUTDOWN does not replace the reason).
type guestWatch struct {
	rd       *boot.RunDir
	c        *qmp.Client
	sd       *started
	rec      boot.StopRecord
	quitting bool
}

// follow reads QEMU's events until it closes the socket. A live point's
// pause hold (boot.PauseHold) whose holder died, or hung past its
// deadline, is resumed and thawed here: resume always happens, even
// when strata does not live to do it.
func (w *guestWatch) follow(ctx context.Context) {
	thawTries := map[string]int{}
	tick := time.NewTicker(holdPoll)
	defer tick.Stop()
	events := w.c.Events()
	for {
		select {
		case <-tick.C:
			releaseHold(ctx, w.rd, w.c, thawTries)
		case ev, ok := <-events:
			if !ok {
				return
			}
			w.event(ctx, ev)
		}
	}
}

// event records why the guest stops and carries out the lifecycle action
// QEMU paused for instead (its -action shutdown=pause, panic=pause).
func (w *guestWatch) event(ctx context.Context, ev qmp.Event) {
	switch ev.Name {
	case "SHUTDOWN":
		if w.quitting {
			return
		}
		var data struct {
			Guest  bool   `json:"guest"`
			Reason string `json:"reason"`
		}
		eventData(ev, &data)
		r, detail, want, guest := classify(data.Reason, w.sd)
		w.rec = boot.StopRecord{At: ev.Time.UTC(), Reason: r, Detail: detail}
		if guest && w.sd.Actions.Shutdown == "pause" {
			w.act(ctx, want)
		}
	case "GUEST_PANICKED":
		var data struct {
			Action string `json:"action"`
		}
		eventData(ev, &data)
		w.rec = boot.StopRecord{At: ev.Time.UTC(), Reason: boot.ReasonCrash, Detail: "the guest panicked"}
		if data.Action == "pause" {
			w.act(ctx, w.sd.OnCrash)
		}
	}
}

// eventData decodes an event's data into v. Data QEMU did not send as
// expected leaves v empty, which reads as a stop for an unknown reason
// (recorded as such) and no action: safe, and said on stderr.
func eventData(ev qmp.Event, v any) {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		fmt.Fprintf(os.Stderr, "event %s: its data is not what QEMU sends (%v); read as no data\n", ev.Name, err)
	}
}

// act carries out a lifecycle action on a guest QEMU paused: preserve
// keeps it, restart resets and runs it, destroy makes QEMU quit. Nothing
// is done while strata itself is ending the guest.
func (w *guestWatch) act(ctx context.Context, want string) {
	if readIntent(w.rd) != nil {
		return // strata is ending the guest
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch {
	case want == "preserve":
	case isRestart(want):
		if _, err := w.c.Execute(actx, "system_reset", nil); err != nil {
			fmt.Fprintln(os.Stderr, "restart:", err)
			return
		}
		if _, err := w.c.Execute(actx, "cont", nil); err != nil {
			fmt.Fprintln(os.Stderr, "restart:", err)
			return
		}
		w.rec = diedUnseen()
	default: // destroy
		w.quitting = true
		if _, err := w.c.Execute(actx, "quit", nil); err != nil {
			fmt.Fprintln(os.Stderr, "quit:", err)
		}
	}
}

// holdPoll is how often the watcher looks for a stale pause hold.
const holdPoll = 200 * time.Millisecond

// maxThawTries bounds the watcher's thaws of one point's frozen
// filesystems: an agent that never thaws (hung, or hostile) is left to
// guest status, which reports it, and doctor --repair.
const maxThawTries = 3

// releaseHold resumes (and thaws) a guest that a stale pause hold keeps
// paused or frozen, and removes the hold once that is done; a hold that is
// not stale is its live holder's.
func releaseHold(ctx context.Context, rd *boot.RunDir, c *qmp.Client, thawTries map[string]int) {
	h, err := rd.ReadHold()
	if err != nil || h == nil || !h.Stale() {
		return
	}
	if h.Frozen && !h.Paused && thawTries[h.Point] >= maxThawTries {
		return // left for status to report and doctor --repair to retry
	}
	if resumed, err := boot.ResumeHeld(ctx, c, h); err != nil {
		fmt.Fprintln(os.Stderr, "resume the guest an interrupted restore point left paused:", err)
		return
	} else if resumed {
		fmt.Fprintf(os.Stderr, "%s resumed the guest an interrupted restore point (pid %d) left paused\n", time.Now().UTC().Format(time.RFC3339), h.PID)
	}
	if h.Frozen {
		if err := thawHeld(ctx, rd); err != nil {
			thawTries[h.Point]++
			fmt.Fprintln(os.Stderr, "thaw the filesystems an interrupted quiesced restore point left frozen:", err)
			if h.Paused {
				// Resumed: the hold now says only frozen.
				h.Paused = false
				if err := boot.WriteRuntimeJSON(rd.Path(boot.HoldFile), h); err != nil {
					// Safe: the hold still says paused, so the next
					// tick resumes a running guest again (a no-op).
					fmt.Fprintln(os.Stderr, "record that the guest runs again:", err)
				}
			}
			return // tried again at the next tick, up to maxThawTries
		}
		fmt.Fprintf(os.Stderr, "%s thawed the guest's filesystems an interrupted restore point (pid %d) left frozen\n", time.Now().UTC().Format(time.RFC3339), h.PID)
	}
	if err := rd.ClearHold(h.Point); err != nil {
		// Safe: the stale hold is released again at the next tick, a
		// no-op for a guest that runs and is thawed.
		fmt.Fprintln(os.Stderr, "clear the released pause hold:", err)
	}
}

// thawHeld thaws the guest's filesystems through its agent's socket
// (free once the strata that froze them is gone).
func thawHeld(ctx context.Context, rd *boot.RunDir) error {
	dctx, cancel := context.WithTimeout(ctx, AgentAnswerTimeout)
	defer cancel()
	a, err := qga.Dial(dctx, rd.Path(agentSock))
	if err != nil {
		return err
	}
	defer a.Close()
	_, err = qga.Thaw(ctx, a)
	return err
}

// classify maps the reason of a SHUTDOWN event onto a stop reason, a
// detail, the definition's lifecycle action for it and whether the guest
// caused it.
func classify(reason string, sd *started) (string, string, string, bool) {
	switch reason {
	case "guest-shutdown":
		return boot.ReasonPoweroff, "the guest powered off", sd.OnPoweroff, true
	case "guest-reset":
		return boot.ReasonReboot, "the guest rebooted and on_reboot is " + sd.OnReboot, sd.OnReboot, true
	case "guest-panic":
		return boot.ReasonCrash, "the guest panicked", sd.OnCrash, true
	case "host-qmp-quit":
		return boot.ReasonQuit, "QEMU was told to quit over QMP, not by strata", "", false
	case "host-signal":
		return boot.ReasonDied, "QEMU was ended by a signal, not by strata", "", false
	case "host-ui":
		return boot.ReasonDied, "QEMU's window was closed", "", false
	}
	return boot.ReasonDied, "QEMU shut down (" + reason + ")", "", false
}

// WatchRunEnv is the environment variable that tells a watcher the run it
// was started for.
const WatchRunEnv = "STRATA_WATCH_RUN"

// WatchReadyEnv names the watcher's inherited file descriptor (a pipe to
// its start) on which it writes one byte once it holds the events socket.
const WatchReadyEnv = "STRATA_WATCH_READY"

// signalReady tells the start that ran this watcher that it is ready, and
// closes the pipe (a watcher run by hand has none).
func signalReady() {
	fd, err := strconv.Atoi(os.Getenv(WatchReadyEnv))
	if err != nil || fd < 3 {
		return
	}
	f := os.NewFile(uintptr(fd), "watcher-ready")
	if _, err := f.Write([]byte{1}); err != nil {
		// The start then reads a closed pipe and fails, quoting this
		// line of the watcher's log.
		fmt.Fprintln(os.Stderr, "tell the start the watcher is ready:", err)
	}
	f.Close()
}
