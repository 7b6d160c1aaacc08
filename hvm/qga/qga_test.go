package qga_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qga"
)

// agentGuest boots the Linux test guest in agent mode (the real qemu-ga
// on a virtio-serial port) under TCG and returns the agent's socket and a
// function reading the guest's serial output.
func agentGuest(t *testing.T, extra ...string) (sock string, serial func() string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is missing: install qemu-system-x86")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := boottest.LinuxKit(ctx, "")
	if err != nil {
		t.Fatalf("build the test guest: %v", err)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 16<<20); err != nil {
		t.Fatal(err)
	}
	sock, log := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "serial")
	qctx, qcancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(qctx, "qemu-system-x86_64", append([]string{"-machine", "pc", "-accel", "tcg", "-m", "256", "-display", "none",
		"-nodefaults", "-no-reboot", "-serial", "file:" + log,
		"-drive", "file=" + disk + ",format=raw,if=virtio",
		"-chardev", "socket,id=qga,path=" + sock + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser", "-device", "virtserialport,bus=vser.0,chardev=qga,name=" + qga.ChannelName},
		k.QEMUArgs(boottest.ModeAgent, extra...)...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qcancel(); cmd.Wait() })
	serial = func() string { b, _ := os.ReadFile(log); return string(b) }
	// Until QEMU listens: its socket file exists from bind, a moment
	// before listen, and a connection then is refused.
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			t.Fatal("QEMU made no agent socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sock, serial
}

func waitSerial(t *testing.T, serial func() string, want string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		s := serial()
		if strings.Contains(s, want) {
			return
		}
		if strings.Contains(s, boottest.GuestFailed) || time.Now().After(deadline) {
			t.Fatalf("no %q from the guest:\n%s", want, s)
		}
	}
}

// Against the real qemu-ga in a TCG guest: before the agent runs, QEMU's
// socket accepts a connection but nothing answers (ErrNoAnswer, within
// the deadline); a client that left a command and its reply unread does
// not confuse the next (the sync discards the stale reply); an unknown
// command is the agent's error; and a freeze is reported frozen (the
// guest's freeze hook ran), refuses most other commands while frozen, and a
// thaw leaves it thawed (the hook ran again).
func TestAgentClientSyncsFreezesAndThawsTheRealAgent(t *testing.T) {
	sock, serial := agentGuest(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	_, err := qga.Dial(ctx, sock)
	cancel()
	if !errors.Is(err, qga.ErrNoAnswer) {
		t.Fatalf("dial before the agent runs: %v, want ErrNoAnswer", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("no answer took %v, past its 300 ms deadline", d)
	}
	waitSerial(t, serial, boottest.AgentReady)
	t.Logf("agent ready after %v", time.Since(start).Round(time.Millisecond))

	// A client that sent a command and left without its reply.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("{\"execute\":\"guest-info\"}\n{\"execute\":\"guest-sy"))
	time.Sleep(500 * time.Millisecond)
	c.Close()

	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := qga.Dial(ctx, sock)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer a.Close()
	raw, err := a.Execute(ctx, "guest-ping", nil)
	if err != nil || string(raw) != "{}" {
		t.Fatalf("guest-ping after a stale client: %s, %v", raw, err)
	}
	var qe *qga.Error
	if _, err := a.Execute(ctx, "guest-no-such-command", nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("unknown command: %v", err)
	}
	if s, err := qga.FreezeStatus(ctx, a); err != nil || s != qga.Thawed {
		t.Fatalf("status before the freeze: %q, %v", s, err)
	}

	t.Logf("synced after a stale client after %v", time.Since(start).Round(time.Millisecond))
	n, err := qga.Freeze(ctx, a)
	if err != nil || n != 1 {
		t.Fatalf("freeze: %d filesystems, %v", n, err)
	}
	waitSerial(t, serial, boottest.AgentFreezeHook+"freeze")
	if _, err := a.Execute(ctx, "guest-info", nil); err != nil {
		t.Fatalf("guest-info while frozen: %v", err)
	}
	if _, err := a.Execute(ctx, "guest-get-time", nil); !errors.As(err, &qe) {
		t.Fatalf("a command the agent refuses while frozen: %v", err)
	}
	if _, err := qga.Thaw(ctx, a); err != nil {
		t.Fatalf("thaw: %v", err)
	}
	waitSerial(t, serial, boottest.AgentFreezeHook+"thaw")
	if s, err := qga.FreezeStatus(ctx, a); err != nil || s != qga.Thawed {
		t.Fatalf("status after the thaw: %q, %v", s, err)
	}
	// Thawing what is not frozen is no error.
	if _, err := qga.Thaw(ctx, a); err != nil {
		t.Fatalf("second thaw: %v", err)
	}
	t.Logf("frozen and thawed after %v", time.Since(start).Round(time.Millisecond))
	var info struct {
		Version string `json:"version"`
	}
	raw, _ = a.Execute(ctx, "guest-info", nil)
	json.Unmarshal(raw, &info)
	t.Logf("qemu-ga %s", info.Version)
}

// A hostile guest whose end of the agent channel never answers and
// floods it (bytes without end, no line end, no 0xFF) costs strata
// bounded memory and time: the synchronisation gives up after
// qga.MaxStale bytes of noise with ErrNotAgent, well before its deadline,
// keeping no more than a buffer of it.
func TestAgentClientBoundsWhatAFloodingGuestSends(t *testing.T) {
	sock, serial := agentGuest(t, boottest.FloodingAgent)
	waitSerial(t, serial, boottest.AgentReady)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	a, err := qga.Dial(ctx, sock)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err == nil {
		a.Close()
	}
	if !errors.Is(err, qga.ErrNotAgent) {
		t.Fatalf("dial of a flooding guest's channel after %v: %v, want ErrNotAgent", took, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("reading %d bytes of noise allocated %d bytes", qga.MaxStale, alloc)
	}
	t.Logf("gave up after %v: %v", took.Round(time.Millisecond), err)
}
