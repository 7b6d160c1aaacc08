package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
)

// Live points: restore points of a guest that runs, taken through the
// driver that runs it (hvm/boot: TakeLive) in one pause that covers every
// disk. A point records how consistent it is (Point.Consistency) and, for
// a live one, how long the guest was paused (Point.PauseMS).
//
// Per method: qcow2-internal disks get their internal snapshots in one
// QMP transaction; reflink disks are cloned (FICLONE) during the pause;
// full-copy disks get a point-in-time copy that QEMU writes while the
// guest runs again (blockdev-backup, started in the same transaction), so
// the pause never lasts a copy. A live point is recorded (state creating,
// Live) before the guest is paused: a strata killed in between leaves a
// record that the next command on the guest undoes, resuming the guest if
// it is still paused and removing what QEMU made. A memory point (--memory,
// memory.go) also saves the guest's RAM in the same pause.

// Consistency of a point taken while the guest did not run: the disks as
// the guest left them when it stopped.
const consistencyOffline = "offline"

// DefaultMaxPause bounds a live point's pause unless told otherwise.
const DefaultMaxPause = time.Second

// liveGuest is the monitor of a running guest.
type liveGuest struct {
	name   string
	driver string
	mon    boot.Monitor
	paused bool // by its admin, before the point
	pid    int  // the guest's process, where the driver knows it
	// memory: nil when the driver can save the guest's memory, else why
	// not; ramMiB: the guest's memory as defined.
	memory error
	ramMiB int
	drv    boot.Driver
	bg     *boot.Guest
	agent  qga.Agent // the guest agent of a quiesced point (quiesce.go)
}

// killGuestAt is the test-only fault injection hook next to crashAt:
// STRATA_TEST_KILL_GUEST_AT names a step at which strata kills the
// guest's process (SIGKILL), as a crash of QEMU would.
var killGuestAt = os.Getenv("STRATA_TEST_KILL_GUEST_AT")

func killGuest(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 500 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *liveGuest) close() {
	if l != nil {
		l.mon.Close()
		if l.agent != nil {
			l.agent.Close()
		}
	}
}

// liveOf returns the monitor of t's guest if it runs (nil if it does not,
// or t is a volume). A guest that runs under a driver that cannot take
// points of running guests is an error of kind ErrInUse saying why.
func (m *Manager) liveOf(ctx context.Context, t Target) (*liveGuest, error) {
	return m.liveOfDef(ctx, t, nil)
}

// liveOfDef is liveOf with t's definition resolved already (nil: read it
// from the catalog).
func (m *Manager) liveOfDef(ctx context.Context, t Target, def *hvm.Guest) (*liveGuest, error) {
	if m.Drivers == nil || t.Kind() != catalog.KindGuest {
		return nil, nil
	}
	id := t.Key.ID()
	rd := &boot.RunDir{Dir: filepath.Join(m.st.Catalog.Home(), "run", id)}
	st, err := rd.ReadState()
	if err != nil || st == nil {
		return nil, err
	}
	d, err := m.Drivers.Get(st.Driver)
	if err != nil {
		return nil, err
	}
	if def == nil {
		if def, err = registry.New(m.st).Resolved(ctx, t.Name); err != nil {
			return nil, err
		}
	}
	bg := &boot.Guest{ID: id, Def: def, Run: rd}
	s, err := d.Status(ctx, bg)
	if err != nil {
		return nil, err
	}
	if !s.State.Live() {
		return nil, nil
	}
	lm, ok := d.(boot.LiveMonitor)
	if err := d.Supports(def, boot.LivePoints); err != nil || !ok {
		if l := stateOnly(ctx, t, d, bg, s); l != nil {
			return l, nil // a memory point through the driver's save (memory.go)
		}
		why := fmt.Sprintf("the %s driver cannot take points of a running guest", d.Name())
		if err != nil {
			why = err.Error()
		}
		return nil, storage.Errorf(storage.ErrInUse, "guest %q is running (driver %s), so its disks are in use, and %s", t.Name, d.Name(), why)
	}
	mon, err := lm.Monitor(ctx, bg)
	if err != nil {
		return nil, fmt.Errorf("guest %q runs, but strata cannot reach its monitor: %w", t.Name, err)
	}
	return &liveGuest{name: t.Name, driver: d.Name(), mon: mon, paused: s.State == boot.Paused, pid: s.PID, drv: d, bg: bg,
		memory: d.Supports(def, boot.MemoryState), ramMiB: def.EffectiveMaxMem()}, nil
}

// takeLive captures every disk of p while the guest runs (see above); on
// error the caller undoes the point.
func (m *Manager) takeLive(ctx context.Context, l *liveGuest, p *Point, vols []storage.Volume, o CreateOptions) error {
	if ss, ok := l.drv.(boot.StateSaver); ok && p.Memory != nil {
		return m.takeSaved(ctx, l, ss, p, vols, o) // memory.go
	}
	req := boot.LiveRequest{ID: p.UID, MaxPause: o.MaxPause, Paused: l.paused, Hold: l.bg.Run,
		DuringPause: func() {
			crashpoint("create:live-paused")
			if killGuestAt == "create:live-paused" {
				killGuest(l.pid)
			}
		}}
	if p.Memory != nil {
		f, err := openState(l, p)
		if err != nil {
			return err
		}
		defer f.Close()
		req.State = f
		req.DuringState = func() { crashpoint("create:memory-saving") }
	}
	if l.agent != nil {
		l.freezeHooks(&req)
	}
	// A monitor that passes descriptors (the qemu driver's) gets a live
	// copy's target as one: no other user ever holds its path.
	_, passFD := l.mon.(boot.FileMonitor)
	lps := make([]storage.LivePoint, len(p.Disks))
	for i := range p.Disks {
		dp, v := &p.Disks[i], vols[i]
		if err := image.VerifyImage(v); err != nil {
			return err
		}
		ld, lp, err := m.liveDisk(ctx, v, *dp, passFD) // the driver's mechanism (driver.go)
		if err != nil {
			return err
		}
		req.Disks, lps[i] = append(req.Disks, ld), lp
	}
	res, err := boot.TakeLive(ctx, l.mon, req)
	for _, lp := range lps {
		if lp.Release != nil {
			if oerr := lp.Release(); oerr != nil && err == nil {
				err = oerr
			}
		}
	}
	ms := float64(res.Pause.Microseconds()) / 1000
	p.PauseMS = &ms
	p.Consistency = res.Consistency
	if err != nil {
		if gone := wentAway(l, err); gone != nil {
			return gone
		}
		if errors.Is(err, boot.ErrPauseTooLong) && p.Memory != nil {
			return storage.Errorf(storage.ErrPrecondition, "guest %q: %v; nothing was recorded: a memory point pauses the guest for as long as writing its RAM (%d MiB) takes, so allow a longer pause (--max-pause; about 1s per GiB of RAM to start with, more on a slow disk)", l.name, err, l.ramMiB)
		}
		if errors.Is(err, boot.ErrPauseTooLong) {
			return storage.Errorf(storage.ErrPrecondition, "guest %q: %v; nothing was recorded: try again when the guest is less busy, or allow a longer pause (--max-pause)", l.name, err)
		}
		return fmt.Errorf("guest %q: %w", l.name, err)
	}
	if err := finishState(p); err != nil {
		return err
	}
	for i, lp := range lps {
		if lp.Finish != nil {
			if err := lp.Finish(ctx, &p.Disks[i].PointRef); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeLive deletes a point's data while its guest runs: internal
// snapshots through the guest's monitor, files as usual.
func (m *Manager) removeLive(ctx context.Context, l *liveGuest, p Point) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, d := range p.Disks {
		if !m.inVolume(d) {
			continue
		}
		v, err := m.volumeByID(d.VolumeID)
		if err != nil {
			continue // the image and its internal snapshots are gone
		}
		if err := boot.DeleteLiveInternal(ctx, l.mon, v.Path, d.Ref); err != nil {
			return fmt.Errorf("remove restore point %d data of volume %q from the running guest: %w", p.ID, d.Volume, err)
		}
	}
	return m.removeFiles(ctx, p)
}

// abandonLive undoes what a live point left inside the running guest:
// its block jobs and backup nodes go, and a guest left paused by it runs
// again. recovering: the point is a dead strata's; its pause hold
// (boot.PauseHold) then says whether the guest is still paused or frozen
// for it: without one, the guest's watcher has resumed and thawed it
// already, and a pause seen now is its admin's, which stays.
func abandonLive(ctx context.Context, l *liveGuest, p Point, recovering bool) {
	resume, thaw := !p.LivePaused, true
	if recovering {
		h, _ := l.bg.Run.ReadHold()
		held := h != nil && h.Point == p.UID
		resume, thaw = held && h.Paused, held && h.Frozen
	}
	boot.AbandonLive(ctx, l.mon, p.UID, resume)
	if thaw {
		l.thawAbandoned(ctx, p)
	}
	_ = l.bg.Run.ClearHold(p.UID)
	log.Warn().Str("guest", l.name).Int("point", p.ID).Msg("a live restore point was interrupted: its copies are cancelled and the guest runs again if it was left paused")
}
