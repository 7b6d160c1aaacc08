package snapshot

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// Guards of live points (hvm/boot guard.go): a live point of a guest whose
// driver has no watcher of its own (libvirt, xl's memory points) starts a
// guard process before the guest is paused, frozen or saved. Should the
// strata taking the point die, the guard (Guard) resumes the guest and
// thaws its filesystems as the pause hold says, at once, then finishes or
// undoes the point as the next command on the guest would (the target's
// locks, which the dead strata no longer holds, keep it from meeting
// another command): the guest never waits for someone to run strata
// again, and no point is left half made.

// guardPoll is how often a guard looks at the pause hold for a hung
// strata (one past the hold's deadline).
const guardPoll = 200 * time.Millisecond

// startGuard starts the guard of live point p of t's guest l, or returns
// nil when none is needed (no GuardArgv, or the driver's own watcher
// releases stale holds).
func (m *Manager) startGuard(t Target, l *liveGuest, p Point) (*boot.Guard, error) {
	if m.GuardArgv == nil || t.Kind() != catalog.KindGuest {
		return nil, nil
	}
	if hr, ok := l.drv.(boot.HoldReleaser); ok && hr.ReleasesHolds() {
		return nil, nil
	}
	return boot.StartGuard(m.GuardArgv(t.Key.ID(), p.UID), l.bg.Run.Path(GuardLog))
}

// GuardLog is the guards' log in the guest's runtime directory.
const GuardLog = "guard.log"

// Guard is a live point's guard process (see above): it waits for the
// strata taking point (its UID) of the guest with ID guestID; when that
// strata died with the point unfinished, it resumes and thaws the guest
// and recovers the guest's interrupted points. It returns once the point
// is over either way.
func (m *Manager) Guard(ctx context.Context, guestID, point string) error {
	rd := &boot.RunDir{Dir: filepath.Join(m.st.Catalog.Home(), "run", guestID)}
	// What resuming the guest takes from the catalog (its name, its
	// definition) is read now, while the strata taking the point lives and
	// holds the guest's lock (nothing changes them meanwhile): when that
	// strata dies, the guest is resumed without waiting for the catalog,
	// which another process may hold for seconds or a shared catalog's
	// etcd may not answer.
	g, err := m.guarded(ctx, guestID)
	if err != nil {
		log.Warn().Err(err).Str("point", point).Msg("the guest of a live point, read ahead for its guard: it is read again if the point's strata dies")
		g = guardedGuest{id: guestID}
	}
	boot.GuardReady() // the point's strata pauses the guest only now
	gone, err := boot.AwaitHolder(ctx, guardPoll, func() { m.releaseHold(ctx, g, rd, point, false) })
	if err != nil || !gone {
		return err
	}
	log.Warn().Str("point", point).Msg("the strata taking a live restore point died: resuming the guest and finishing or undoing the point")
	// The hold of this point is a dead holder's, even while its process
	// is still being torn down (the pipe closes before /proc says so).
	m.releaseHold(ctx, g, rd, point, true)
	name := g.t.Name
	if g.def == nil {
		if err := m.st.Catalog.View(func(tx *catalog.Tx) error {
			r, err := tx.GuestByID(guestID)
			name = r.Name
			return err
		}); err != nil {
			return err
		}
	}
	// Recovered as the next command on the guest would (withTarget).
	if err := m.withTarget(context.WithoutCancel(ctx), TargetRef{Name: name}, func(Target) error { return nil }); err != nil {
		return fmt.Errorf("the interrupted restore point of guest %q: %w; the next snapshot command on it (or strata doctor --repair) finishes it", name, err)
	}
	log.Info().Str("guest", name).Msg("the interrupted restore point is finished or undone and the guest runs")
	return nil
}

// guardedGuest is the guest a guard watches over: its ID, and once read
// its target and resolved definition (def nil: not read yet).
type guardedGuest struct {
	id  string
	t   Target
	def *hvm.Guest
}

// guarded reads the guest with ID id and its resolved definition.
func (m *Manager) guarded(ctx context.Context, id string) (guardedGuest, error) {
	g := guardedGuest{id: id}
	if err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		r, err := tx.GuestByID(id)
		g.t = Target{Key: catalog.GuestKey(id), Name: r.Name}
		return err
	}); err != nil {
		return g, err
	}
	def, err := registry.New(m.st).Resolved(ctx, g.t.Name)
	if err != nil {
		return guardedGuest{id: id}, err
	}
	g.def = def
	return g, nil
}

// releaseHold resumes and thaws the guest that point's pause hold keeps
// paused or frozen, if the hold is stale (its holder gone or past its
// deadline; dead: the caller knows the holder died), and clears the hold
// once that is done; a hold that is not stale, or another point's, is
// left alone. The guest is g as read ahead, or read now.
func (m *Manager) releaseHold(ctx context.Context, g guardedGuest, rd *boot.RunDir, point string, dead bool) {
	h, err := rd.ReadHold()
	if err != nil || h == nil || h.Point != point || !(dead || h.Stale()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if g.def == nil {
		if g, err = m.guarded(ctx, g.id); err != nil {
			log.Error().Err(err).Msg("the guest of a stale pause hold")
			return
		}
	}
	t := g.t
	l, err := m.liveOfDef(ctx, t, g.def)
	if err != nil {
		log.Error().Err(err).Str("guest", t.Name).Msg("resume the guest an interrupted restore point left paused")
		return
	}
	if l == nil {
		_ = rd.ClearHold(point) // the guest does not run: nothing holds it
		return
	}
	defer l.close()
	if resumed, err := boot.ResumeHeld(ctx, l.mon, h); err != nil {
		log.Error().Err(err).Str("guest", t.Name).Msg("resume the guest an interrupted restore point left paused")
		return
	} else if resumed {
		log.Warn().Str("guest", t.Name).Int("holder", h.PID).Msg("resumed the guest an interrupted restore point left paused")
	}
	if h.Frozen {
		if err := thawHeld(ctx, l); err != nil {
			// The point's recovery (abandonLive) tries again.
			log.Error().Err(err).Str("guest", t.Name).Msg("thaw the filesystems an interrupted quiesced restore point left frozen")
			h.Paused = false
			_ = boot.WriteRuntimeJSON(rd.Path(boot.HoldFile), h)
			return
		}
		log.Warn().Str("guest", t.Name).Msg("thawed the guest's filesystems an interrupted restore point left frozen")
	}
	_ = rd.ClearHold(point)
}

// thawHeld thaws l's guest's filesystems through its driver's agent.
func thawHeld(ctx context.Context, l *liveGuest) error {
	ar, ok := l.drv.(boot.AgentReacher)
	if !ok {
		return storage.Errorf(storage.ErrNotSupported, "the %s driver reaches no guest agent", l.driver)
	}
	a, err := ar.Agent(ctx, l.bg)
	if err != nil {
		return err
	}
	defer a.Close()
	_, err = qga.Thaw(ctx, a)
	return err
}
