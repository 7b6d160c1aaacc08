package boot

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-vm/strata/hvm/qga"
)

// The QEMU guest agent.
//
// A guest whose definition says features.guest_agent runs qemu-ga; the
// qemu and libvirt drivers give it the agent's virtio-serial channel
// (qga.ChannelName) and can hand out the agent (AgentReacher). A live
// restore point with --quiesce freezes the guest's filesystems through it
// before the pause (LiveRequest.Freeze) and thaws them after the resume
// (LiveRequest.Thaw), so that the point holds filesystems the guest had
// flushed and stopped changing: consistency "filesystem".

// AgentReacher is a driver that can reach the QEMU guest agent of a guest
// it runs. Agent returns an error of kind ErrNotSupported for a guest
// whose definition does not say features.guest_agent, and of kind
// ErrPrecondition when the guest runs without the agent's channel (it
// was started before the flag was set); an agent that does not answer is
// qga.ErrNoAnswer.
type AgentReacher interface {
	Agent(ctx context.Context, g *Guest) (qga.Agent, error)
}

// errNotThawed is the error of a thaw that failed: the guest's
// filesystems may still be frozen.
var errNotThawed = errors.New("thaw the guest's filesystems")

// freezeFor runs req.Freeze, if any, and returns the thaw to run once the
// guest has resumed (a no-op without Freeze). A freeze that failed is
// thawed at once (the guest may have frozen some filesystems, or freeze
// them late, after a timeout) and its error returned.
func freezeFor(ctx context.Context, req LiveRequest) (thaw func() error, err error) {
	if req.Freeze == nil {
		return func() error { return nil }, nil
	}
	done := false
	thaw = func() error {
		if done || req.Thaw == nil {
			return nil
		}
		done = true
		// Its own deadline (the hook's): an interrupted command must
		// still thaw the guest.
		if err := req.Thaw(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("%w (they may still be frozen: its writes wait until they are thawed): %w", errNotThawed, err)
		}
		return nil
	}
	if err := req.Freeze(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("freeze the guest's filesystems: %w", err), thaw())
	}
	return thaw, nil
}
