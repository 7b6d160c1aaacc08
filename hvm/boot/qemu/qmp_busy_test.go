package qemu_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage"
)

// QEMU serves one client on strata's QMP socket: while a foreign client
// holds it, status and a live point's monitor fail as busy (exit 6)
// with a message naming the guest and what holds it, not as a QEMU that
// "does not answer"; once it lets go, both work.
func TestForeignQMPClientMakesStatusBusyWithAClearMessage(t *testing.T) {
	e := newEnv(t)
	g := e.guest("busy", boottest.Halt, nil)
	e.start(g, boot.StartOptions{})
	t.Cleanup(func() { e.d.Kill(context.Background(), g) })
	conn, err := net.Dial("unix", g.Run.Path("qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := conn.Read(buf); err != nil { // QEMU's greeting: this client holds the monitor
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"status":  func() error { _, err := e.d.Status(context.Background(), g); return err },
		"monitor": func() error { _, err := e.d.Monitor(context.Background(), g); return err },
	} {
		err := call()
		if !errors.Is(err, storage.ErrBusy) || !strings.Contains(err.Error(), `another client holds the QMP monitor of guest "busy"`) {
			t.Fatalf("%s while a foreign client holds QMP: %v", what, err)
		}
	}
	conn.Close()
	// QEMU takes the clients that queued meanwhile (and left) first.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s, err := e.d.Status(context.Background(), g)
		if err == nil && s.State == boot.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status once the client left: %+v, %v", s, err)
		}
	}
}
