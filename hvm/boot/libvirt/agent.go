package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	lv "github.com/digitalocean/go-libvirt"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/storage"
)

var _ boot.AgentReacher = (*Driver)(nil)

// AgentAnswerTimeout bounds the first command to a guest agent (a ping):
// an agent that does not answer in that time is taken as absent.
var AgentAnswerTimeout = 5 * time.Second

// Agent implements boot.AgentReacher through libvirt's agent passthrough
// (virDomainQemuAgentCommand): libvirt holds the agent's channel (the
// domain XML's org.qemu.guest_agent.0 channel) and synchronises with the
// agent itself before each command. libvirt records the passthrough as a
// taint of the domain ("custom-ga-command"), as it does the monitor's.
func (d *Driver) Agent(ctx context.Context, g *boot.Guest) (qga.Agent, error) {
	if !g.Def.HasGuestAgent() {
		return nil, storage.Errorf(storage.ErrNotSupported, "guest %q has no QEMU guest agent (its definition does not say features.guest_agent: true)", g.Def.Name)
	}
	c, err := d.connect(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	dm, _, err := d.running(c, g)
	if err != nil {
		c.close()
		return nil, err
	}
	a := &agent{c: c, dm: dm}
	pctx, cancel := context.WithTimeout(ctx, AgentAnswerTimeout)
	defer cancel()
	if _, err := a.Execute(pctx, "guest-ping", nil); err != nil {
		c.close()
		return nil, err
	}
	return a, nil
}

type agent struct {
	c  *conn
	dm lv.Domain
}

func (a *agent) Close() error {
	a.c.close()
	return nil
}

// Execute implements qga.Agent. libvirt's own timeout is ctx's (whole
// seconds, at least one); ctx's end also ends the wait here.
func (a *agent) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	secs := int32(-1) // libvirt's default
	if dl, ok := ctx.Deadline(); ok {
		secs = int32(max(1, min(math.MaxInt32, math.Ceil(time.Until(dl).Seconds()))))
	}
	type result struct {
		out lv.OptString
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := a.c.QEMUDomainAgentCommand(a.dm, string(b), secs, 0)
		done <- result{out, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (%s through libvirt)", qga.ErrNoAnswer, cmd)
	}
	if r.err != nil {
		switch libvirtCode(r.err) {
		case lv.ErrAgentUnresponsive, lv.ErrAgentUnsynced, lv.ErrOperationTimeout:
			return nil, fmt.Errorf("%w (%s through libvirt: %v)", qga.ErrNoAnswer, cmd, r.err)
		}
		return nil, fmt.Errorf("libvirt: guest agent of domain %q: %s: %w", a.dm.Name, cmd, r.err)
	}
	if len(r.out) == 0 {
		return nil, fmt.Errorf("libvirt: guest agent of domain %q: %s: no reply", a.dm.Name, cmd)
	}
	var reply struct {
		Return json.RawMessage `json:"return"`
		Error  *qga.Error      `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.out[0]), &reply); err != nil {
		return nil, fmt.Errorf("libvirt: guest agent of domain %q: %s: %w", a.dm.Name, cmd, err)
	}
	if reply.Error != nil {
		reply.Error.Command = cmd
		return nil, reply.Error
	}
	return reply.Return, nil
}
