package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qmp"
)

// shortHome is a state home with a short path: QEMU's unix sockets live
// in HOME/run/ID and a socket path has at most 107 bytes.
func shortHome(t *testing.T) string {
	t.Helper()
	home, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a failed test left running goes first.
		for _, id := range runDirs(home) {
			if b, err := os.ReadFile(filepath.Join(home, "run", id, "qemu.pid")); err == nil {
				_ = killPID(strings.TrimSpace(string(b)))
			}
		}
		os.RemoveAll(home)
	})
	return home
}

func runDirs(home string) []string {
	ents, _ := os.ReadDir(filepath.Join(home, "run"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// bootSectorGuest defines a guest NAME whose disk (volume NAME) boots a
// boot sector that prints marker on COM1 and then does then.
func bootSectorGuest(t *testing.T, home, name, marker string, then boottest.Action) (diskPath string) {
	t.Helper()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	ok(t, home, "volume", "create", name, "--size", "1M")
	var v struct{ Path string }
	jsonOf(t, home, &v, "volume", "info", name)
	writeBootSector(t, v.Path, marker, then)
	ok(t, home, "guest", "define", name, "--disk", name, "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu")
	return v.Path
}

// writeBootSector puts a boot sector into a disk image in place (the same
// file: strata's volume keeps its identity).
func writeBootSector(t *testing.T, path, marker string, then boottest.Action) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(boottest.BootSector(marker, then), 0); err != nil {
		t.Fatal(err)
	}
}

func guestID(t *testing.T, home, name string) string {
	t.Helper()
	var g struct{ ID string }
	jsonOf(t, home, &g, "guest", "show", name)
	return g.ID
}

// waitSerialLog waits until the guest's serial log holds a line matching
// re.
func waitSerialLog(t *testing.T, home, name, re string, timeout time.Duration) string {
	t.Helper()
	p := filepath.Join(home, "run", guestID(t, home, name), "serial.log")
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p)
		if m := rx.Find(b); m != nil {
			return string(m)
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s: no serial line matching %q within %s; serial log: %q", name, re, timeout, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type guestStatus struct {
	Guest    string
	State    string
	Driver   string
	PID      int
	Accel    string
	VNC      string
	UptimeS  float64 `json:"uptime_s"`
	Features []string
	LastStop *struct {
		Reason     string
		SerialTail []string `json:"serial_tail"`
	} `json:"last_stop"`
}

func statusOf(t *testing.T, home, name string) guestStatus {
	t.Helper()
	var s guestStatus
	jsonOf(t, home, &s, "guest", "status", name)
	return s
}

// waitState waits until the guest's state is want.
func waitState(t *testing.T, home, name, want string, timeout time.Duration) guestStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := statusOf(t, home, name)
		if s.State == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s: state %q after %s, want %q", name, s.State, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The whole life of a running guest through the strata binary: start
// (waiting for its first serial line), status, list, screenshot, pause,
// resume, what a running guest refuses (a second start, a point, a
// rollback, a delete), and a clean stop by the ACPI power button.
func TestGuestStartStatusStopThroughQEMU(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "bs", "STRATA-BS-UP", boottest.PowerButton)
	ok(t, home, "snapshot", "create", "bs", "--name", "before")
	start := time.Now()
	ok(t, home, "guest", "start", "bs", "--wait-serial", "STRATA-BS-UP") // the driver its definition names
	t.Logf("start to first serial line: %s", time.Since(start).Round(time.Millisecond))

	s := statusOf(t, home, "bs")
	if s.State != "running" || s.Driver != "qemu" || s.PID <= 0 || s.Accel != "tcg" || !strings.HasPrefix(s.VNC, "127.0.0.1:") ||
		strings.Join(s.Features, ",") != "pause,attach-disk,attach-nic,screenshot,console,live-points,memory-state" {
		t.Fatalf("status of a running guest: %+v", s)
	}
	var list []struct{ Name, State string }
	jsonOf(t, home, &list, "guest", "list")
	if len(list) != 1 || list[0].State != "running" {
		t.Fatalf("guest list: %+v", list)
	}
	if out := ok(t, home, "guest", "list"); !strings.Contains(out, "STATE") || !strings.Contains(out, "running") {
		t.Fatalf("guest list table:\n%s", out)
	}
	var vnc struct{ VNC string }
	jsonOf(t, home, &vnc, "guest", "vnc", "bs")
	if vnc.VNC != s.VNC {
		t.Fatalf("guest vnc %q, status %q", vnc.VNC, s.VNC)
	}

	shot := filepath.Join(t.TempDir(), "screen.png")
	ok(t, home, "guest", "screenshot", "bs", shot)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil || img.Bounds().Dx() < 320 {
		t.Fatalf("screenshot is not a PNG of a screen: %v %v", err, img)
	}

	// What a running guest refuses, each changing nothing.
	fails(t, home, 7, []string{`guest "bs" is already running`}, "guest", "start", "bs")
	// (A point of the guest is taken live; one of its disk alone is not.)
	fails(t, home, 5, []string{"bs", "in use"}, "snapshot", "create", "--volume", "bs")
	fails(t, home, 5, []string{"--restart"}, "snapshot", "rollback", "bs", "before")
	fails(t, home, 5, []string{"in use"}, "volume", "resize", "bs", "--size", "2M")

	ok(t, home, "guest", "pause", "bs")
	if s := statusOf(t, home, "bs"); s.State != "paused" {
		t.Fatalf("after pause: %+v", s)
	}
	ok(t, home, "guest", "resume", "bs")
	if s := statusOf(t, home, "bs"); s.State != "running" {
		t.Fatalf("after resume: %+v", s)
	}

	ok(t, home, "guest", "stop", "bs", "--timeout", "30s")
	s = statusOf(t, home, "bs")
	if s.State != "stopped" || s.LastStop == nil || s.LastStop.Reason != "shutdown" {
		t.Fatalf("after a clean stop: %+v", s)
	}
	fails(t, home, 7, []string{`guest "bs" is not running`}, "guest", "stop", "bs")
	fails(t, home, 7, []string{"not running"}, "guest", "screenshot", "bs", shot)
	// Stopped, the guest's disks are free again.
	ok(t, home, "snapshot", "create", "bs", "--name", "after")
}

// A guest that rebooted with on_reboot=destroy, one that powered off, one
// that was killed: status says which, with its last serial lines.
func TestGuestStopReasonsAreRecorded(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "rb", "STRATA-RB", boottest.Reboot)
	ok(t, home, "guest", "set", "rb", "on_reboot=destroy")
	ok(t, home, "guest", "start", "rb")
	s := waitState(t, home, "rb", "stopped", 30*time.Second)
	if s.LastStop == nil || s.LastStop.Reason != "reboot" || !strings.Contains(strings.Join(s.LastStop.SerialTail, "\n"), "STRATA-RB") {
		t.Fatalf("a guest that rebooted with on_reboot=destroy: %+v", s.LastStop)
	}

	bootSectorGuest(t, home, "po", "STRATA-PO", boottest.PowerOff)
	ok(t, home, "guest", "start", "po")
	if s := waitState(t, home, "po", "stopped", 30*time.Second); s.LastStop == nil || s.LastStop.Reason != "poweroff" {
		t.Fatalf("a guest that powered off: %+v", s.LastStop)
	}

	bootSectorGuest(t, home, "hl", "STRATA-HL", boottest.Halt)
	ok(t, home, "guest", "start", "hl", "--wait-serial", "STRATA-HL")
	fails(t, home, 5, []string{`guest "hl" is running`, "stop it first"}, "guest", "delete", "hl", "--with-disks")
	ok(t, home, "guest", "kill", "hl")
	if s := statusOf(t, home, "hl"); s.State != "stopped" || s.LastStop == nil || s.LastStop.Reason != "killed" {
		t.Fatalf("a killed guest: %+v", s)
	}
}

// A guest that ignores the power button is ended after --timeout.
func TestGuestStopEndsAGuestThatIgnoresACPI(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "deaf", "STRATA-DEAF", boottest.Halt)
	ok(t, home, "guest", "start", "deaf", "--wait-serial", "STRATA-DEAF")
	start := time.Now()
	ok(t, home, "guest", "stop", "deaf", "--timeout", "1s")
	if d := time.Since(start); d < time.Second {
		t.Fatalf("stop returned after %s, before its timeout", d)
	}
	if s := statusOf(t, home, "deaf"); s.State != "stopped" || s.LastStop == nil || s.LastStop.Reason != "quit" {
		t.Fatalf("a guest ended after the timeout: %+v", s)
	}
}

// Bad input to the lifecycle commands: a clear error, the documented exit
// code, and nothing changed.
func TestGuestLifecycleBadInput(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "bs", "STRATA-BS", boottest.PowerButton)

	fails(t, home, 3, []string{`"nosuch"`}, "guest", "start", "nosuch")
	fails(t, home, 3, []string{`"nosuch"`}, "guest", "status", "nosuch")
	fails(t, home, 7, []string{`guest "bs" is not running`}, "guest", "stop", "bs")
	fails(t, home, 7, []string{"not running"}, "guest", "kill", "bs")
	fails(t, home, 7, []string{"not running"}, "guest", "pause", "bs")
	fails(t, home, 2, []string{"driver", "nosuch"}, "guest", "start", "bs", "--driver", "nosuch")
	fails(t, home, 2, []string{"--wait-serial"}, "guest", "start", "bs", "--wait-serial", "(")
	fails(t, home, 2, []string{"NAME"}, "guest", "start")
	fails(t, home, 2, []string{"driver", "bogus", "qemu"}, "guest", "set", "bs", "driver=bogus")
	fails(t, home, 2, []string{"driver", "bogus"}, "guest", "define", "b2", "--driver", "bogus")

	before := snapshotState(t, home)
	// No QEMU on PATH.
	r := runIn(t, home, []string{"PATH=/nonexistent"}, "guest", "start", "bs", "--driver", "qemu")
	if r.code != 7 || !strings.Contains(r.stderr, "qemu-system-x86_64") {
		t.Errorf("start without QEMU: exit %d: %s", r.code, r.stderr)
	}
	// A missing ISO.
	ok(t, home, "guest", "define", "cd", "--cdrom", "/nonexistent/win.iso", "--memory", "16", "--os", "other", "--driver", "qemu")
	before = snapshotState(t, home)
	fails(t, home, 3, []string{"hdc", "/nonexistent/win.iso", "missing"}, "guest", "start", "cd")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused start changed the state home:\n%s\n---\n%s", before, after)
	}
	for _, g := range []string{"bs", "cd"} {
		if s := statusOf(t, home, g); s.State != "stopped" || s.LastStop != nil {
			t.Errorf("%s after refused starts: %+v", g, s)
		}
	}
	// A disk whose image was removed behind strata's back.
	var v struct{ Path string }
	jsonOf(t, home, &v, "volume", "info", "bs")
	if err := os.Rename(v.Path, v.Path+".away"); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 3, []string{"hda", `volume "bs"`, "missing"}, "guest", "start", "bs")
	os.Rename(v.Path+".away", v.Path)
}

func killPID(s string) error {
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 1 {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// guest console connects to the guest's first serial port both ways, and
// Ctrl-] detaches (leaving the guest running).
func TestGuestConsoleIsInteractive(t *testing.T) {
	home := shortHome(t)
	echoGuest(t, home, "echo", "STRATA-ECHO")
	ok(t, home, "guest", "start", "echo", "--wait-serial", "STRATA-ECHO")

	// QEMU serves one client on the serial port: a second console is
	// refused, not connected to silence.
	consoleEchoes(t, home, "echo", "typed-into-the-console", "guest", "console", "echo")
	if s := statusOf(t, home, "echo"); s.State != "running" {
		t.Fatalf("after detaching, the guest is %s", s.State)
	}
	// Detached, the console is free again.
	again := exec.Command(strataBinary(t), "--home", home, "guest", "console", "echo")
	again.Stdin = strings.NewReader("\x1d")
	if out, err := again.CombinedOutput(); err != nil {
		t.Fatalf("a console after the first detached: %v\n%s", err, out)
	}
	ok(t, home, "guest", "kill", "echo")
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// restart and rollback --restart start the guest again as it was started
// (and with its definition as it is now: guest set of a running guest
// says the change waits for the next start):
// a guest with a NIC started with --network user (this host has no
// bridge) comes back with user networking, not the bridge it would get by
// default (which fails here).
func TestRestartKeepsHowTheGuestWasStarted(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "net0", "STRATA-NET", boottest.PowerButton)
	ok(t, home, "guest", "delete", "net0")
	ok(t, home, "guest", "define", "net", "--disk", "net0", "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu", "--nic", "bridge=xenbr0")
	ok(t, home, "snapshot", "create", "net", "--name", "p")
	fails(t, home, 7, []string{"QEMU did not start"}, "guest", "start", "net", "--network", "bridge")
	ok(t, home, "guest", "start", "net", "--network", "user", "--wait-serial", "STRATA-NET")
	if r := runIn(t, home, nil, "guest", "set", "net", "memory=32"); r.code != 0 || !strings.Contains(r.stderr, "takes effect when it next starts") {
		t.Fatalf("guest set of a running guest: exit %d: %s", r.code, r.stderr)
	}
	ok(t, home, "guest", "restart", "net", "--timeout", "30s")
	if s := statusOf(t, home, "net"); s.State != "running" {
		t.Fatalf("after restart: %+v", s)
	}
	ok(t, home, "snapshot", "rollback", "net", "p", "--restart", "--timeout", "30s")
	if s := statusOf(t, home, "net"); s.State != "running" {
		t.Fatalf("after rollback --restart: %+v", s)
	}
	ok(t, home, "guest", "kill", "net")
}

// guest insert and eject change the disc in a CD-ROM drive: in the
// definition of a stopped guest, and live in a running one (QEMU's own
// view, asked over QMP, shows the disc) and in its definition; bad input
// is refused and changes nothing.
func TestGuestMediaChangeLiveAndInTheDefinition(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "cd0", "STRATA-CD", boottest.Halt)
	ok(t, home, "guest", "delete", "cd0")
	ok(t, home, "guest", "define", "cd", "--disk", "cd0", "--cdrom", "", "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "README.TXT"), []byte("disc one\n"), 0o644)
	ok(t, home, "iso", "build", src, "disc1")
	var m struct{ Path string }
	jsonOf(t, home, &m, "iso", "info", "disc1")
	type shown struct {
		Disks []struct {
			Vdev, Media, Path string
			CDROM             bool
		}
	}
	cdOf := func() (string, string) {
		var g shown
		jsonOf(t, home, &g, "guest", "show", "cd")
		for _, d := range g.Disks {
			if d.CDROM {
				return d.Media, d.Path
			}
		}
		t.Fatalf("no CD-ROM drive: %+v", g)
		return "", ""
	}

	ok(t, home, "guest", "insert", "cd", "disc1")
	if media, _ := cdOf(); media != "disc1" {
		t.Fatalf("insert into a stopped guest: media %q", media)
	}
	ok(t, home, "guest", "eject", "cd")
	if media, path := cdOf(); media != "" || path != "" {
		t.Fatalf("eject from a stopped guest: %q %q", media, path)
	}

	before := snapshotState(t, home)
	notISO := filepath.Join(t.TempDir(), "notes.iso")
	os.WriteFile(notISO, []byte("not a disc"), 0o644)
	fails(t, home, 2, []string{"not an ISO image"}, "guest", "insert", "cd", notISO)
	fails(t, home, 3, []string{"nosuch"}, "guest", "insert", "cd", "nosuch")
	fails(t, home, 3, []string{"hdd"}, "guest", "insert", "cd", "disc1", "hdd")
	if after := snapshotState(t, home); after != before {
		t.Fatalf("a refused insert changed the home:\n%s\n---\n%s", before, after)
	}

	ok(t, home, "guest", "start", "cd", "--wait-serial", "STRATA-CD")
	qmpInserted := func() string {
		c, err := qmp.Dial(context.Background(), filepath.Join(home, "run", guestID(t, home, "cd"), "qmp.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw, err := c.Execute(context.Background(), "query-block", nil)
		if err != nil {
			t.Fatal(err)
		}
		var blocks []struct {
			Device   string
			Inserted *struct{ File string }
		}
		json.Unmarshal(raw, &blocks)
		for _, b := range blocks {
			if b.Device == "ide1-cd0" {
				if b.Inserted == nil {
					return ""
				}
				return b.Inserted.File
			}
		}
		t.Fatalf("QEMU has no drive ide1-cd0: %s", raw)
		return ""
	}
	if f := qmpInserted(); f != "" {
		t.Fatalf("an empty drive holds %q", f)
	}
	ok(t, home, "guest", "insert", "cd", "disc1", "hdc")
	if f := qmpInserted(); f != m.Path {
		t.Fatalf("after a live insert QEMU's drive holds %q, want %q", f, m.Path)
	}
	if media, _ := cdOf(); media != "disc1" {
		t.Fatalf("a live insert did not reach the definition: %q", media)
	}
	ok(t, home, "guest", "eject", "cd")
	if f := qmpInserted(); f != "" {
		t.Fatalf("after a live eject QEMU's drive holds %q", f)
	}
	if media, _ := cdOf(); media != "" {
		t.Fatalf("a live eject did not reach the definition: %q", media)
	}
	ok(t, home, "guest", "kill", "cd")
}

// consoleEchoes attaches `guest console` to a guest whose serial port
// echoes, types text until it comes back, runs the strata command second
// (if any) while the console is attached and expects it refused as busy,
// then detaches with Ctrl-] and expects the console to end cleanly.
func consoleEchoes(t *testing.T, home, guest, text string, second ...string) {
	t.Helper()
	cmd := exec.Command(strataBinary(t), "--home", home, "guest", "console", guest)
	stdin, _ := cmd.StdinPipe()
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), text) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the guest's echo never came back through guest console: %q", out.String())
		}
		stdin.Write([]byte(text + "\r"))
		time.Sleep(200 * time.Millisecond)
	}
	if len(second) > 0 {
		fails(t, home, 6, []string{"another console is attached"}, second...)
	}
	stdin.Write([]byte{0x1d})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("console after Ctrl-]: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("Ctrl-] did not detach the console")
	}
}

// echoGuest defines a guest whose boot sector prints marker and then
// echoes what its serial port receives.
func echoGuest(t *testing.T, home, name, marker string) {
	t.Helper()
	path := bootSectorGuest(t, home, name, marker, boottest.Halt)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(boottest.EchoSector(marker), 0); err != nil {
		t.Fatal(err)
	}
}
