package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	lv "github.com/digitalocean/go-libvirt"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage/run"
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
	m := &monitor{c: c, dm: dm}
	if d.passesFiles(c) {
		return &filesMonitor{monitor: m, uri: d.virshURI()}, nil
	}
	return m, nil
}

type monitor struct {
	c  *conn
	dm lv.Domain
}

// filesMonitor is the monitor of a libvirt that passes descriptors to
// QEMU with a monitor command (virDomainQemuMonitorCommandWithFiles,
// libvirt 8.2): a live full copy's target is then handed to QEMU open
// (add-fd), as the qemu driver does, and stays root's, 0600, in its
// root-only directory, where it would otherwise be chowned to libvirt's
// QEMU user for the copy. go-libvirt cannot send descriptors over its
// connection, so the command goes through virsh (--pass-fds), libvirt's
// own client; it is run only for add-fd, before the guest is paused.
type filesMonitor struct {
	*monitor
	uri string
}

var _ boot.FileMonitor = (*filesMonitor)(nil)

// passFilesVersion is the first libvirt whose monitor passthrough takes
// descriptors (8.2.0).
const passFilesVersion = 8_002_000

// passesFiles tells whether descriptors reach the guest's QEMU through c's
// libvirtd and virsh: the daemon is recent enough and virsh is installed.
func (d *Driver) passesFiles(c *conn) bool {
	if _, err := run.Look("virsh"); err != nil {
		return false
	}
	v, err := c.ConnectGetLibVersion()
	return err == nil && v >= passFilesVersion
}

// ExecuteFile implements boot.FileMonitor: cmd goes to QEMU with f, which
// QEMU receives as a descriptor of its own (add-fd, getfd).
func (m *filesMonitor) ExecuteFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	b, err := request(cmd, args)
	if err != nil {
		return nil, err
	}
	out, err := run.OutputFiles(ctx, []*os.File{f}, "virsh", "-q", "-c", m.uri, "qemu-monitor-command", "--domain", uuidString(m.dm.UUID), "--pass-fds", "3", string(b))
	if err != nil {
		return nil, fmt.Errorf("libvirt: QEMU monitor of domain %q: %s with a descriptor: %w", m.dm.Name, cmd, err)
	}
	return m.reply(cmd, string(out))
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
	b, err := request(cmd, args)
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
	return m.reply(cmd, r.out)
}

// request is the QMP request of cmd with args.
func request(cmd string, args any) ([]byte, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	return json.Marshal(req)
}

// reply is what QEMU answered cmd (out: its JSON reply as libvirt passes
// it on): the return value, or QEMU's error.
func (m *monitor) reply(cmd, out string) (json.RawMessage, error) {
	var reply struct {
		Return json.RawMessage `json:"return"`
		Error  *qmp.Error      `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		return nil, fmt.Errorf("libvirt: QEMU monitor of domain %q: %s: %w", m.dm.Name, cmd, err)
	}
	if reply.Error != nil {
		reply.Error.Command = cmd
		return nil, reply.Error
	}
	return reply.Return, nil
}
