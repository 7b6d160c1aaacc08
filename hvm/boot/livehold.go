package boot

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm/qmp"
)

// Pause holds: resume always happens, even when strata dies.
//
// A live point pauses the guest (and, with --quiesce, freezes its
// filesystems) for a moment; the strata process that does it resumes and
// thaws it whatever fails. A strata killed in between cannot, so before it
// freezes or pauses it writes a pause hold (hold.json) in the guest's
// runtime directory: who holds the guest (pid, start time and boot id, as
// state.json names QEMU), for which point, whether the guest is paused and
// its filesystems frozen, and until when. It rewrites the hold as it
// resumes and removes it once the guest runs and is thawed. A hold whose
// holder is gone, or whose deadline has passed, is stale: the guest's
// watcher (the qemu driver's `guest __watch`) resumes and thaws the guest
// within a moment (ResumeHeld), and `guest status` of a guest a stale hold
// keeps paused says so. A guest its admin paused gets no hold (the point
// neither pauses nor resumes it), so nothing here resumes it.

// HoldFile is the pause hold's file in the runtime directory.
const HoldFile = "hold.json"

// PauseHold is a live point's claim on a guest it paused or froze.
type PauseHold struct {
	PID    int    `json:"pid"`
	Start  uint64 `json:"pid_start"`
	BootID string `json:"boot_id"`
	// Point is the point's LiveRequest.ID.
	Point string `json:"point"`
	// Paused: the point paused the guest (QMP stop) and has not resumed
	// it yet; Frozen: it asked the guest agent to freeze the guest's
	// filesystems and has not thawed them yet.
	Paused bool `json:"paused"`
	Frozen bool `json:"frozen"`
	// Deadline: after it the hold is stale even if its holder runs (a
	// hung strata); zero: only the holder's end makes it stale.
	Deadline time.Time `json:"deadline,omitzero"`
}

// HoldSlack is how long past its own bound (--max-pause, and the agent's
// freeze deadline) a live strata keeps its hold before the watcher
// resumes the guest over its head.
var HoldSlack = 30 * time.Second

// Stale reports whether the hold's holder is gone or its deadline passed.
func (h *PauseHold) Stale() bool {
	if h.BootID != BootID() || !SameProcess(h.PID, h.Start) {
		return true
	}
	return !h.Deadline.IsZero() && time.Now().After(h.Deadline)
}

// ReadHold returns the guest's pause hold, or nil when there is none.
func (r *RunDir) ReadHold() (*PauseHold, error) {
	var h PauseHold
	ok, err := ReadJSON(r.Path(HoldFile), &h)
	if !ok || err != nil {
		return nil, err
	}
	return &h, nil
}

// ClearHold removes the guest's pause hold if it is still the one for
// point (another point's hold is left alone; "" removes any).
func (r *RunDir) ClearHold(point string) error {
	if point != "" {
		if h, err := r.ReadHold(); err != nil || h == nil || h.Point != point {
			return err
		}
	}
	err := os.Remove(r.Path(HoldFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// holder writes and clears the hold of one live point (no-op without a
// runtime directory).
type holder struct {
	rd       *RunDir
	h        PauseHold
	deadline time.Duration
}

func newHolder(req LiveRequest) (*holder, error) {
	if req.Hold == nil {
		return nil, nil
	}
	start, err := ProcStart(os.Getpid())
	if err != nil {
		return nil, err
	}
	var d time.Duration
	if req.MaxPause > 0 {
		d = req.MaxPause + HoldSlack
		if req.Freeze != nil {
			// The agent may take its freeze deadline to freeze.
			d += time.Minute
		}
	}
	return &holder{rd: req.Hold, h: PauseHold{PID: os.Getpid(), Start: start, BootID: BootID(), Point: req.ID}, deadline: d}, nil
}

// set records the guest's state as the point leaves it.
func (h *holder) set(paused, frozen bool) error {
	if h == nil {
		return nil
	}
	if !paused && !frozen {
		return h.rd.ClearHold(h.h.Point)
	}
	h.h.Paused, h.h.Frozen = paused, frozen
	if h.deadline > 0 && h.h.Deadline.IsZero() {
		h.h.Deadline = time.Now().Add(h.deadline).UTC()
	}
	return WriteRuntimeJSON(h.rd.Path(HoldFile), h.h)
}

// keep is set for a point already past its work, whose own error (if
// any) matters more: a hold that cannot be written or cleared is logged.
// That is safe: a stale hold makes the watcher resume and thaw the guest
// once this process ends, which a running, thawed guest takes as a no-op;
// for a guest left paused whose hold could not be written, the warning
// is what tells the admin to resume it.
func (h *holder) keep(paused, frozen bool) {
	if err := h.set(paused, frozen); err != nil {
		log.Warn().Err(err).Bool("paused", paused).Bool("frozen", frozen).Msg("the live point's pause hold was not updated")
	}
}

// ResumeHeld resumes a guest that the stale hold h keeps paused, through
// mon: a memory point's migration still running is cancelled first, and
// a guest in QEMU's paused or postmigrate state runs again. Thawing h's
// frozen filesystems is the caller's (through the guest agent, once the
// guest runs). It reports whether it resumed the guest.
func ResumeHeld(ctx context.Context, mon Monitor, h *PauseHold) (bool, error) {
	if !h.Paused {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	abandonMemory(ctx, mon)
	raw, err := mon.Execute(ctx, "query-status", nil)
	if err != nil {
		return false, err
	}
	var s qmp.Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return false, err
	}
	if s.Status != "paused" && s.Status != "postmigrate" {
		return false, nil
	}
	if _, err := mon.Execute(ctx, "cont", nil); err != nil {
		return false, err
	}
	return true, nil
}
