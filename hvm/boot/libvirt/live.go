package libvirt

import (
	"context"
	"encoding/json"
	"fmt"

	lv "github.com/digitalocean/go-libvirt"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qmp"
)

// Monitor implements boot.LiveMonitor through libvirt: pausing and
// resuming are libvirt's own (virDomainSuspend, virDomainResume), so that
// libvirt's view of the domain stays right; the block commands of a live
// point go to QEMU through libvirt's monitor passthrough
// (virDomainQemuMonitorCommand), which libvirt records as a taint of the
// domain ("custom-monitor") until it stops. The passthrough gives no
// events: a point's pause is measured as the wall time around it.
func (d *Driver) Monitor(ctx context.Context, g *boot.Guest) (boot.Monitor, error) {
	// The connection outlives a cancelled command: the guest must still
	// be resumed.
	c, err := d.connect(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	dm, _, err := d.running(c, g)
	if err != nil {
		c.close()
		return nil, err
	}
	return &monitor{c: c, dm: dm}, nil
}

type monitor struct {
	c  *conn
	dm lv.Domain
}

func (m *monitor) Events() <-chan qmp.Event { return nil }

func (m *monitor) Close() error {
	m.c.close()
	return nil
}

// Execute runs one QMP command; stop and cont become libvirt's suspend
// and resume.
func (m *monitor) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	switch cmd {
	case "stop":
		if err := m.c.DomainSuspend(m.dm); err != nil {
			return nil, fmt.Errorf("libvirt: suspend domain %q: %w", m.dm.Name, err)
		}
		return json.RawMessage("{}"), nil
	case "cont":
		if err := m.c.DomainResume(m.dm); err != nil {
			return nil, fmt.Errorf("libvirt: resume domain %q: %w", m.dm.Name, err)
		}
		return json.RawMessage("{}"), nil
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := m.c.QEMUDomainMonitorCommand(m.dm, string(b), 0)
		done <- result{out, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, fmt.Errorf("libvirt: QEMU monitor of domain %q: %s: %w", m.dm.Name, cmd, r.err)
	}
	var reply struct {
		Return json.RawMessage `json:"return"`
		Error  *qmp.Error      `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.out), &reply); err != nil {
		return nil, fmt.Errorf("libvirt: QEMU monitor of domain %q: %s: %w", m.dm.Name, cmd, err)
	}
	if reply.Error != nil {
		reply.Error.Command = cmd
		return nil, reply.Error
	}
	return reply.Return, nil
}
