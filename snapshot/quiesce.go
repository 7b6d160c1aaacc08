package snapshot

import (
	"context"
	"errors"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/storage"
)

// Quiesced live points (--quiesce): the guest agent (qemu-ga) freezes the
// guest's filesystems before the pause and thaws them after the resume
// (boot.LiveRequest.Freeze and Thaw), so that the point holds filesystems
// the guest flushed and stopped changing: consistency "filesystem".
//
// Refusals, before anything is recorded: a guest whose definition does
// not say features.guest_agent, or whose driver cannot reach an agent, is
// refused as not supported (exit 8): its points are crash-consistent, and
// Windows XP, which has no agent, is always there. A guest that should
// have an agent but whose agent does not answer (not installed, not
// started, hung), that runs without the agent's channel, or that its
// admin paused (a paused guest's agent cannot run) is refused as a failed
// precondition (exit 7): the admin can fix it and try again; so is one
// whose channel carries what no agent sends (qga.ErrNotAgent: strata
// reads at most qga.MaxMessage bytes at a time from the guest, and gives
// up after qga.MaxStale bytes of noise, or at the command's deadline).
// Nothing the guest sends makes strata wait past a deadline. A freeze
// whose status is not "frozen" fails the point, which is undone; the
// guest is thawed whatever happened. A point recorded with consistency
// "filesystem" that a dead strata left is thawed too when it is undone.

// quiesceAgent reaches l's guest agent for a quiesced point.
func (l *liveGuest) quiesceAgent(ctx context.Context) (qga.Agent, error) {
	crash := "its live points are crash-consistent (as after a power cut); leave --quiesce out"
	if !l.bg.Def.HasGuestAgent() {
		return nil, storage.Errorf(storage.ErrNotSupported, "guest %q has no QEMU guest agent (its definition does not say features.guest_agent: true), so its filesystems cannot be frozen: %s, or install qemu-ga in the guest, 'strata guest set %s features.guest_agent=true' and start the guest again", l.name, crash, l.name)
	}
	ar, ok := l.drv.(boot.AgentReacher)
	if !ok {
		return nil, storage.Errorf(storage.ErrNotSupported, "guest %q runs under the %s driver, which cannot reach a QEMU guest agent, so its filesystems cannot be frozen: %s", l.name, l.driver, crash)
	}
	if l.paused {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q is paused, so its guest agent cannot freeze its filesystems: resume it ('strata guest resume %s'), or leave --quiesce out", l.name, l.name)
	}
	a, err := ar.Agent(ctx, l.bg)
	if errors.Is(err, qga.ErrNoAnswer) {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q: its QEMU guest agent does not answer (is qemu-ga installed and running in the guest?), so its filesystems cannot be frozen and nothing was recorded: start qemu-ga in the guest and try again, or leave --quiesce out for a crash-consistent point", l.name)
	}
	if errors.Is(err, qga.ErrNotAgent) {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q: %v, so its filesystems cannot be frozen and nothing was recorded: check what answers on the guest's port %s (qemu-ga should), or leave --quiesce out for a crash-consistent point", l.name, err, qga.ChannelName)
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// freezeHooks sets req's Freeze and Thaw to go through l's agent.
func (l *liveGuest) freezeHooks(req *boot.LiveRequest) {
	a := l.agent
	req.Freeze = func(ctx context.Context) error {
		n, err := qga.Freeze(ctx, a)
		if err == nil {
			log.Debug().Str("guest", l.name).Int("filesystems", n).Msg("guest filesystems frozen")
		}
		return err
	}
	req.Thaw = func(ctx context.Context) error {
		_, err := qga.Thaw(ctx, a)
		return err
	}
}

// thawAbandoned thaws the filesystems of l's guest when p, a point a dead
// strata left, may have frozen them (best effort: an agent that does not
// answer is logged). abandonLive calls it after the guest runs again.
func (l *liveGuest) thawAbandoned(ctx context.Context, p Point) {
	// l.agent is set when this strata took the point: TakeLive thawed
	// already, whatever failed.
	if p.Consistency != boot.ConsistencyFilesystem || p.LivePaused || l.agent != nil {
		return
	}
	ar, ok := l.drv.(boot.AgentReacher)
	if !ok {
		return
	}
	a, err := ar.Agent(ctx, l.bg)
	if err != nil {
		log.Warn().Err(err).Str("guest", l.name).Msg("an interrupted quiesced point may have left the guest's filesystems frozen, and its agent cannot be reached to thaw them")
		return
	}
	defer a.Close()
	if _, err := qga.Thaw(ctx, a); err != nil {
		log.Warn().Err(err).Str("guest", l.name).Msg("could not thaw the guest's filesystems after an interrupted quiesced point")
	}
}
