// Package qemu is the boot driver "qemu": strata runs qemu-system-x86_64
// itself, detached, and talks to it over QMP (hvm/qmp).
//
// A guest's QEMU starts paused (-S -pidfile) and detached: in a session
// of its own, so that neither a terminal's signals nor strata's exit
// reach it, with its output in qemu.log. (Not with QEMU's -daemonize: that
// makes strata wait for a second fork, and throws away what QEMU prints
// after start-up.) Everything it needs on the host is in the guest's
// runtime directory (HOME/run/GUEST-ID, mode 0700):
//
//	qemu.pid      QEMU's pid (state.json keeps it with its start time)
//	qemu.log      what QEMU printed, this run
//	qmp.sock      QMP for strata's commands
//	events.sock   QMP for the watcher
//	serial.sock   the first serial port, for `console`
//	agent.sock    the QEMU guest agent's channel (features.guest_agent)
//	serial.log    everything the first serial port wrote (kept after a stop)
//	started.json  what was started: name, disk paths, lifecycle (no secrets)
//	intent.json   what strata asked for (stop, quit, kill) while it acts
//	watcher.json  the watcher's pid and start time
//	hold.json     a live point's pause hold while it pauses or freezes the
//	              guest (boot.PauseHold): the watcher resumes and thaws a
//	              guest whose holder died
//	watch.log     the watcher's own messages
//
// The lifecycle actions are on the command line (-action, QEMU's own
// set-action when the watcher changes them later); the driver sets the VNC
// password over QMP (never on the command line), waits until the watcher
// holds its socket, and resumes the guest (cont).
//
// Why a guest stopped: strata's commands exit once the guest runs, so a
// small watcher process (Watch, run as `strata guest __watch RUNDIR`,
// detached in a session of its own) holds the second QMP socket, sees
// QEMU's SHUTDOWN and GUEST_PANICKED events and, when QEMU's socket
// closes and its process is gone, writes stopped.json and removes
// state.json. Stop and Kill write intent.json before they act; its reason
// (shutdown, quit, killed) wins over what the watcher saw. Whoever comes
// first records the stop, under the runtime directory's lock; status
// records "died" for a QEMU that ended with nobody to tell why.
//
// state.json says "starting" (Extra) until the start has let the guest
// run: a start killed before then leaves a QEMU that never ran the guest,
// which the next command ends as an orphan.
//
// Invariants: a pid is signalled only through a pidfd whose process has
// the start time state.json recorded; a running guest is one whose
// state.json names this driver and a live pid; consoles and monitors are
// unix sockets in the root-only runtime directory, VNC on loopback unless
// the definition says otherwise.
package qemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// Config sets up the driver.
type Config struct {
	// Home is strata's state home: runtime directories are HOME/run/ID.
	Home string
	// Binary is the QEMU system emulator (default qemu-system-x86_64).
	Binary string
	// Accel forces an accelerator ("kvm" or "tcg"); empty: KVM when the
	// CPU has vmx/svm, /dev/kvm opens and a probe start succeeds, else TCG.
	Accel string
	// Network is the NIC mode (hvm/qemu NetBridge, NetUser, NetNone).
	Network string
	// WatcherArgv returns the command that runs Watch for a runtime
	// directory (`strata guest __watch RUNDIR`). Nil: no watcher; stops
	// the guest makes itself are then recorded as "died".
	WatcherArgv func(runDir string) []string
	// SerialLogMax bounds the serial log (default DefaultSerialLogMax):
	// the watcher cuts a longer one to its last half, so that a guest
	// writing to its serial port without end cannot fill the state
	// home's disk.
	SerialLogMax int64
	// UnplugTimeout is how long a detach waits for the guest to let a
	// device go (default DefaultUnplugTimeout).
	UnplugTimeout time.Duration
}

// DefaultSerialLogMax is the serial log's bound when Config sets none.
const DefaultSerialLogMax = 8 << 20

// Driver is the qemu boot driver.
type Driver struct {
	cfg Config

	accelOnce sync.Once
	accel     string
}

var _ boot.Driver = (*Driver)(nil)

// New returns the qemu driver.
func New(cfg Config) *Driver { return &Driver{cfg: cfg} }

// Name implements boot.Driver.
func (d *Driver) Name() string { return boot.QEMU }

func (d *Driver) binary() string {
	if d.cfg.Binary != "" {
		return d.cfg.Binary
	}
	return qemuargv.Binary
}

// Available implements boot.Driver: QEMU is installed.
func (d *Driver) Available(ctx context.Context) error {
	_, err := run.Look(d.binary())
	return err
}

// ReleasesHolds implements boot.HoldReleaser: the watcher resumes and
// thaws a guest whose pause hold went stale (watch.go), so live points
// need no guard of their own.
func (d *Driver) ReleasesHolds() bool { return d.cfg.WatcherArgv != nil }

// Supports implements boot.Driver.
func (d *Driver) Supports(g *hvm.Guest, f boot.Feature) error {
	switch f {
	case boot.Pause:
		return nil
	case boot.Screenshot:
		if g.Display.VGA == "none" {
			return storage.Errorf(storage.ErrNotSupported, "guest %q has no video card (vga: none): nothing to take a screenshot of", g.Name)
		}
		return nil
	case boot.Console:
		if len(g.Serial) > 0 {
			return storage.Errorf(storage.ErrNotSupported, "guest %q names its serial ports itself (serial: %s): strata's console and serial log need the first port; remove serial from the definition", g.Name, strings.Join(g.Serial, ", "))
		}
		return nil
	case boot.ChangeMedia:
		for _, d := range g.Disks {
			if d.CDROM && strings.HasPrefix(d.Vdev, "hd") {
				return nil
			}
		}
		return storage.Errorf(storage.ErrNotSupported, "guest %q has no IDE CD-ROM drive (hdX): the qemu driver changes media only there; add one (e.g. an empty drive at hdc) and start the guest again", g.Name)
	case boot.AttachDisk, boot.AttachNIC:
		return supportsHotplug(g, f)
	case boot.LivePoints, boot.MemoryState:
		return nil
	}
	return storage.Errorf(storage.ErrNotSupported, "unknown feature %q", f)
}

func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// runtimeArgs are what the driver adds to the definition's argv.
func runtimeArgs(rd *boot.RunDir, ownSerial bool, acts actions) []string {
	a := []string{"-S", "-pidfile", rd.Path(pidFile),
		// Last on the line: it wins over the rendered -no-reboot and
		// -no-shutdown, which say the same.
		"-action", "shutdown=" + acts.Shutdown + ",reboot=" + acts.Reboot + ",panic=" + acts.Panic,
		"-qmp", "unix:" + esc(rd.Path(qmpSock)) + ",server=on,wait=off",
		"-qmp", "unix:" + esc(rd.Path(eventsSock)) + ",server=on,wait=off",
		// No monitor on a virtual console: a VNC viewer could reach it.
		"-monitor", "none",
	}
	if ownSerial {
		// The log holds this run only (Start removes the last one; its
		// tail is in stopped.json). QEMU appends (O_APPEND), so that the
		// watcher can cut the log short under it.
		a = append(a, "-chardev", "socket,id=serial0,path="+esc(rd.Path(serialSock))+",server=on,wait=off,logfile="+esc(rd.Path(SerialLog))+",logappend=on",
			"-serial", "chardev:serial0")
	}
	return a
}

// actions are QEMU's set-action arguments.
type actions struct {
	Shutdown string `json:"shutdown"`
	Reboot   string `json:"reboot"`
	Panic    string `json:"panic"`
}

func isRestart(a string) bool {
	switch a {
	case "restart", "rename-restart", "coredump-restart", "soft-reset":
		return true
	}
	return false
}

// lifecycleActions maps the definition's on_poweroff/on_reboot/on_crash
// onto QEMU's actions. QEMU can exit or pause on power-off, reset or shut
// down on reboot, and shut down or pause on a panic; what it cannot do
// itself (restart after a power-off or a panic, keep a rebooting guest)
// it pauses for, and the watcher finishes.
func lifecycleActions(l hvm.Lifecycle) actions {
	a := actions{Shutdown: "poweroff", Reboot: "reset", Panic: "shutdown"}
	if l.OnPoweroff == "preserve" || isRestart(l.OnPoweroff) || l.OnReboot == "preserve" {
		a.Shutdown = "pause"
	}
	switch l.OnReboot {
	case "destroy", "coredump-destroy", "preserve":
		a.Reboot = "shutdown"
	}
	if l.OnCrash == "preserve" || isRestart(l.OnCrash) {
		a.Panic = "pause"
	}
	return a
}

// sockPathMax is the length a unix socket path may have (sun_path).
const sockPathMax = 107

func diskPaths(g *hvm.Guest) []string {
	var out []string
	for _, k := range g.Disks {
		if kind, src := k.Source(); kind == hvm.SourcePath || kind == hvm.SourceDevice {
			out = append(out, src)
		}
	}
	return out
}

// liveState returns the guest's state.json while its QEMU runs; a state
// whose QEMU is gone is settled first (the stop recorded) and nil
// returned. Call with the lock held when locked is true.
func (d *Driver) liveState(ctx context.Context, g *boot.Guest, locked bool) (*boot.RunState, error) {
	st, err := g.Run.ReadState()
	if err != nil || st == nil {
		return nil, err
	}
	if st.Driver != boot.QEMU {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q runs under the %s driver, not qemu: use --driver %s", g.Def.Name, st.Driver, st.Driver)
	}
	if st.Live() {
		if st.Extra[startingKey] == "" {
			return st, nil
		}
		// A start that is not done: under way (it holds the lock), or
		// killed, leaving a QEMU that never ran the guest.
		if !locked {
			unlock, ok, err := tryLockRun(g.Run)
			if err != nil || !ok {
				return st, err
			}
			defer unlock()
		}
		return nil, reapStarting(g.Run, st)
	}
	return nil, settle(g.Run, st, locked)
}

// crashAt is the test-only fault injection hook snapshot has too
// (STRATA_CRASH_AT): strata kills itself (SIGKILL) at the named step.
var crashAt = os.Getenv("STRATA_CRASH_AT")

func crashpoint(step string) {
	if crashAt != "" && crashAt == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// startingKey marks a state.json (RunState.Extra) whose start has not
// let the guest run yet.
const startingKey = "starting"

// reapStarting ends the QEMU of a start that was killed before it let
// the guest run (its state.json still says starting; the caller holds the
// runtime directory's lock, so no start is under way) and forgets it: the
// guest never ran, so no stop is recorded.
func reapStarting(rd *boot.RunDir, st *boot.RunState) error {
	if cur, err := rd.ReadState(); err != nil || cur == nil || cur.PID != st.PID || cur.PIDStart != st.PIDStart || cur.Extra[startingKey] == "" {
		return err // settled meanwhile
	}
	if _, err := signal(st, syscall.SIGKILL); err != nil {
		return err
	}
	if !boot.WaitGone(context.Background(), st, 5*time.Second) {
		return fmt.Errorf("QEMU (pid %d) of an interrupted start did not end after SIGKILL", st.PID)
	}
	removeTransient(rd)
	return rd.ClearState()
}

// lockLive takes the runtime directory's lock and returns the live
// state (nil: not running). A QEMU found gone is settled before the lock
// is taken, so that its watcher (which needs the lock) can record why.
func (d *Driver) lockLive(ctx context.Context, g *boot.Guest) (*boot.RunState, func(), error) {
	if _, err := d.liveState(ctx, g, false); err != nil {
		return nil, nil, err
	}
	unlock, err := lockRun(g.Run)
	if err != nil {
		return nil, nil, err
	}
	st, err := d.liveState(ctx, g, true)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// settle records the stop of a QEMU that is gone. A live watcher is given
// a moment to record what it saw (poweroff, reboot, crash) first;
// otherwise the reason is strata's intent, or "died".
func settle(rd *boot.RunDir, st *boot.RunState, locked bool) error {
	var w watcher
	// Unreadable watcher or state files only skip the wait for the
	// watcher's own record: the stop is recorded as "died" below.
	if ok, _ := boot.ReadJSON(rd.Path(watcherFile), &w); ok && !locked {
		deadline := time.Now().Add(3 * time.Second)
		for boot.SameProcess(w.PID, w.Start) && time.Now().Before(deadline) {
			if cur, _ := rd.ReadState(); cur == nil || cur.PID != st.PID {
				return nil
			}
			time.Sleep(boot.PollInterval)
		}
	}
	rec := boot.StopRecord{Reason: boot.ReasonDied, Detail: "QEMU ended with no shutdown on record (killed from outside, or it crashed)"}
	if locked {
		return finishLocked(rd, st, rec)
	}
	return finish(rd, st, rec)
}

// dialQMP connects to strata's QMP socket of the guest. QEMU serves one
// client there at a time: one that holds it (another strata command on
// the guest, or a program an admin connected) keeps strata waiting for
// QEMU's greeting, which is an error of kind ErrBusy saying so.
func dialQMP(ctx context.Context, rd *boot.RunDir) (*qmp.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, rd.Path(qmpSock))
	// A full queue of waiting clients refuses the connection (EAGAIN).
	if errors.Is(err, qmp.ErrNoGreeting) || errors.Is(err, syscall.EAGAIN) {
		name := filepath.Base(rd.Dir)
		if sd, _ := readStarted(rd); sd != nil {
			name = sd.Name
		}
		return nil, storage.Errorf(storage.ErrBusy, "another client holds the QMP monitor of guest %q (%s): QEMU serves one client at a time and did not answer strata within 5 s; try again once the other strata command on the guest is done, or end the program connected to that socket (if none is, QEMU hangs: strata guest kill %s)", name, rd.Path(qmpSock), name)
	}
	return c, err
}

// Start implements boot.Driver. A QEMU left by a start killed a moment
// ago may hold the guest's pidfile before it has written its pid, so that
// it could not be found and ended first: the new QEMU then cannot lock
// the pidfile, the failed start ends the orphan (its pid is there by
// then), and the start is tried once more.
func (d *Driver) Start(ctx context.Context, g *boot.Guest, o boot.StartOptions) (boot.Status, error) {
	st, err := d.start(ctx, g, o)
	if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "Cannot lock pid file") {
		return d.start(ctx, g, o)
	}
	return st, err
}

func (d *Driver) start(ctx context.Context, g *boot.Guest, o boot.StartOptions) (boot.Status, error) {
	rd := g.Run
	st, unlock, err := d.lockLive(ctx, g)
	if err != nil {
		return boot.Status{}, err
	}
	defer unlock()
	if st != nil {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "guest %q is already running (qemu pid %d): stop it first", g.Def.Name, st.PID)
	}
	p, err := d.planStart(ctx, g, o)
	if err != nil {
		return boot.Status{}, err
	}
	var stateFile *os.File
	if o.FromState != "" {
		// Opened here, passed over QMP once QEMU listens: QEMU never
		// opens a path of ours for it.
		if stateFile, err = os.OpenFile(o.FromState, os.O_RDONLY|syscall.O_NOFOLLOW, 0); err != nil {
			return boot.Status{}, storage.Errorf(storage.ErrNotFound, "guest %q: its saved memory state: %w", g.Def.Name, err)
		}
		defer stateFile.Close()
	}
	if err := prepareRunDir(rd, g, p); err != nil {
		return boot.Status{}, err
	}
	c, st, w, err := d.launchWatched(ctx, g, p)
	if err != nil {
		return boot.Status{}, err
	}
	defer c.Close()
	if err := bringUp(ctx, g, o, c, st, stateFile, w.ready); err != nil {
		w.stop()
		d.abort(rd, st)
		return boot.Status{}, fmt.Errorf("guest %q: %w", g.Def.Name, err)
	}
	state := boot.Running
	if o.Paused {
		state = boot.Paused
	}
	return d.status(g, st, state), nil
}

// startPlan is what a start will run, settled before anything is
// touched: QEMU's argv, the accelerator and NIC mode it uses, the
// lifecycle actions and serial log it is given, and the run's id.
type startPlan struct {
	argv           []string
	accel, network string
	own            bool // the first serial port is strata's log and socket
	acts           actions
	logMax         int64
	run            string
}

// planStart checks what a start needs (QEMU, the disks, short enough
// socket paths) and builds its argv.
func (d *Driver) planStart(ctx context.Context, g *boot.Guest, o boot.StartOptions) (*startPlan, error) {
	rd := g.Run
	bin, err := run.Look(d.binary())
	if err != nil {
		return nil, err
	}
	for _, k := range g.Def.Disks {
		if kind, src := k.Source(); kind == hvm.SourcePath || kind == hvm.SourceDevice {
			if strings.Contains(src, ":") && !strings.HasPrefix(src, "/") {
				continue // a backend URL (rbd:...)
			}
			if _, err := os.Stat(src); err != nil {
				return nil, storage.Errorf(storage.ErrNotFound, "guest %q: disk %s: %s does not exist: restore it or remove the disk from the definition", g.Def.Name, k.Vdev, src)
			}
		}
	}
	for _, s := range []string{qmpSock, eventsSock, serialSock, agentSock} {
		if p := rd.Path(s); len(p) > sockPathMax {
			return nil, storage.Errorf(storage.ErrPrecondition, "socket path %s is %d bytes, more than a unix socket takes (%d): use a shorter state home", p, len(p), sockPathMax)
		}
	}
	p := &startPlan{accel: d.Accel(ctx), network: o.Network, own: len(g.Def.Serial) == 0, acts: lifecycleActions(g.Def.Lifecycle), logMax: d.cfg.SerialLogMax}
	if p.network == "" {
		p.network = d.cfg.Network
	}
	if p.logMax <= 0 {
		p.logMax = DefaultSerialLogMax
	}
	if p.argv, err = qemuargv.Argv(g.Def, qemuargv.Options{Binary: bin, Accel: p.accel, Network: p.network}); err != nil {
		return nil, err
	}
	p.argv = append(p.argv, runtimeArgs(rd, p.own, p.acts)...)
	if o.FromState != "" {
		p.argv = append(p.argv, "-incoming", "defer")
	}
	if g.Def.HasGuestAgent() {
		p.argv = append(p.argv, agentArgs(rd)...)
	}
	var runID [8]byte
	if _, err := rand.Read(runID[:]); err != nil {
		return nil, err
	}
	p.run = hex.EncodeToString(runID[:])
	return p, nil
}

// prepareRunDir readies the runtime directory for a start: a QEMU a
// killed start left is ended, what a run leaves is removed, and
// started.json says what this run is.
func prepareRunDir(rd *boot.RunDir, g *boot.Guest, p *startPlan) error {
	// A QEMU a killed start left is ended before its pidfile goes.
	if err := reapLocked(rd); err != nil {
		return err
	}
	removeTransient(rd)
	// QEMU opens the serial log by name, following a symlink and
	// truncating what it points at: it gets a path with nothing there.
	if err := os.Remove(rd.Path(SerialLog)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l := g.Def.Lifecycle
	return boot.WriteRuntimeJSON(rd.Path(startedFile), started{Run: p.run, Name: g.Def.Name, Disks: diskPaths(g.Def), OwnSerial: p.own, SerialLogMax: p.logMax, Actions: p.acts, Network: p.network,
		OnPoweroff: l.OnPoweroff, OnReboot: l.OnReboot, OnCrash: l.OnCrash})
}

// watcherHandle is a started watcher: ready waits until it holds the
// events socket, stop kills it.
type watcherHandle struct {
	ready func() error
	stop  func()
}

// launchWatched starts the watcher, then QEMU (paused, in prelaunch),
// and reads QEMU's pid. The watcher starts first and waits for the
// guest's state.json: its own start-up overlaps QEMU's, not the guest's
// boot. On error nothing of the start is left running.
func (d *Driver) launchWatched(ctx context.Context, g *boot.Guest, p *startPlan) (*qmp.Client, *boot.RunState, watcherHandle, error) {
	rd := g.Run
	var w watcherHandle
	var err error
	if w.ready, w.stop, err = d.startWatcher(ctx, rd, p.run); err != nil {
		removeTransient(rd)
		return nil, nil, w, err
	}
	c, err := d.launch(ctx, rd, p.argv)
	if err != nil {
		w.stop()
		// QEMU may be up all the same (the start interrupted at
		// that moment): end it while its pidfile names it.
		reapAfterFailedStart(rd)
		removeTransient(rd)
		if ctx.Err() != nil {
			return nil, nil, w, fmt.Errorf("guest %q: QEMU did not start: %w", g.Def.Name, err)
		}
		// QEMU refused what this host lacks (a bridge, a device, a file):
		// a failed precondition, in QEMU's own words.
		return nil, nil, w, storage.Errorf(storage.ErrPrecondition, "guest %q: QEMU did not start: %w", g.Def.Name, err)
	}
	pid, start, err := readPID(rd)
	if err != nil {
		c.Close()
		w.stop()
		reapAfterFailedStart(rd)
		removeTransient(rd)
		return nil, nil, w, fmt.Errorf("guest %q: QEMU started but %w", g.Def.Name, err)
	}
	st := &boot.RunState{Driver: boot.QEMU, PID: pid, PIDStart: start, BootID: boot.BootID(), Accel: p.accel, Started: time.Now().UTC()}
	return c, st, w, nil
}

// reapAfterFailedStart ends the QEMU a failed start may have left. A
// failure is only logged: the start fails anyway, and the QEMU its
// pidfile names is reaped by the next command on the guest (reapLocked).
func reapAfterFailedStart(rd *boot.RunDir) {
	if err := reapLocked(rd); err != nil {
		log.Warn().Err(err).Str("run_dir", rd.Dir).Msg("the QEMU of a failed start was not ended; the next command on the guest ends it")
	}
}

// bringUp takes a launched QEMU to a running (or paused, as asked)
// guest: the memory state loaded, the VNC password set, state.json
// written while starting, the watcher ready, cont, state.json final.
func bringUp(ctx context.Context, g *boot.Guest, o boot.StartOptions, c *qmp.Client, st *boot.RunState, stateFile *os.File, watcherReady func() error) error {
	rd := g.Run
	// Until state.json is written, a start killed here leaves a paused
	// QEMU that the pidfile names: the next command reaps it.
	crashpoint("start:launched")
	if stateFile != nil {
		// As long as reading the RAM takes, within reason.
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Minute)
		err := boot.LoadState(lctx, c, stateFile)
		lcancel()
		if err != nil {
			return err
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if pw := g.Def.Display.VNCPasswd; !pw.IsZero() && g.Def.Display.VNCEnabled() {
		if _, err := c.Execute(qctx, "set_password", map[string]string{"protocol": "vnc", "password": pw.Value()}); err != nil {
			return fmt.Errorf("set the VNC password: %w", err)
		}
	}
	if g.Def.Display.VNCEnabled() {
		var err error
		if st.VNC, err = queryVNC(qctx, c); err != nil {
			return err
		}
	}
	// Recorded as starting until the guest was let run (or left paused
	// as asked): a start killed before then leaves a QEMU that never
	// ran the guest (waiting in prelaunch, or in inmigrate or paused
	// with a memory state half loaded), which the next command ends as
	// an orphan (liveState) instead of reporting a paused guest.
	st.Extra = map[string]string{startingKey: "1"}
	if err := rd.WriteState(*st); err != nil {
		return err
	}
	// The watcher must hold its socket before the guest runs, so that it
	// sees every event: checked before cont.
	if err := watcherReady(); err != nil {
		return err
	}
	crashpoint("start:recorded")
	if !o.Paused {
		if _, err := c.Execute(qctx, "cont", nil); err != nil {
			return err
		}
	}
	st.Extra = nil
	if err := rd.WriteState(*st); err != nil {
		return err
	}
	return rd.ClearStopped()
}

func readPID(rd *boot.RunDir) (int, uint64, error) {
	b, err := os.ReadFile(rd.Path(pidFile))
	if err != nil {
		return 0, 0, fmt.Errorf("wrote no pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("its pidfile holds %q", b)
	}
	start, err := boot.ProcStart(pid)
	if err != nil {
		return 0, 0, fmt.Errorf("its pid %d is gone: %w", pid, err)
	}
	return pid, start, nil
}

// abort ends a QEMU whose start failed half-way and forgets it; no stop
// is recorded (the guest never ran).
func (d *Driver) abort(rd *boot.RunDir, st *boot.RunState) {
	signal(st, syscall.SIGKILL)
	boot.WaitGone(context.Background(), st, 5*time.Second)
	removeTransient(rd)
	rd.ClearState()
}

func queryVNC(ctx context.Context, c *qmp.Client) (string, error) {
	r, err := c.Execute(ctx, "query-vnc", nil)
	if err != nil {
		return "", err
	}
	var v struct {
		Enabled bool   `json:"enabled"`
		Host    string `json:"host"`
		Service string `json:"service"`
	}
	if err := json.Unmarshal(r, &v); err != nil {
		return "", err
	}
	if !v.Enabled {
		return "", nil
	}
	return net.JoinHostPort(v.Host, v.Service), nil
}

// startWatcher runs the watcher detached (a session of its own, output
// to watch.log); the function it returns waits until the watcher holds
// the events socket, which it says by writing a byte to a pipe it gets as
// fd 3 (WatchReadyEnv).
func (d *Driver) startWatcher(ctx context.Context, rd *boot.RunDir, run string) (ready func() error, stop func(), err error) {
	if d.cfg.WatcherArgv == nil {
		return func() error { return nil }, func() {}, nil
	}
	argv := d.cfg.WatcherArgv(rd.Dir)
	log, err := os.OpenFile(rd.Path(watchLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer log.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer pw.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = append(os.Environ(), WatchRunEnv+"="+run, WatchReadyEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pr.Close()
		return nil, nil, fmt.Errorf("start the watcher: %w", err)
	}
	go func() { _ = cmd.Wait() }()           // reaps it in a long-lived caller (tests)
	stop = func() { _ = cmd.Process.Kill() } // this process's own child: not yet reaped
	return func() error {
		defer pr.Close()
		_ = pr.SetReadDeadline(time.Now().Add(10 * time.Second))
		done := context.AfterFunc(ctx, func() { _ = pr.SetReadDeadline(time.Unix(1, 0)) })
		defer done()
		var b [1]byte
		n, err := pr.Read(b[:])
		switch {
		case n == 1:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("the watcher (%s) was not ready after 10 s", strings.Join(argv, " "))
		}
		// The pipe closed: the watcher ended without holding the socket.
		b2, _ := os.ReadFile(rd.Path(watchLog))
		return fmt.Errorf("the watcher (%s) ended before it was ready: %s", strings.Join(argv, " "), lastLine(b2))
	}, stop, nil
}

func lastLine(b []byte) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return l[len(l)-1]
}

// status fills a Status for a running guest.
func (d *Driver) status(g *boot.Guest, st *boot.RunState, state boot.State) boot.Status {
	s := boot.Status{Guest: g.Def.Name, State: state, Driver: boot.QEMU, PID: st.PID, Accel: st.Accel, VNC: st.VNC, Started: st.Started}
	if !st.Started.IsZero() {
		s.UptimeSeconds = time.Since(st.Started).Seconds()
	}
	if sd, _ := readStarted(g.Run); sd != nil {
		s.Disks = sd.Disks
	}
	return s
}

func (d *Driver) stopped(g *boot.Guest) (boot.Status, error) {
	rec, err := g.Run.ReadStopped()
	if err != nil {
		return boot.Status{}, err
	}
	return boot.Status{Guest: g.Def.Name, State: boot.Stopped, LastStop: rec}, nil
}

// Status implements boot.Driver: state.json, the pid's start time and one
// query-status.
func (d *Driver) Status(ctx context.Context, g *boot.Guest) (boot.Status, error) {
	st, err := d.liveState(ctx, g, false)
	if err != nil {
		return boot.Status{}, err
	}
	if st == nil {
		return d.stopped(g)
	}
	if readIntent(g.Run).acting() {
		return d.status(g, st, boot.Stopping), nil
	}
	c, err := dialQMP(ctx, g.Run)
	if errors.Is(err, storage.ErrBusy) {
		// A QEMU being killed may refuse connections the same way for
		// a moment.
		if boot.WaitGone(context.Background(), st, time.Second) {
			return d.Status(ctx, g)
		}
		return boot.Status{}, err
	}
	if err != nil {
		// QEMU closes its sockets as it exits: give it a moment.
		if boot.WaitGone(context.Background(), st, 3*time.Second) {
			return d.Status(ctx, g)
		}
		return boot.Status{}, fmt.Errorf("guest %q: QEMU (pid %d) runs but does not answer: %w", g.Def.Name, st.PID, err)
	}
	defer c.Close()
	qs, err := c.QueryStatus(ctx)
	if err != nil {
		// QEMU closes its sockets as it exits: a closed connection, or a
		// write into one it just closed (EPIPE), is a QEMU on its way
		// out when its process ends.
		if ctx.Err() == nil && boot.WaitGone(context.Background(), st, 3*time.Second) {
			return d.Status(ctx, g)
		}
		return boot.Status{}, err
	}
	return d.status(g, st, runState(qs.Status)), nil
}

// runState maps QEMU's run state onto strata's.
func runState(s string) boot.State {
	switch s {
	case "running":
		return boot.Running
	case "guest-panicked":
		return boot.Crashed
	case "shutdown":
		// on_poweroff preserve: QEMU kept after the guest powered off.
		return boot.Stopping
	}
	return boot.Paused // paused, prelaunch, suspended, debug, io-error, ...
}

func (d *Driver) mustRun(ctx context.Context, g *boot.Guest) (*boot.RunState, error) {
	st, err := d.liveState(ctx, g, false)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q is not running", g.Def.Name)
	}
	return st, nil
}

// Stop implements boot.Driver: the ACPI power button (twice, a moment
// apart: Windows may ignore the first press), up to o.Timeout for the
// guest to power off, then quit over QMP, then SIGTERM, then SIGKILL.
// A paused guest, or one without ACPI, cannot see the button: it is
// quit at once. Force: quit at once (SIGKILL if QEMU does not answer).
func (d *Driver) Stop(ctx context.Context, g *boot.Guest, o boot.StopOptions) (boot.Status, error) {
	st, unlock, err := d.lockLive(ctx, g)
	if err != nil {
		return boot.Status{}, err
	}
	defer unlock()
	if st == nil {
		return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "guest %q is not running", g.Def.Name)
	}
	rd := g.Run
	if o.Timeout <= 0 {
		o.Timeout = DefaultStopTimeout
	}
	// The intent only names the stop's reason: one that cannot be
	// written (a full disk) does not keep the guest from stopping.
	reason := boot.ReasonKilled
	if o.Force {
		writeIntent(rd, reason)
		d.end(ctx, rd, st, 0)
	} else {
		reason = boot.ReasonShutdown
		writeIntent(rd, reason)
		if !d.powerdown(ctx, g, st, o.Timeout) {
			reason = boot.ReasonQuit
			writeIntent(rd, reason)
			d.end(ctx, rd, st, 5*time.Second)
		}
	}
	if !boot.WaitGone(context.Background(), st, 5*time.Second) {
		return boot.Status{}, fmt.Errorf("guest %q: QEMU (pid %d) did not end", g.Def.Name, st.PID)
	}
	if err := finishLocked(rd, st, boot.StopRecord{Reason: reason, Detail: intentDetail[reason]}); err != nil {
		return boot.Status{}, err
	}
	return d.stopped(g)
}

// DefaultStopTimeout is how long Stop gives a guest to power off when
// StopOptions.Timeout is not set.
const DefaultStopTimeout = time.Minute

// powerdown presses the power button and waits up to timeout for QEMU to
// end; false when it did not (or could not be asked).
func (d *Driver) powerdown(ctx context.Context, g *boot.Guest, st *boot.RunState, timeout time.Duration) bool {
	if !g.Def.EffectiveACPI() {
		return false
	}
	c, err := dialQMP(ctx, g.Run)
	if err != nil {
		return false
	}
	defer c.Close()
	qs, err := c.QueryStatus(ctx)
	if err != nil || qs.Status != "running" {
		return false
	}
	// Whatever the lifecycle says, a guest asked to stop ends: its
	// power-off (or a reboot on the way) is not turned into a restart.
	if _, err := c.Execute(ctx, "set-action", actions{Shutdown: "poweroff", Reboot: "shutdown", Panic: "shutdown"}); err != nil {
		return false
	}
	if _, err := c.Execute(ctx, "system_powerdown", nil); err != nil {
		return false
	}
	again := min(timeout/4, 2*time.Second)
	if boot.WaitGone(context.Background(), st, again) {
		return true
	}
	c.Execute(ctx, "system_powerdown", nil)
	return boot.WaitGone(context.Background(), st, timeout-again)
}

// end quits QEMU over QMP and, when it is still there after grace, sends
// SIGTERM, then SIGKILL. grace 0: SIGKILL right after a quit that QEMU
// does not obey at once.
func (d *Driver) end(ctx context.Context, rd *boot.RunDir, st *boot.RunState, grace time.Duration) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if c, err := qmp.Dial(qctx, rd.Path(qmpSock)); err == nil {
		c.Execute(qctx, "quit", nil)
		c.Close()
	}
	cancel()
	if boot.WaitGone(context.Background(), st, max(grace, time.Second)) {
		return
	}
	if grace > 0 {
		signal(st, syscall.SIGTERM)
		if boot.WaitGone(context.Background(), st, grace) {
			return
		}
	}
	signal(st, syscall.SIGKILL)
}

// Kill implements boot.Driver: SIGKILL at once.
func (d *Driver) Kill(ctx context.Context, g *boot.Guest) error {
	st, unlock, err := d.lockLive(ctx, g)
	if err != nil {
		return err
	}
	defer unlock()
	if st == nil {
		return storage.Errorf(storage.ErrPrecondition, "guest %q is not running", g.Def.Name)
	}
	writeIntent(g.Run, boot.ReasonKilled) // a full disk must not keep a guest from being killed
	if _, err := signal(st, syscall.SIGKILL); err != nil {
		return err
	}
	if !boot.WaitGone(context.Background(), st, 5*time.Second) {
		return fmt.Errorf("guest %q: QEMU (pid %d) did not end after SIGKILL", g.Def.Name, st.PID)
	}
	return finishLocked(g.Run, st, boot.StopRecord{Reason: boot.ReasonKilled})
}

// Pause implements boot.Driver (QMP stop).
func (d *Driver) Pause(ctx context.Context, g *boot.Guest) error {
	return d.flip(ctx, g, "stop", "is not running", "running")
}

// Resume implements boot.Driver (QMP cont); it also starts a guest
// started paused.
func (d *Driver) Resume(ctx context.Context, g *boot.Guest) error {
	return d.flip(ctx, g, "cont", "is not paused", "paused", "prelaunch")
}

func (d *Driver) flip(ctx context.Context, g *boot.Guest, cmd, why string, from ...string) error {
	if _, err := d.mustRun(ctx, g); err != nil {
		return err
	}
	c, err := dialQMP(ctx, g.Run)
	if err != nil {
		return err
	}
	defer c.Close()
	qs, err := c.QueryStatus(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(from, qs.Status) {
		return storage.Errorf(storage.ErrPrecondition, "guest %q %s (%s)", g.Def.Name, why, qs.Status)
	}
	_, err = c.Execute(ctx, cmd, nil)
	return err
}

// Screenshot implements boot.Driver: QMP screendump as PNG (QEMU 7.1+
// built with libpng), else as PPM converted here.
func (d *Driver) Screenshot(ctx context.Context, g *boot.Guest, w io.Writer) error {
	if err := d.Supports(g.Def, boot.Screenshot); err != nil {
		return err
	}
	if _, err := d.mustRun(ctx, g); err != nil {
		return err
	}
	c, err := dialQMP(ctx, g.Run)
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := os.CreateTemp(g.Run.Dir, "screen-*")
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.Execute(qctx, "screendump", map[string]string{"filename": path, "format": "png"})
	var qe *qmp.Error
	if errors.As(err, &qe) && qe.Class == "GenericError" {
		if _, err = c.Execute(qctx, "screendump", map[string]string{"filename": path}); err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := boot.WritePNG(b, w); err != nil {
			return fmt.Errorf("screendump: %w", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Console implements boot.Driver: the first serial port's socket (one
// client at a time; the log is written whether or not one is connected).
func (d *Driver) Console(ctx context.Context, g *boot.Guest) (io.ReadWriteCloser, error) {
	if err := d.Supports(g.Def, boot.Console); err != nil {
		return nil, err
	}
	if _, err := d.mustRun(ctx, g); err != nil {
		return nil, err
	}
	// QEMU serves one client on the serial socket: a second would be
	// accepted by the kernel and then hear nothing. One console at a
	// time, held by a lock that goes with the process holding it.
	lock, err := os.OpenFile(g.Run.Path(consoleLock), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, storage.Errorf(storage.ErrBusy, "guest %q: another console is attached to its serial port: detach it first (Ctrl-])", g.Def.Name)
		}
		return nil, err
	}
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "unix", g.Run.Path(serialSock))
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &lockedConn{Conn: conn, lock: lock}, nil
}

// lockedConn is a console connection that holds the console lock until
// it is closed.
type lockedConn struct {
	net.Conn
	lock *os.File
}

func (c *lockedConn) Close() error {
	err := c.Conn.Close()
	c.lock.Close()
	return err
}

// ReapOrphans implements boot.Reaper: a QEMU whose `guest start` was
// killed after QEMU started and before state.json was written is
// paused before the guest's first instruction (-S; cont comes after
// state.json) and holds the guest's disks with nobody to stop it. It is
// ended, and its runtime files removed, when its runtime directory has
// no state.json and nobody holds the directory's lock (a start under way
// holds it until state.json is written).
func (d *Driver) ReapOrphans(ctx context.Context) error {
	root := filepath.Join(d.cfg.Home, "run")
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		rd := &boot.RunDir{Dir: filepath.Join(root, e.Name())}
		if _, err := os.Lstat(rd.Path(pidFile)); err != nil {
			continue
		}
		if err := reap(rd); err != nil {
			return fmt.Errorf("end the QEMU a killed start left in %s: %w", rd.Dir, err)
		}
	}
	return nil
}

func reap(rd *boot.RunDir) error {
	unlock, ok, err := tryLockRun(rd)
	if err != nil || !ok {
		return err
	}
	defer unlock()
	st, err := rd.ReadState()
	if err != nil {
		return nil
	}
	if st != nil {
		if st.Live() && st.Extra[startingKey] != "" {
			return reapStarting(rd, st)
		}
		return nil // a run on record: status settles it
	}
	return reapLocked(rd)
}

// reapLocked ends rd's orphan QEMU, if any; the caller holds rd's lock
// and has found no state.json.
func reapLocked(rd *boot.RunDir) error {
	fd, st := orphanOf(rd)
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	if !boot.WaitGone(context.Background(), st, 5*time.Second) {
		return fmt.Errorf("QEMU (pid %d) did not end after SIGKILL", st.PID)
	}
	removeTransient(rd)
	return nil
}

// Running implements boot.Driver: the runtime directories whose
// state.json names this driver and a live pid.
func (d *Driver) Running(ctx context.Context) ([]boot.RunningGuest, error) {
	root := filepath.Join(d.cfg.Home, "run")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []boot.RunningGuest
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		rd := &boot.RunDir{Dir: filepath.Join(root, e.Name())}
		st, err := rd.ReadState()
		if err != nil || st == nil || st.Driver != boot.QEMU || !st.Live() {
			continue
		}
		rg := boot.RunningGuest{Name: e.Name(), Domain: e.Name(), PID: st.PID}
		if s, _ := readStarted(rd); s != nil {
			rg.Name, rg.Disks = s.Name, s.Disks
		}
		out = append(out, rg)
	}
	return out, nil
}

// launch starts QEMU detached (a session of its own, so that a terminal's
// signals and strata's exit leave it alone; its output in qemu.log) and
// returns a QMP connection once QEMU answers on it: QEMU's own
// -daemonize would make strata wait for a second fork, and its messages
// after start-up would be lost. When QEMU exits before it answers, the
// error is what it printed.
func (d *Driver) launch(ctx context.Context, rd *boot.RunDir, argv []string) (*qmp.Client, error) {
	out, err := os.OpenFile(rd.Path(qemuLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	// Giving up ends the whole session QEMU was started in: a wrapper
	// (a distribution's qemu-kvm script) may have left QEMU in it with
	// no pidfile yet. The session's id stays taken while any process is
	// in it, so this never reaches anyone else.
	endSession := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := qmp.Dial(dctx, rd.Path(qmpSock))
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-exited:
			endSession()
			b, _ := os.ReadFile(rd.Path(qemuLog))
			msg := strings.TrimSpace(string(b))
			if msg == "" {
				msg = cmd.ProcessState.String()
			}
			return nil, errors.New(msg)
		case <-ctx.Done():
			endSession()
			return nil, ctx.Err()
		case <-time.After(socketPoll):
		}
		if time.Now().After(deadline) {
			endSession()
			return nil, fmt.Errorf("QEMU did not answer on %s within 30 s", rd.Path(qmpSock))
		}
	}
}

// ChangeMedia implements boot.MediaChanger over QMP: blockdev-change-medium
// (read-only, raw) or eject, both forced: a guest that locked its tray
// (Windows does while it reads) cannot keep the admin from changing the
// disc. Only IDE drives (hdX), whose QEMU names follow from the vdev.
func (d *Driver) ChangeMedia(ctx context.Context, g *boot.Guest, vdev, path string) error {
	if !strings.HasPrefix(vdev, "hd") || len(vdev) != 3 || vdev[2] < 'a' || vdev[2] > 'd' {
		return storage.Errorf(storage.ErrNotSupported, "guest %q: drive %s: the qemu driver changes media only in IDE drives hda-hdd", g.Def.Name, vdev)
	}
	if _, err := d.mustRun(ctx, g); err != nil {
		return err
	}
	idx := int(vdev[2] - 'a')
	drive := fmt.Sprintf("ide%d-cd%d", idx/2, idx%2)
	c, err := dialQMP(ctx, g.Run)
	if err != nil {
		return err
	}
	defer c.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if path == "" {
		_, err = c.Execute(qctx, "eject", map[string]any{"device": drive, "force": true})
	} else {
		_, err = c.Execute(qctx, "blockdev-change-medium", map[string]any{"device": drive, "filename": path, "format": "raw", "read-only-mode": "read-only", "force": true})
	}
	if err != nil {
		return storage.Errorf(storage.ErrPrecondition, "guest %q: drive %s: %w", g.Def.Name, vdev, err)
	}
	return nil
}
