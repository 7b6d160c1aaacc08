// These tests do not run a real Xen: no hypervisor runs on the machines
// they run on, and xl refuses to start without one. A scripted runner
// stands in for xl: each test lists the exact commands (argv) the driver
// must run, in order, and what xl answers, taken from recorded samples of
// Xen 4.17's output in testdata/xl (see its README for where each shape
// comes from).
package xl_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/xl"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

func sample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "xl", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// step is one command the driver must run and xl's answer.
type step struct {
	argv   []string
	out    string
	stderr string
	code   int  // exit code; non-zero fails
	block  bool // hang until the context ends
}

func cmd(s string) []string { return strings.Fields(s) }

// fakeXL is the scripted stand-in for xl (and xenstore-read).
type fakeXL struct {
	t     *testing.T
	steps []step
	ran   [][]string
}

func (f *fakeXL) run(ctx context.Context, argv ...string) ([]byte, error) {
	f.ran = append(f.ran, argv)
	if len(f.steps) == 0 {
		f.t.Errorf("unexpected command %q", argv)
		return nil, &run.Error{Argv: argv, ExitCode: 1, Stderr: "unexpected command"}
	}
	s := f.steps[0]
	f.steps = f.steps[1:]
	if !slices.Equal(argv, s.argv) {
		f.t.Errorf("ran %q, want %q", argv, s.argv)
	}
	if s.block {
		<-ctx.Done()
		return nil, &run.Error{Argv: argv, ExitCode: -1, Err: ctx.Err()}
	}
	if s.code != 0 {
		return []byte(s.out), &run.Error{Argv: argv, ExitCode: s.code, Stderr: s.stderr}
	}
	return []byte(s.out), nil
}

func (f *fakeXL) done() {
	f.t.Helper()
	for _, s := range f.steps {
		f.t.Errorf("not run: %q", s.argv)
	}
}

func newDriver(t *testing.T, logDir string, steps ...step) (*xl.Driver, *fakeXL) {
	f := &fakeXL{t: t, steps: steps}
	t.Cleanup(f.done)
	if logDir == "" {
		logDir = t.TempDir()
	}
	return xl.New(xl.Config{Run: f.run, LogDir: logDir, ProbeTimeout: 100 * time.Millisecond}), f
}

const vncSecret = "s3cret-vnc"

func guest(t *testing.T, name string) *boot.Guest {
	t.Helper()
	run, err := boot.RunDirFor(t.TempDir(), "id-"+name)
	if err != nil {
		t.Fatal(err)
	}
	return &boot.Guest{ID: "id-" + name, Run: run, Def: &hvm.Guest{
		APIVersion: hvm.APIVersion,
		Name:       name,
		Memory:     hvm.Int(2048),
		Disks: []hvm.Disk{
			{Path: "/var/lib/strata/pools/default/vol-9f2c.qcow2", Vdev: "hda", Format: "qcow2"},
			{Path: "/var/lib/strata/media/win7-sp1.iso", Vdev: "hdc", CDROM: true},
		},
		Display: hvm.Display{VNC: hvm.Bool(true), VNCListen: "127.0.0.1", VNCDisplay: hvm.Int(3), VNCPasswd: vncSecret},
		Serial:  []string{"pty"},
	}}
}

func is(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want kind %v", err, kind)
	}
}

func TestStartCreatesPausedThenUnpausesWithTheConfigInTheRuntimeDir(t *testing.T) {
	g := guest(t, "win7")
	cfg := g.Run.Path(xl.ConfigFile)
	d, f := newDriver(t, "",
		step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")},
		step{argv: []string{"xl", "create", "-p", "-f", cfg}, stderr: "Parsing config from " + cfg + "\n"},
		step{argv: cmd("xl domid win7"), out: "5\n"},
		step{argv: cmd("xl unpause 5")},
		step{argv: cmd("xl list"), out: sample(t, "list-win7.txt")},
		step{argv: cmd("xl list -l 5"), out: sample(t, "list-l-hvm.json")},
	)
	st, err := d.Start(context.Background(), g, boot.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != boot.Running || st.Domain != "5" || st.Accel != "xen" || st.Driver != "xl" || st.VNC != "127.0.0.1:5903" || st.Started.IsZero() {
		t.Errorf("status %+v", st)
	}
	if len(st.Disks) != 3 || st.Disks[1] != "/dev/vg0/win7-data" {
		t.Errorf("disks %q", st.Disks)
	}
	// The password is in the root-only config file, never on a command line.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `vncpasswd = "`+vncSecret+`"`) || !strings.Contains(string(b), `name = "win7"`) {
		t.Errorf("xl.cfg:\n%s", b)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o600 {
		t.Errorf("xl.cfg mode %v", fi.Mode())
	}
	for _, argv := range f.ran {
		if strings.Contains(strings.Join(argv, " "), vncSecret) {
			t.Errorf("the VNC password is on a command line: %q", argv)
		}
	}
	rs, err := g.Run.ReadState()
	if err != nil || rs == nil || rs.Driver != "xl" || rs.Domain != "5" || rs.Accel != "xen" {
		t.Errorf("state.json %+v %v", rs, err)
	}
}

func TestStartPausedLeavesTheDomainPaused(t *testing.T) {
	g := guest(t, "xp-sp3")
	cfg := g.Run.Path(xl.ConfigFile)
	d, _ := newDriver(t, "",
		step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")},
		step{argv: []string{"xl", "create", "-p", "-f", cfg}},
		step{argv: cmd("xl domid xp-sp3"), out: "12\n"},
		step{argv: cmd("xl list"), out: sample(t, "list-xp-paused.txt")},
		step{argv: cmd("xl list -l 12"), out: sample(t, "list-l-two.json")},
		// vncunused: QEMU chose the port, libxl wrote it to xenstore.
		step{argv: cmd("xenstore-read /local/domain/12/console/vnc-port"), out: "5901\n"},
	)
	st, err := d.Start(context.Background(), g, boot.StartOptions{Paused: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != boot.Paused || st.Domain != "12" || st.VNC != "127.0.0.1:5901" {
		t.Errorf("status %+v", st)
	}
	if !slices.Equal(st.Disks, []string{"/var/lib/strata/pools/default/vol-3e71.raw"}) {
		t.Errorf("disks %q (the empty CD-ROM drive has none)", st.Disks)
	}
}

func TestStartOfARunningGuestIsRefused(t *testing.T) {
	g := guest(t, "win7")
	d, _ := newDriver(t, "", step{argv: cmd("xl list"), out: sample(t, "list-all.txt")})
	_, err := d.Start(context.Background(), g, boot.StartOptions{})
	is(t, err, storage.ErrPrecondition)
	if !strings.Contains(err.Error(), "domain 5") {
		t.Errorf("error %v", err)
	}
}

func TestStartOfAGuestAnotherDriverRunsIsRefused(t *testing.T) {
	g := guest(t, "win7")
	if err := g.Run.WriteState(boot.RunState{Driver: boot.QEMU, PID: 1}); err != nil {
		t.Fatal(err)
	}
	d, _ := newDriver(t, "")
	_, err := d.Start(context.Background(), g, boot.StartOptions{})
	is(t, err, storage.ErrPrecondition)
}

func TestFailedCreateLeavesNothingBehind(t *testing.T) {
	for _, c := range []struct {
		sample string
		code   int
		kind   error
		says   string
	}{
		{"err-create-devmodel-failed.txt", 3, nil, "device model did not start"},
		{"err-create-name-exists.txt", 3, storage.ErrExists, `Domain with name "win7" already exists`},
		{"err-create-parse.txt", 1, nil, "Failed to parse config"},
		{"err-no-hypervisor-4.17.txt", 1, storage.ErrPrecondition, "not running under the Xen hypervisor"},
	} {
		t.Run(c.sample, func(t *testing.T) {
			g := guest(t, "win7")
			cfg := g.Run.Path(xl.ConfigFile)
			if err := g.Run.WriteStopped(boot.StopRecord{Reason: boot.ReasonPoweroff}); err != nil {
				t.Fatal(err)
			}
			d, _ := newDriver(t, "",
				step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")},
				step{argv: []string{"xl", "create", "-p", "-f", cfg}, code: c.code, stderr: sample(t, c.sample)},
			)
			_, err := d.Start(context.Background(), g, boot.StartOptions{})
			if err == nil || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %v, want one saying %q", err, c.says)
			}
			if c.kind != nil {
				is(t, err, c.kind)
			}
			if _, err := os.Stat(cfg); !os.IsNotExist(err) {
				t.Errorf("xl.cfg (with the VNC password) left behind: %v", err)
			}
			if rs, _ := g.Run.ReadState(); rs != nil {
				t.Errorf("state.json left: %+v", rs)
			}
			if rec, _ := g.Run.ReadStopped(); rec == nil || rec.Reason != boot.ReasonPoweroff {
				t.Errorf("the last stop record was lost: %+v", rec)
			}
		})
	}
}

func TestFailedUnpauseDestroysTheDomain(t *testing.T) {
	g := guest(t, "win7")
	cfg := g.Run.Path(xl.ConfigFile)
	d, _ := newDriver(t, "",
		step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")},
		step{argv: []string{"xl", "create", "-p", "-f", cfg}},
		step{argv: cmd("xl domid win7"), out: "5\n"},
		step{argv: cmd("xl unpause 5"), code: 1, stderr: "libxl: error: libxl_domain.c:650:libxl_domain_unpause: Domain 5:Unpausing domain: Invalid argument\n"},
		step{argv: cmd("xl destroy 5")},
	)
	if _, err := d.Start(context.Background(), g, boot.StartOptions{}); err == nil {
		t.Fatal("no error")
	}
	if rs, _ := g.Run.ReadState(); rs != nil {
		t.Errorf("state.json left: %+v", rs)
	}
}

// running is the script's start for a method acting on win7 (domain 5).
func running(t *testing.T) step { return step{argv: cmd("xl list"), out: sample(t, "list-all.txt")} }

// stoppedNow is `xl list` once win7 is gone.
func stoppedNow(t *testing.T) step {
	return step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")}
}

func started(t *testing.T, g *boot.Guest) {
	t.Helper()
	if err := os.WriteFile(g.Run.Path(xl.ConfigFile), []byte("name = \"win7\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Run.WriteState(boot.RunState{Driver: boot.XL, Domain: "5", Accel: "xen", Started: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func lastStop(t *testing.T, g *boot.Guest, st boot.Status, reason string) {
	t.Helper()
	if st.State != boot.Stopped || st.LastStop == nil || st.LastStop.Reason != reason {
		t.Fatalf("status %+v (last stop %+v), want stopped with %s", st, st.LastStop, reason)
	}
	if rs, _ := g.Run.ReadState(); rs != nil {
		t.Errorf("state.json left: %+v", rs)
	}
	if _, err := os.Stat(g.Run.Path(xl.ConfigFile)); !os.IsNotExist(err) {
		t.Errorf("xl.cfg left: %v", err)
	}
}

func TestStopShutsDownAndWaits(t *testing.T) {
	g := guest(t, "win7")
	started(t, g)
	d, _ := newDriver(t, "",
		running(t),
		step{argv: cmd("xl shutdown -w -F 5"), stderr: "Shutting down domain 5\nPV control interface not available: sending ACPI power button event.\n"},
		stoppedNow(t),
	)
	st, err := d.Stop(context.Background(), g, boot.StopOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	lastStop(t, g, st, boot.ReasonShutdown)
}

func TestStopDestroysAGuestThatDoesNotShutDownInTime(t *testing.T) {
	g := guest(t, "win7")
	started(t, g)
	d, _ := newDriver(t, "",
		running(t),
		step{argv: cmd("xl shutdown -w -F 5"), block: true},
		step{argv: cmd("xl destroy 5")},
		stoppedNow(t),
	)
	t0 := time.Now()
	st, err := d.Stop(context.Background(), g, boot.StopOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(t0) > 5*time.Second {
		t.Errorf("stop took %s", time.Since(t0))
	}
	lastStop(t, g, st, boot.ReasonQuit)
	if !strings.Contains(st.LastStop.Detail, "50ms") {
		t.Errorf("detail %q", st.LastStop.Detail)
	}
}

func TestStopForceAndKillDestroyAtOnce(t *testing.T) {
	for _, force := range []bool{true, false} {
		g := guest(t, "win7")
		started(t, g)
		steps := []step{running(t), step{argv: cmd("xl destroy 5")}}
		if force {
			steps = append(steps, stoppedNow(t)) // Stop reports the status
		}
		d, _ := newDriver(t, "", steps...)
		var st boot.Status
		var err error
		if force {
			st, err = d.Stop(context.Background(), g, boot.StopOptions{Force: true})
		} else {
			if err = d.Kill(context.Background(), g); err == nil {
				st, err = boot.Status{State: boot.Stopped}, nil
				st.LastStop, _ = g.Run.ReadStopped()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		lastStop(t, g, st, boot.ReasonKilled)
	}
}

func TestStopKillPauseResumeOfAStoppedGuestAreRefused(t *testing.T) {
	g := guest(t, "win7")
	ctx := context.Background()
	for name, call := range map[string]func(*xl.Driver) error{
		"stop":   func(d *xl.Driver) error { _, err := d.Stop(ctx, g, boot.StopOptions{}); return err },
		"kill":   func(d *xl.Driver) error { return d.Kill(ctx, g) },
		"pause":  func(d *xl.Driver) error { return d.Pause(ctx, g) },
		"resume": func(d *xl.Driver) error { return d.Resume(ctx, g) },
	} {
		t.Run(name, func(t *testing.T) {
			d, _ := newDriver(t, "", stoppedNow(t))
			err := call(d)
			is(t, err, storage.ErrPrecondition)
			if !strings.Contains(err.Error(), "not running") {
				t.Errorf("error %v", err)
			}
		})
	}
}

func TestPauseAndResume(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t, "", running(t), step{argv: cmd("xl pause 5")})
	if err := d.Pause(ctx, guest(t, "win7")); err != nil {
		t.Fatal(err)
	}
	d, _ = newDriver(t, "", running(t), step{argv: cmd("xl unpause 12")})
	if err := d.Resume(ctx, guest(t, "xp-sp3")); err != nil {
		t.Fatal(err)
	}
	// xl pause and unpause exit 0 whatever libxl says: the state is
	// checked before.
	d, _ = newDriver(t, "", running(t))
	is(t, d.Pause(ctx, guest(t, "xp-sp3")), storage.ErrPrecondition)
	d, _ = newDriver(t, "", running(t))
	is(t, d.Resume(ctx, guest(t, "win7")), storage.ErrPrecondition)
	d, _ = newDriver(t, "", running(t))
	is(t, d.Pause(ctx, guest(t, "old-crashed")), storage.ErrPrecondition)
}

func TestStatusMapsXenStateLetters(t *testing.T) {
	for name, want := range map[string]struct {
		state boot.State
		id    string
	}{
		"win7":        {boot.Running, "5"},  // -b----
		"web01":       {boot.Running, "14"}, // r-----
		"xp-sp3":      {boot.Paused, "12"},  // --p---
		"old-crashed": {boot.Crashed, "9"},  // ---sc-
		"going-away":  {boot.Stopping, "16"},
	} {
		t.Run(name, func(t *testing.T) {
			d, _ := newDriver(t, "", running(t), step{argv: cmd("xl list -l " + want.id), out: "[\n]\n"})
			st, err := d.Status(context.Background(), guest(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if st.State != want.state || st.Domain != want.id || st.Accel != "xen" {
				t.Errorf("status %+v, want %s domain %s", st, want.state, want.id)
			}
			if want.state == boot.Crashed && (st.LastStop == nil || st.LastStop.Reason != boot.ReasonCrash || !strings.Contains(st.LastStop.Detail, "strata guest kill old-crashed")) {
				t.Errorf("a crashed domain's last stop: %+v", st.LastStop)
			}
		})
	}
}

func TestStatusOfAGuestNeverStartedIsStoppedWithoutRecord(t *testing.T) {
	d, _ := newDriver(t, "", step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")})
	st, err := d.Status(context.Background(), guest(t, "win7"))
	if err != nil || st.State != boot.Stopped || st.LastStop != nil || st.Domain != "" {
		t.Errorf("%+v %v", st, err)
	}
}

func TestStatusOfAGoneGuestRecordsWhyFromXLsMonitorLog(t *testing.T) {
	for _, c := range []struct {
		log    string // "" for none
		reason string
		says   string
	}{
		{"xl-monitor-poweroff.log", boot.ReasonPoweroff, "powered off (xl's action: destroy)"},
		{"xl-monitor-reboot-destroy.log", boot.ReasonReboot, "rebooted (xl's action: destroy)"},
		{"xl-monitor-crash-destroy.log", boot.ReasonCrash, "crashed"},
		{"xl-monitor-destroyed.log", boot.ReasonDied, "destroyed outside strata"},
		// Restarted as domain 6, then gone with nothing logged for it.
		{"xl-monitor-reboot-restart.log", boot.ReasonDied, "recorded no reason"},
		{"", boot.ReasonDied, "recorded no reason"},
	} {
		t.Run(c.log, func(t *testing.T) {
			logDir := t.TempDir()
			when := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
			if c.log != "" {
				p := filepath.Join(logDir, "xl-win7.log")
				if err := os.WriteFile(p, []byte(sample(t, c.log)), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, when, when); err != nil {
					t.Fatal(err)
				}
			}
			g := guest(t, "win7")
			started(t, g)
			d, _ := newDriver(t, logDir, stoppedNow(t))
			st, err := d.Status(context.Background(), g)
			if err != nil {
				t.Fatal(err)
			}
			lastStop(t, g, st, c.reason)
			if !strings.Contains(st.LastStop.Detail, c.says) {
				t.Errorf("detail %q, want it to say %q", st.LastStop.Detail, c.says)
			}
			if c.log != "" && !st.LastStop.At.Equal(when) {
				t.Errorf("at %v, want the log's last write %v", st.LastStop.At, when)
			}
			rec, err := g.Run.ReadStopped()
			if err != nil || rec == nil || rec.Reason != c.reason {
				t.Errorf("stopped.json %+v %v", rec, err)
			}
		})
	}
}

func TestStatusFollowsARestartedDomain(t *testing.T) {
	g := guest(t, "win7")
	started(t, g)
	if err := g.Run.WriteState(boot.RunState{Driver: boot.XL, Domain: "3", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d, _ := newDriver(t, "", running(t), step{argv: cmd("xl list -l 5"), out: sample(t, "list-l-hvm.json")})
	st, err := d.Status(context.Background(), g)
	if err != nil || st.State != boot.Running || st.Domain != "5" {
		t.Fatalf("%+v %v", st, err)
	}
	if rs, _ := g.Run.ReadState(); rs == nil || rs.Domain != "5" {
		t.Errorf("state.json %+v, want domain 5", rs)
	}
}

func TestRunningListsEveryDomainButDom0(t *testing.T) {
	d, _ := newDriver(t, "", step{argv: cmd("xl list -l"), out: sample(t, "list-l-two.json")})
	rs, err := d.Running(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "xp-sp3" || rs[0].Domain != "12" || !slices.Equal(rs[0].Disks, []string{"/var/lib/strata/pools/default/vol-3e71.raw"}) ||
		rs[1].Name != "web01" || !slices.Equal(rs[1].Disks, []string{"/dev/vg0/web01"}) {
		t.Errorf("%+v", rs)
	}
	d, _ = newDriver(t, "", step{argv: cmd("xl list -l"), out: sample(t, "list-l-dom0.json")})
	if rs, err := d.Running(context.Background()); err != nil || len(rs) != 0 {
		t.Errorf("dom0 only: %+v %v", rs, err)
	}
}

func TestErrorClassification(t *testing.T) {
	for _, c := range []struct {
		sample string
		kind   error // nil: none (internal)
	}{
		{"err-invalid-domain-identifier.txt", storage.ErrNotFound},
		{"err-list-domid-does-not-exist.txt", storage.ErrNotFound},
		{"err-domid-no-such-name.txt", storage.ErrNotFound},
		{"err-destroy-gone.txt", storage.ErrNotFound},
		{"err-no-hypervisor-4.17.txt", storage.ErrPrecondition},
		{"err-no-hypervisor-4.4.txt", storage.ErrPrecondition},
		{"err-no-xenstored-4.17.txt", storage.ErrPrecondition},
		{"err-create-name-exists.txt", storage.ErrExists},
		{"err-create-devmodel-failed.txt", nil},
		{"err-create-parse.txt", nil},
		{"err-shutdown-no-pv-no-fallback.txt", nil},
		{"err-cd-insert-no-file.txt", nil},
	} {
		stderr := sample(t, c.sample)
		err := xl.Classify(&run.Error{Argv: cmd("xl x"), ExitCode: 1, Stderr: stderr}, "doing x")
		kinds := []error{storage.ErrNotFound, storage.ErrPrecondition, storage.ErrExists, storage.ErrInvalid, storage.ErrNotSupported}
		for _, k := range kinds {
			if errors.Is(err, k) != (k == c.kind) {
				t.Errorf("%s: %v: kind %v is %v", c.sample, err, k, errors.Is(err, k))
			}
		}
		if !strings.HasPrefix(err.Error(), "doing x: ") {
			t.Errorf("%s: %v does not say what was done", c.sample, err)
		}
	}
	if xl.Classify(nil, "x") != nil {
		t.Error("Classify(nil) is not nil")
	}
}

func TestAvailableIsXLInfo(t *testing.T) {
	d, _ := newDriver(t, "", step{argv: cmd("xl info"), out: sample(t, "info-4.17.txt")})
	if err := d.Available(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Asked once per driver.
	if err := d.Available(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sample string
		says   string
	}{
		{"err-no-hypervisor-4.17.txt", "not running under the Xen hypervisor"},
		{"err-no-hypervisor-4.4.txt", "not running under the Xen hypervisor"},
		{"err-no-xenstored-4.17.txt", "xenstored"},
	} {
		d, _ := newDriver(t, "", step{argv: cmd("xl info"), code: 1, stderr: sample(t, c.sample)})
		err := d.Available(context.Background())
		is(t, err, storage.ErrPrecondition)
		if !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v", c.sample, err)
		}
	}
	d, _ = newDriver(t, "", step{argv: cmd("xl info"), block: true})
	t0 := time.Now()
	err := d.Available(context.Background())
	is(t, err, storage.ErrPrecondition)
	if !strings.Contains(err.Error(), "did not answer") || time.Since(t0) > 5*time.Second {
		t.Errorf("%v after %s", err, time.Since(t0))
	}
}

func TestAvailableWithoutXLInstalled(t *testing.T) {
	// The real runner, with a PATH where no xl can be.
	t.Setenv("PATH", t.TempDir())
	d := xl.New(xl.Config{})
	err := d.Available(context.Background())
	is(t, err, storage.ErrPrecondition)
	if !strings.Contains(err.Error(), "xl is not installed") {
		t.Errorf("%v", err)
	}
}

func pv(g *boot.Guest) *boot.Guest { g.Def.Features.PVDrivers = hvm.Bool(true); return g }

func TestAttachingDisksAndNICsNeedsPVDrivers(t *testing.T) {
	ctx := context.Background()
	disk := hvm.Disk{Device: "/dev/vg0/extra", Vdev: "xvdb"}
	nic := hvm.NIC{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0"}
	want := "Xen attaches disks and NICs to an HVM guest only as PV devices, which need PV drivers in the guest; install them, then `strata guest set win7 features.pv_drivers=true`"
	// Without PV drivers: refused before any xl command.
	d, _ := newDriver(t, "")
	g := guest(t, "win7")
	for _, err := range []error{
		d.Supports(g.Def, boot.AttachDisk), d.Supports(g.Def, boot.AttachNIC),
		d.AttachDisk(ctx, g, disk), d.DetachDisk(ctx, g, "xvdb"),
		d.AttachNIC(ctx, g, nic), d.DetachNIC(ctx, g, nic.MAC),
	} {
		is(t, err, storage.ErrNotSupported)
		if err.Error() != want {
			t.Errorf("%q\nwant %q", err, want)
		}
	}
	g.Def.Features.PVDrivers = hvm.Bool(false)
	is(t, d.Supports(g.Def, boot.AttachDisk), storage.ErrNotSupported)
	// With them: the exact commands.
	g = pv(guest(t, "win7"))
	if d.Supports(g.Def, boot.AttachDisk) != nil || d.Supports(g.Def, boot.AttachNIC) != nil {
		t.Fatal("refused with pv_drivers set")
	}
	d, _ = newDriver(t, "",
		running(t), step{argv: []string{"xl", "block-attach", "5", "vdev=xvdb,backendtype=phy,target=/dev/vg0/extra"}},
		running(t), step{argv: cmd("xl block-detach 5 xvdb")},
		running(t), step{argv: cmd("xl network-attach 5 mac=00:16:3e:00:00:01 bridge=xenbr0")},
		running(t), step{argv: cmd("xl network-detach 5 00:16:3e:00:00:01")},
	)
	for _, err := range []error{
		d.AttachDisk(ctx, g, disk), d.DetachDisk(ctx, g, "xvdb"),
		d.AttachNIC(ctx, g, nic), d.DetachNIC(ctx, g, nic.MAC),
	} {
		if err != nil {
			t.Error(err)
		}
	}
	// Nothing xl would read as an option.
	is(t, d.DetachDisk(ctx, g, "-f"), storage.ErrInvalid)
	is(t, d.DetachNIC(ctx, g, ""), storage.ErrInvalid)
}

func TestChangingCDMedia(t *testing.T) {
	ctx := context.Background()
	g := guest(t, "win7")
	d, _ := newDriver(t, "",
		running(t), step{argv: cmd("xl cd-insert 5 hdc /srv/iso/sp1.iso")},
		running(t), step{argv: cmd("xl cd-eject 5 hdc")},
		running(t), step{argv: cmd("xl cd-insert 5 hdc /var/lib/strata/media/missing.iso"), code: 1, stderr: sample(t, "err-cd-insert-no-file.txt")},
	)
	if err := d.InsertCD(ctx, g, "hdc", "/srv/iso/sp1.iso"); err != nil {
		t.Fatal(err)
	}
	if err := d.EjectCD(ctx, g, "hdc"); err != nil {
		t.Fatal(err)
	}
	if err := d.InsertCD(ctx, g, "hdc", "/var/lib/strata/media/missing.iso"); err == nil || !strings.Contains(err.Error(), "Cannot stat file") {
		t.Errorf("missing image: %v", err)
	}
	// Refused before any command.
	is(t, d.InsertCD(ctx, g, "hda", "/srv/iso/sp1.iso"), storage.ErrInvalid)
	is(t, d.InsertCD(ctx, g, "hdd", "/srv/iso/sp1.iso"), storage.ErrNotFound)
	is(t, d.InsertCD(ctx, g, "hdc", "sp1.iso"), storage.ErrInvalid)
	g.Def.Disks = g.Def.Disks[:1]
	is(t, d.Supports(g.Def, boot.ChangeMedia), storage.ErrNotSupported)
	is(t, d.EjectCD(ctx, g, "hdc"), storage.ErrNotSupported)
}

func TestScreenshotAndLivePointsAreRefusedWithWhatToDo(t *testing.T) {
	d, _ := newDriver(t, "")
	g := guest(t, "win7")
	err := d.Screenshot(context.Background(), g, nil)
	is(t, err, storage.ErrNotSupported)
	if !strings.Contains(err.Error(), "strata guest vnc win7") {
		t.Errorf("%v", err)
	}
	err = d.Supports(g.Def, boot.LivePoints)
	is(t, err, storage.ErrNotSupported)
	if !strings.Contains(err.Error(), "strata guest stop win7") {
		t.Errorf("%v", err)
	}
	if d.Supports(g.Def, boot.Pause) != nil || d.Supports(g.Def, boot.ChangeMedia) != nil || d.Supports(g.Def, boot.Console) != nil {
		t.Error("pause, change-media or console refused")
	}
}

// openPTY makes a real pseudo-terminal pair, standing in for the pty Xen's
// QEMU gives a guest's serial port.
func openPTY(t *testing.T) (master *os.File, slave string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

func TestConsoleOpensTheSerialPortsPTY(t *testing.T) {
	master, tty := openPTY(t)
	g := guest(t, "win7")
	d, _ := newDriver(t, "", running(t), step{argv: cmd("xenstore-read /local/domain/5/serial/0/tty"), out: tty + "\n"})
	c, err := d.Console(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := master.WriteString("login: \n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "login:") {
		t.Errorf("read %q %v", buf[:n], err)
	}
}

func TestConsoleRefusesWhatIsNotAPTY(t *testing.T) {
	g := guest(t, "win7")
	d, _ := newDriver(t, "",
		running(t), step{argv: cmd("xenstore-read /local/domain/5/serial/0/tty"), out: "/etc/shadow\n"},
		running(t), step{argv: cmd("xenstore-read /local/domain/5/serial/0/tty"), code: 1, stderr: "xenstore-read: couldn't read path /local/domain/5/serial/0/tty\n"},
	)
	for range 2 {
		_, err := d.Console(context.Background(), g)
		is(t, err, storage.ErrPrecondition)
		if !strings.Contains(err.Error(), "xl console -t serial 5") {
			t.Errorf("%v", err)
		}
	}
	// A guest without a serial port on a pty has no console to find.
	g.Def.Serial = nil
	_, err := d.Console(context.Background(), g)
	is(t, err, storage.ErrNotSupported)
}

func TestStatusVNCAddress(t *testing.T) {
	// Minimal `xl list -l 5` answers varying the vnc block only.
	long := func(vnc string) string {
		return `[{"domid": 5, "config": {"c_info": {"type": "hvm", "name": "win7"}, "b_info": {"type.hvm": {"vnc": ` + vnc + `}}}}]`
	}
	for _, c := range []struct {
		vnc      string
		xenstore *step
		want     string
	}{
		{`{"enable": "True", "listen": "127.0.0.1", "display": 3, "findunused": "False"}`, nil, "127.0.0.1:5903"},
		{`{"enable": "True", "listen": "0.0.0.0:2", "findunused": "False"}`, nil, "0.0.0.0:5902"},
		{`{"enable": "True", "findunused": "False"}`, nil, "127.0.0.1:5900"},
		{`{"enable": "False"}`, nil, ""},
		{`{"enable": "True", "listen": "::1", "display": 1, "findunused": "False"}`, nil, "[::1]:5901"},
		{`{"enable": "True", "listen": "127.0.0.1", "findunused": "True"}`, &step{out: "5907\n"}, "127.0.0.1:5907"},
		// The port node is in the guest's console frontend, which the
		// guest can write: only a VNC port number is believed.
		{`{"enable": "True", "listen": "127.0.0.1", "findunused": "True"}`, &step{out: "evil.example.com\n"}, ""},
		{`{"enable": "True", "listen": "127.0.0.1", "findunused": "True"}`, &step{out: "22\n"}, ""},
		{`{"enable": "True", "listen": "127.0.0.1", "findunused": "True"}`, &step{code: 1, stderr: "xenstore-read: couldn't read path /local/domain/5/console/vnc-port\n"}, ""},
	} {
		steps := []step{running(t), {argv: cmd("xl list -l 5"), out: long(c.vnc)}}
		if c.xenstore != nil {
			x := *c.xenstore
			x.argv = cmd("xenstore-read /local/domain/5/console/vnc-port")
			steps = append(steps, x)
		}
		d, _ := newDriver(t, "", steps...)
		st, err := d.Status(context.Background(), guest(t, "win7"))
		if err != nil {
			t.Fatal(err)
		}
		if st.VNC != c.want {
			t.Errorf("vnc %s: %q, want %q", c.vnc, st.VNC, c.want)
		}
	}
}
