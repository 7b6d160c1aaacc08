package qemu

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/storage"
)

// agentSock is the guest agent's channel in the runtime directory: QEMU
// listens there and passes bytes to and from the guest's virtio-serial
// port org.qemu.guest_agent.0, where qemu-ga reads them.
const agentSock = "agent.sock"

// AgentAnswerTimeout bounds the synchronisation with a guest agent: an
// agent that does not answer in that time is taken as absent.
var AgentAnswerTimeout = 5 * time.Second

// agentArgs give a guest with features.guest_agent the agent's channel:
// a virtio-serial controller with one port, backed by a unix socket in
// the root-only runtime directory (never a network socket: whoever
// reaches the agent runs commands in the guest).
func agentArgs(rd *boot.RunDir) []string {
	return []string{
		"-chardev", "socket,id=strata-qga,path=" + esc(rd.Path(agentSock)) + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=strata-vser",
		"-device", "virtserialport,bus=strata-vser.0,chardev=strata-qga,name=" + qga.ChannelName,
	}
}

var _ boot.AgentReacher = (*Driver)(nil)

// Agent implements boot.AgentReacher: the agent's socket of the guest's
// QEMU, synchronised (within AgentAnswerTimeout) before it is returned.
// QEMU serves one client there at a time; the guest's lock, which the
// commands that use the agent hold, keeps them from meeting.
func (d *Driver) Agent(ctx context.Context, g *boot.Guest) (qga.Agent, error) {
	if !g.Def.HasGuestAgent() {
		return nil, storage.Errorf(storage.ErrNotSupported, "guest %q has no QEMU guest agent (its definition does not say features.guest_agent: true)", g.Def.Name)
	}
	if _, err := d.mustRun(ctx, g); err != nil {
		return nil, err
	}
	p := g.Run.Path(agentSock)
	if st, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) || err == nil && st.Mode()&os.ModeSocket == 0 {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q runs without the guest agent's channel (it was started before features.guest_agent was set): stop it and start it again", g.Def.Name)
	} else if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, AgentAnswerTimeout)
	defer cancel()
	return qga.Dial(sctx, p)
}
