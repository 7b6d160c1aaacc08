package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/qmp"
)

// startQEMU runs a paused QEMU (TCG, no guest code runs) with a QMP socket
// and returns the socket's path and the process.
func startQEMU(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "16", "-S",
		"-display", "none", "-monitor", "none", "-serial", "none", "-nodefaults",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 500 {
			t.Fatalf("no QMP socket after 5 s: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sock, cmd
}

func dial(t *testing.T, sock string) *qmp.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// QEMU binds the socket's name a moment before it listens on it.
	c, err := qmp.Dial(ctx, sock)
	for err != nil && errors.Is(err, syscall.ECONNREFUSED) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		c, err = qmp.Dial(ctx, sock)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestQMPGreetingAndCapabilities(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	if v := c.Greeting.Version.QEMU; v.Major < 2 {
		t.Fatalf("greeting version %+v", c.Greeting.Version)
	}
	// A command only accepted after qmp_capabilities.
	r, err := c.Execute(context.Background(), "query-version", nil)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		QEMU struct{ Major int } `json:"qemu"`
	}
	if err := json.Unmarshal(r, &v); err != nil || v.QEMU.Major != c.Greeting.Version.QEMU.Major {
		t.Fatalf("query-version %s: %v", r, err)
	}
}

// `stop` makes QEMU send a STOP event before the reply: the reply still
// goes to stop, the next command gets its own reply, the event is on the
// channel.
func TestQMPEventBeforeReplyDoesNotShiftReplies(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	ctx := context.Background()
	if _, err := c.Execute(ctx, "cont", nil); err != nil {
		t.Fatal(err)
	}
	r, err := c.Execute(ctx, "stop", nil)
	if err != nil || string(r) != "{}" {
		t.Fatalf("stop: %s %v", r, err)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Status != "paused" || st.Running {
		t.Fatalf("query-status after stop: %+v %v", st, err)
	}
	var names []string
	timeout := time.After(2 * time.Second)
	for len(names) < 2 {
		select {
		case ev := <-c.Events():
			names = append(names, ev.Name)
			if ev.Time.IsZero() || ev.Time.Year() < 2000 {
				t.Fatalf("event time %v", ev.Time)
			}
		case <-timeout:
			t.Fatalf("events %v, want RESUME and STOP", names)
		}
	}
	if names[0] != "RESUME" || names[1] != "STOP" {
		t.Fatalf("events %v", names)
	}
}

func TestQMPErrorHasClassAndDesc(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	_, err := c.Execute(context.Background(), "no-such-command", nil)
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Desc == "" || qe.Command != "no-such-command" {
		t.Fatalf("error %#v", err)
	}
	// Arguments are passed: a wrong one is refused by name.
	_, err = c.Execute(context.Background(), "set-action", map[string]string{"reboot": "bogus"})
	if !errors.As(err, &qe) || qe.Class != "GenericError" || !strings.Contains(qe.Desc, "bogus") {
		t.Fatalf("error %#v", err)
	}
}

// A QEMU that stops answering (SIGSTOP) makes a command end at its
// deadline; the client stays usable once QEMU answers again.
func TestQMPCommandTimesOut(t *testing.T) {
	sock, cmd := startQEMU(t)
	c := dial(t, sock)
	syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := c.Execute(ctx, "query-status", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Fatalf("after %v: %v", time.Since(t0), err)
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	// The late reply to the timed-out command is discarded; the next
	// command gets its own.
	st, err := c.QueryStatus(context.Background())
	if err != nil || st.Status != "prelaunch" {
		t.Fatalf("after SIGCONT: %+v %v", st, err)
	}
}

// A peer that greets and then never answers: the handshake's
// qmp_capabilities ends at ctx's deadline instead of hanging.
func TestQMPHungPeerTimesOut(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hung.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}` + "\r\n"))
		time.Sleep(5 * time.Second)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = qmp.Dial(ctx, sock)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Fatalf("after %v: %v", time.Since(t0), err)
	}
	// A peer that never greets at all.
	l2, _ := net.Listen("unix", sock+"2")
	defer l2.Close()
	go func() {
		conn, err := l2.Accept()
		if err == nil {
			time.Sleep(5 * time.Second)
			conn.Close()
		}
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := qmp.Dial(ctx2, sock+"2"); err == nil || time.Since(t0) > 3*time.Second {
		t.Fatalf("dial of a silent peer: %v", err)
	}
}

// QEMU killed while a command waits: Execute returns ErrClosed at once,
// Done and the event channel close.
func TestQMPQEMUKilledMidCommand(t *testing.T) {
	sock, cmd := startQEMU(t)
	c := dial(t, sock)
	// SIGSTOP first so the command is surely in flight when QEMU dies.
	syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Execute(context.Background(), "query-status", nil)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Kill()
	select {
	case err := <-errc:
		if !errors.Is(err, qmp.ErrClosed) {
			t.Fatalf("error %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Execute still waits after QEMU was killed")
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed")
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("event channel not closed")
	}
	if _, err := c.Execute(context.Background(), "query-status", nil); !errors.Is(err, qmp.ErrClosed) {
		t.Fatalf("after the end: %v", err)
	}
}

// Events nobody reads never block replies: the oldest are dropped.
func TestQMPUnreadEventsDropOldest(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	ctx := context.Background()
	n := qmp.EventBuffer/2 + 10
	for i := 0; i < n; i++ { // two events (RESUME, STOP) per round
		if _, err := c.Execute(ctx, "cont", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Execute(ctx, "stop", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.QueryStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Dropped() != uint64(2*n-qmp.EventBuffer) {
		t.Fatalf("dropped %d, want %d", c.Dropped(), 2*n-qmp.EventBuffer)
	}
	if ev := <-c.Events(); ev.Name != "RESUME" { // the newest kept, oldest first
		t.Fatalf("first kept event %s", ev.Name)
	}
}

// What QEMU queued for a socket's previous client (an event) may come
// before the greeting: it is skipped, the handshake succeeds.
func TestQMPSkipsMessagesBeforeGreeting(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "late.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESET", "data": {"guest": true}}` + "\r\n"))
		conn.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}` + "\r\n"))
		dec := json.NewDecoder(conn)
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if dec.Decode(&req) == nil && req.Execute == "qmp_capabilities" {
			conn.Write([]byte(`{"return": {}, "id": ` + string(req.ID) + "}\r\n"))
		}
		time.Sleep(time.Second)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Greeting.Version.QEMU.Major != 7 {
		t.Fatalf("greeting %+v", c.Greeting)
	}
}

// ExecuteFile passes a descriptor with the command: QEMU's getfd takes
// it, and a migration to "fd:NAME" writes QEMU's state into this
// process's pipe (it starts with the QEVM magic). Without a descriptor
// getfd fails.
func TestQMPExecuteFilePassesADescriptorQEMUWritesTo(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Execute(ctx, "getfd", map[string]any{"fdname": "none"}); err == nil {
		t.Fatal("getfd without a descriptor succeeded")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if _, err := c.ExecuteFile(ctx, "getfd", map[string]any{"fdname": "state"}, pw); err != nil {
		t.Fatal(err)
	}
	pw.Close() // QEMU holds its own copy
	if _, err := c.Execute(ctx, "migrate", map[string]any{"uri": "fd:state"}); err != nil {
		t.Fatal(err)
	}
	magic := make([]byte, 4)
	pr.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(pr, magic); err != nil || string(magic) != "QEVM" {
		t.Fatalf("read %q from the pipe QEMU got: %v", magic, err)
	}
	go io.Copy(io.Discard, pr)
	for {
		r, err := c.Execute(ctx, "query-migrate", nil)
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ Status string }
		json.Unmarshal(r, &m)
		if m.Status == "completed" {
			break
		}
		if m.Status == "failed" || ctx.Err() != nil {
			t.Fatalf("migration: %s", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
