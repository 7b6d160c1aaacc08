package qemu_test

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/boot/qemu"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/storagetest"
)

// The test binary is also the watcher: the driver runs
// `TESTBINARY __watch RUNDIR`, as strata runs `strata guest __watch`.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "__watch" {
		if err := qemu.Watch(context.Background(), os.Args[2]); err != nil {
			os.Stderr.WriteString("watch: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	storagetest.StopCeph()
	os.Exit(code)
}

type env struct {
	t    *testing.T
	home string
	d    *qemu.Driver
}

func watcherArgv(dir string) []string { return []string{os.Args[0], "__watch", dir} }

func newEnv(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	// Short: unix socket paths in the runtime dir must stay under 108
	// bytes, which t.TempDir's test-named paths may not.
	home, err := os.MkdirTemp("", "sq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	return &env{t: t, home: home, d: qemu.New(qemu.Config{Home: home, Network: qemuargv.NetNone, WatcherArgv: watcherArgv})}
}

func marker(name string) string { return "HELLO-" + name }

// guest makes a boot-sector guest called name.
func (e *env) guest(name string, then boottest.Action, mod func(*hvm.Guest)) *boot.Guest {
	e.t.Helper()
	disk := filepath.Join(e.home, name+".raw")
	if err := boottest.WriteDisk(disk, boottest.BootSector(marker(name)+"\r\n", then)); err != nil {
		e.t.Fatal(err)
	}
	def := boottest.Guest(name, disk)
	if mod != nil {
		mod(def)
	}
	rd, err := boot.RunDirFor(e.home, "id-"+name)
	if err != nil {
		e.t.Fatal(err)
	}
	g := &boot.Guest{ID: "id-" + name, Def: def, Run: rd}
	e.t.Cleanup(func() { e.d.Kill(context.Background(), g) })
	return g
}

func (e *env) start(g *boot.Guest, o boot.StartOptions) boot.Status {
	e.t.Helper()
	s, err := e.d.Start(context.Background(), g, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) status(g *boot.Guest) boot.Status {
	e.t.Helper()
	s, err := e.d.Status(context.Background(), g)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// waitSerial waits until the serial log holds text n times.
func waitSerial(t *testing.T, g *boot.Guest, text string, n int) {
	t.Helper()
	// Generous: a Linux guest under TCG on a busy machine boots slowly.
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, _ := os.ReadFile(g.Run.Path(qemu.SerialLog))
		if strings.Count(string(b), text) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial log %q: want %q %d times", b, text, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *env) waitStopped(g *boot.Guest) boot.Status {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := e.status(g)
		if s.State == boot.Stopped {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("still %s", s.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// After a stop only stopped.json, the serial log and the watcher's log
// remain.
func assertCleaned(t *testing.T, g *boot.Guest) {
	t.Helper()
	for _, f := range []string{boot.StateFile, "qemu.pid", "qmp.sock", "events.sock", "serial.sock", "started.json", "intent.json", "watcher.json"} {
		if exists(g.Run.Path(f)) {
			t.Errorf("%s left behind", f)
		}
	}
	if !exists(g.Run.Path(boot.StoppedFile)) {
		t.Error("no stopped.json")
	}
}

func TestStartStatusConsoleScreenshotPauseKill(t *testing.T) {
	e := newEnv(t)
	g := e.guest("life", boottest.Halt, nil)
	s := e.start(g, boot.StartOptions{Paused: true})
	if s.State != boot.Paused || s.PID <= 0 || s.Accel != "tcg" || s.Driver != "qemu" || !strings.HasPrefix(s.VNC, "127.0.0.1:59") ||
		!slices.Equal(s.Disks, []string{g.Def.Disks[0].Path}) || s.Started.IsZero() {
		t.Fatalf("start: %+v", s)
	}
	st, _ := g.Run.ReadState()
	if st == nil || st.Accel != "tcg" || st.PID != s.PID || st.PIDStart == 0 || st.VNC != s.VNC {
		t.Fatalf("state.json %+v", st)
	}
	// The console is connected before the guest's first instruction, so
	// it reads the marker.
	con, err := e.d.Console(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	if err := e.d.Resume(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 256)
		for !strings.Contains(buf.String(), marker("life")) {
			n, err := con.Read(b)
			buf.Write(b[:n])
			if err != nil {
				break
			}
		}
		got <- buf.String()
	}()
	select {
	case out := <-got:
		if !strings.Contains(out, marker("life")) {
			t.Fatalf("console read %q", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing on the console")
	}
	waitSerial(t, g, marker("life"), 1)
	if s := e.status(g); s.State != boot.Running || s.UptimeSeconds <= 0 {
		t.Fatalf("status %+v", s)
	}
	if _, err := e.d.Start(context.Background(), g, boot.StartOptions{}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("second start: %v", err)
	}

	var img bytes.Buffer
	if err := e.d.Screenshot(context.Background(), g, &img); err != nil {
		t.Fatal(err)
	}
	pic, err := png.Decode(&img)
	if err != nil || pic.Bounds().Dx() < 320 || pic.Bounds().Dy() < 200 {
		t.Fatalf("screenshot: %v %v", err, pic)
	}
	if m, _ := filepath.Glob(g.Run.Path("screen-*")); len(m) != 0 {
		t.Fatalf("screendump files left: %v", m)
	}

	if err := e.d.Pause(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	if s := e.status(g); s.State != boot.Paused {
		t.Fatalf("after pause: %s", s.State)
	}
	if err := e.d.Pause(context.Background(), g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("pause of a paused guest: %v", err)
	}
	if err := e.d.Resume(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	if s := e.status(g); s.State != boot.Running {
		t.Fatalf("after resume: %s", s.State)
	}
	if err := e.d.Resume(context.Background(), g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("resume of a running guest: %v", err)
	}

	rs, err := e.d.Running(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Name != "life" || rs[0].PID != s.PID || !slices.Equal(rs[0].Disks, s.Disks) {
		t.Fatalf("running: %+v %v", rs, err)
	}

	if err := e.d.Kill(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	s = e.status(g)
	if s.State != boot.Stopped || s.LastStop == nil || s.LastStop.Reason != boot.ReasonKilled ||
		!slices.ContainsFunc(s.LastStop.SerialTail, func(l string) bool { return strings.Contains(l, marker("life")) }) {
		t.Fatalf("after kill: %+v %+v", s, s.LastStop)
	}
	if st.Live() {
		t.Fatal("QEMU still runs")
	}
	assertCleaned(t, g)
	if rs, _ := e.d.Running(context.Background()); len(rs) != 0 {
		t.Fatalf("running after kill: %+v", rs)
	}
	if err := e.d.Kill(context.Background(), g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("kill of a stopped guest: %v", err)
	}
	if _, err := e.d.Stop(context.Background(), g, boot.StopOptions{}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("stop of a stopped guest: %v", err)
	}
}

func TestStopOfGuestIgnoringACPIQuitsAfterTimeout(t *testing.T) {
	e := newEnv(t)
	g := e.guest("deaf", boottest.Halt, nil)
	e.start(g, boot.StartOptions{})
	waitSerial(t, g, marker("deaf"), 1)
	t0 := time.Now()
	type result struct {
		s   boot.Status
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := e.d.Stop(context.Background(), g, boot.StopOptions{Timeout: 600 * time.Millisecond})
		done <- result{s, err}
	}()
	time.Sleep(200 * time.Millisecond)
	if s := e.status(g); s.State != boot.Stopping {
		t.Fatalf("status while stopping: %s", s.State)
	}
	r := <-done
	s, err := r.s, r.err
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 600*time.Millisecond || took > 5*time.Second {
		t.Fatalf("stop took %v", took)
	}
	if s.State != boot.Stopped || s.LastStop == nil || s.LastStop.Reason != boot.ReasonQuit || !strings.Contains(s.LastStop.Detail, "did not shut down") {
		t.Fatalf("%+v %+v", s, s.LastStop)
	}
	assertCleaned(t, g)
}

// A paused guest cannot see the power button: stop quits it at once.
func TestStopOfPausedGuestQuitsAtOnce(t *testing.T) {
	e := newEnv(t)
	g := e.guest("paused", boottest.PowerButton, nil)
	e.start(g, boot.StartOptions{Paused: true})
	t0 := time.Now()
	s, err := e.d.Stop(context.Background(), g, boot.StopOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s.LastStop == nil || s.LastStop.Reason != boot.ReasonQuit || time.Since(t0) > 10*time.Second {
		t.Fatalf("after %v: %+v", time.Since(t0), s.LastStop)
	}
	assertCleaned(t, g)
}

// QEMU refusing the command line (a disk it cannot open): its message is
// in the error, and no state is left.
func TestStartFailureInQEMULeavesNoState(t *testing.T) {
	e := newEnv(t)
	g := e.guest("refused", boottest.Halt, func(g *hvm.Guest) { g.Disks[0].Path = os.TempDir() })
	_, err := e.d.Start(context.Background(), g, boot.StartOptions{})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "QEMU did not start") || !strings.Contains(err.Error(), os.TempDir()) {
		t.Fatalf("start: %v", err)
	}
	for _, f := range []string{boot.StateFile, boot.StoppedFile, "qemu.pid", "started.json"} {
		if exists(g.Run.Path(f)) {
			t.Errorf("%s left behind", f)
		}
	}
	if s := e.status(g); s.State != boot.Stopped || s.LastStop != nil {
		t.Fatalf("status %+v", s)
	}
}

func TestStopByPowerButtonRecordsShutdown(t *testing.T) {
	e := newEnv(t)
	g := e.guest("polite", boottest.PowerButton, nil)
	e.start(g, boot.StartOptions{})
	waitSerial(t, g, marker("polite"), 1)
	t0 := time.Now()
	s, err := e.d.Stop(context.Background(), g, boot.StopOptions{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.LastStop == nil || s.LastStop.Reason != boot.ReasonShutdown || time.Since(t0) > 10*time.Second {
		t.Fatalf("after %v: %+v %+v", time.Since(t0), s, s.LastStop)
	}
	assertCleaned(t, g)
	// The next run's serial log holds that run only; a start clears the
	// last stop.
	e.start(g, boot.StartOptions{})
	waitSerial(t, g, marker("polite"), 1)
	time.Sleep(50 * time.Millisecond)
	if b, _ := os.ReadFile(g.Run.Path(qemu.SerialLog)); strings.Count(string(b), marker("polite")) != 1 {
		t.Fatalf("serial log of the second run: %q", b)
	}
	if s := e.status(g); s.LastStop != nil || exists(g.Run.Path(boot.StoppedFile)) {
		t.Fatalf("last stop after a new start: %+v", s.LastStop)
	}
}

func TestStopForceKills(t *testing.T) {
	e := newEnv(t)
	g := e.guest("forced", boottest.PowerButton, nil)
	e.start(g, boot.StartOptions{})
	s, err := e.d.Stop(context.Background(), g, boot.StopOptions{Force: true, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s.LastStop == nil || s.LastStop.Reason != boot.ReasonKilled {
		t.Fatalf("%+v", s.LastStop)
	}
	assertCleaned(t, g)
}

// The guest's own power-off, reboot with on_reboot destroy: the watcher
// records why.
func TestGuestStopsAreRecordedWithTheirReason(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action boottest.Action
		mod    func(*hvm.Guest)
		reason string
	}{
		{"poweroff", boottest.PowerOff, nil, boot.ReasonPoweroff},
		{"reboot", boottest.Reboot, func(g *hvm.Guest) { g.Lifecycle.OnReboot = "destroy" }, boot.ReasonReboot},
		// preserve on power-off pauses QEMU; the reboot still ends it.
		{"reboot-preserve", boottest.Reboot, func(g *hvm.Guest) {
			g.Lifecycle.OnReboot = "destroy"
			g.Lifecycle.OnPoweroff = "preserve"
		}, boot.ReasonReboot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			g := e.guest(tc.name, tc.action, tc.mod)
			e.start(g, boot.StartOptions{})
			s := e.waitStopped(g)
			if s.LastStop == nil || s.LastStop.Reason != tc.reason || s.LastStop.At.IsZero() ||
				!slices.ContainsFunc(s.LastStop.SerialTail, func(l string) bool { return strings.Contains(l, marker(tc.name)) }) {
				t.Fatalf("%+v", s.LastStop)
			}
			assertCleaned(t, g)
			if b, _ := os.ReadFile(g.Run.Path(qemu.SerialLog)); !strings.Contains(string(b), marker(tc.name)) {
				t.Fatalf("serial log after the stop: %q", b)
			}
		})
	}
}

// on_reboot restart resets in QEMU; on_poweroff restart is the watcher's
// work (QEMU pauses, the watcher resets and resumes): either way the
// guest boots again and keeps running.
func TestRestartActionsBootAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action boottest.Action
		mod    func(*hvm.Guest)
	}{
		{"on-reboot", boottest.Reboot, func(g *hvm.Guest) { g.Lifecycle.OnReboot = "restart" }},
		{"on-poweroff", boottest.PowerOff, func(g *hvm.Guest) { g.Lifecycle.OnPoweroff = "restart" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			g := e.guest(tc.name, tc.action, tc.mod)
			e.start(g, boot.StartOptions{})
			waitSerial(t, g, marker(tc.name), 3)
			if s := e.status(g); !s.State.Live() {
				t.Fatalf("status %+v %+v", s, s.LastStop)
			}
		})
	}
}

// QEMU killed from outside: status says died and cleans up, with the
// watcher or without one.
func TestQEMUKilledFromOutsideIsReportedDied(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(map[bool]string{true: "watched", false: "unwatched"}[watch], func(t *testing.T) {
			e := newEnv(t)
			if !watch {
				e.d = qemu.New(qemu.Config{Home: e.home, Network: qemuargv.NetNone})
			}
			g := e.guest("victim", boottest.Halt, nil)
			s := e.start(g, boot.StartOptions{})
			syscall.Kill(s.PID, syscall.SIGKILL)
			s = e.waitStopped(g)
			if s.LastStop == nil || s.LastStop.Reason != boot.ReasonDied {
				t.Fatalf("%+v", s.LastStop)
			}
			assertCleaned(t, g)
		})
	}
}

// A state.json whose pid now names another process (a wrong start time):
// that process is never signalled, the guest is reported died.
func TestReusedPIDIsNeverSignalled(t *testing.T) {
	e := newEnv(t)
	g := e.guest("reused", boottest.Halt, nil)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	start, err := boot.ProcStart(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	fake := func() {
		if err := g.Run.WriteState(boot.RunState{Driver: boot.QEMU, PID: other.Process.Pid, PIDStart: start + 1, Started: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	fake()
	if err := e.d.Kill(context.Background(), g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("kill: %v", err)
	}
	fake()
	if _, err := e.d.Stop(context.Background(), g, boot.StopOptions{Force: true}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("stop: %v", err)
	}
	fake()
	if err := e.d.Pause(context.Background(), g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("pause: %v", err)
	}
	fake()
	if s := e.status(g); s.State != boot.Stopped || s.LastStop == nil || s.LastStop.Reason != boot.ReasonDied {
		t.Fatalf("status %+v", s)
	}
	if rs, _ := e.d.Running(context.Background()); len(rs) != 0 {
		t.Fatalf("running %+v", rs)
	}
	if !boot.SameProcess(other.Process.Pid, start) {
		t.Fatal("the other process was signalled")
	}
}

// A guest another driver runs is not the qemu driver's: not listed, not
// started twice, not stopped.
func TestGuestOfAnotherDriverIsLeftAlone(t *testing.T) {
	e := newEnv(t)
	g := e.guest("other", boottest.Halt, nil)
	me, _ := boot.ProcStart(os.Getpid())
	g.Run.WriteState(boot.RunState{Driver: boot.Libvirt, Domain: "other", PID: os.Getpid(), PIDStart: me, Started: time.Now()})
	if rs, err := e.d.Running(context.Background()); err != nil || len(rs) != 0 {
		t.Fatalf("running %+v %v", rs, err)
	}
	for what, err := range map[string]error{
		"start": func() error { _, err := e.d.Start(context.Background(), g, boot.StartOptions{}); return err }(),
		"stop":  func() error { _, err := e.d.Stop(context.Background(), g, boot.StopOptions{Force: true}); return err }(),
		"kill":  e.d.Kill(context.Background(), g),
	} {
		if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "libvirt") {
			t.Errorf("%s: %v", what, err)
		}
	}
	if st, _ := g.Run.ReadState(); st == nil || st.Driver != boot.Libvirt {
		t.Fatalf("state.json %+v", st)
	}
}

func TestStartWithMissingQEMUOrDiskChangesNothing(t *testing.T) {
	e := newEnv(t)
	g := e.guest("nobinary", boottest.Halt, nil)
	prev := boot.StopRecord{At: time.Now().UTC().Truncate(time.Second), Reason: boot.ReasonPoweroff}
	g.Run.WriteStopped(prev)
	before, _ := os.ReadDir(g.Run.Dir)

	d := qemu.New(qemu.Config{Home: e.home, Binary: "/nonexistent/qemu-system-x86_64", WatcherArgv: watcherArgv})
	_, err := d.Start(context.Background(), g, boot.StartOptions{})
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "qemu-system-x86_64") {
		t.Fatalf("start: %v", err)
	}
	if d.Available(context.Background()) == nil {
		t.Fatal("available without a binary")
	}
	os.Remove(g.Def.Disks[0].Path)
	if _, err := e.d.Start(context.Background(), g, boot.StartOptions{}); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "hda") {
		t.Fatalf("start without its disk: %v", err)
	}
	after, _ := os.ReadDir(g.Run.Dir)
	names := func(es []os.DirEntry) (n []string) {
		for _, e := range es {
			if e.Name() != "lock" {
				n = append(n, e.Name())
			}
		}
		return n
	}
	if !slices.Equal(names(before), names(after)) {
		t.Fatalf("runtime dir %v, was %v", names(after), names(before))
	}
	if rec, _ := g.Run.ReadStopped(); rec == nil || !rec.At.Equal(prev.At) || rec.Reason != prev.Reason {
		t.Fatalf("stopped.json %+v", rec)
	}
}

// The VNC password is set over QMP, never on QEMU's command line.
func TestVNCPasswordNotOnCommandLine(t *testing.T) {
	e := newEnv(t)
	const pw = "s3cr3tpw"
	g := e.guest("vncpw", boottest.Halt, func(g *hvm.Guest) { g.Display.VNCPasswd = pw })
	s := e.start(g, boot.StartOptions{Paused: true})
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(s.PID) + "/cmdline")
	if len(cmdline) == 0 || bytes.Contains(cmdline, []byte(pw)) {
		t.Fatalf("cmdline %q", cmdline)
	}
	for _, f := range []string{boot.StateFile, "started.json"} {
		if b, _ := os.ReadFile(g.Run.Path(f)); bytes.Contains(b, []byte(pw)) {
			t.Fatalf("%s holds the password", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, g.Run.Path("qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Execute(ctx, "query-vnc", nil)
	if err != nil || !strings.Contains(string(r), `"auth": "vnc"`) && !strings.Contains(string(r), `"auth":"vnc"`) {
		t.Fatalf("query-vnc %s %v", r, err)
	}
}

func TestCPUHasVirt(t *testing.T) {
	for text, want := range map[string]bool{
		"processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae vmx sse\n": true,
		"flags\t\t: fpu svm lm\n":                     true,
		"flags\t\t: fpu vme de pse tsc msr pae sse\n": false,
		"vmx flags\t: vnmi preemption_timer\n":        false,
		"":                                            false,
	} {
		if got := qemu.CPUHasVirt([]byte(text)); got != want {
			t.Errorf("%q: %v", text, got)
		}
	}
}

// A watcher that ends before it holds the events socket (here one that
// exits at once) fails the start with its reason, and the paused QEMU
// is ended: a guest nobody watches never runs.
func TestStartFailsWhenTheWatcherIsNotReady(t *testing.T) {
	e := newEnv(t)
	g := e.guest("nowatch", boottest.Halt, nil)
	d := qemu.New(qemu.Config{Home: e.home, Network: qemuargv.NetNone, WatcherArgv: func(string) []string {
		return []string{"/bin/sh", "-c", "echo watcher gave up >&2; exit 3"}
	}})
	_, err := d.Start(context.Background(), g, boot.StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "ended before it was ready") || !strings.Contains(err.Error(), "watcher gave up") {
		t.Fatalf("start with a watcher that ends: %v", err)
	}
	if rs, _ := e.d.Running(context.Background()); len(rs) != 0 {
		t.Fatalf("a QEMU is left running: %+v", rs)
	}
	if st := e.status(g); st.State != boot.Stopped {
		t.Fatalf("status after the failed start: %+v", st)
	}
}
