// Package boot runs guests: one Driver per toolstack behind one interface,
// so the commands that start, stop, watch and inspect a guest, and the
// in-use check every disk-writing operation makes, do not know which
// toolstack runs it.
//
// Vocabulary:
//
//   - Driver: a toolstack strata runs guests through: "qemu" (strata starts
//     QEMU itself), "libvirt" (a libvirtd on the host) or "xl" (Xen).
//   - Feature: something a driver may or may not do (pause, live attach of
//     disks, NICs and CD media, screenshots, a serial console, live restore
//     points). Features are data, as pool capabilities are: commands ask
//     Supports before they act and refuse with the driver's reason.
//   - Runtime directory: HOME/run/GUEST-ID, root-only, holding what a
//     running guest needs on the host (QMP sockets, the serial log, the
//     pidfile) and two records: state.json (which driver runs the guest,
//     since when, its pid and the pid's start time) and stopped.json (how
//     it last stopped).
//   - Running guest: a guest a driver reports as running or paused, strata's
//     or not; its disks are in use.
//
// Invariants: strata never signals a process it did not start (a pid is
// trusted only with the start time recorded next to it); a guest is run by
// at most one driver at a time (state.json names it); drivers take their
// disks resolved to host paths and never read the catalog.
package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/inuse"
)

// Driver names.
const (
	QEMU    = "qemu"
	Libvirt = "libvirt"
	XL      = "xl"
	// Auto picks a driver: xl where `xl info` succeeds, libvirt where a
	// libvirt connection answers, else qemu.
	Auto = "auto"
)

// Feature is something a driver may be able to do.
type Feature string

// Features.
const (
	Pause       Feature = "pause"        // pause and resume a running guest
	AttachDisk  Feature = "attach-disk"  // add or remove a disk of a running guest
	AttachNIC   Feature = "attach-nic"   // add or remove a NIC of a running guest
	ChangeMedia Feature = "change-media" // insert or eject a CD of a running guest
	Screenshot  Feature = "screenshot"   // the guest's screen as a PNG
	Console     Feature = "console"      // the guest's first serial port, interactive
	LivePoints  Feature = "live-points"  // restore points of a running guest
	MemoryState Feature = "memory-state" // save a running guest's RAM with a point, start a guest from it
)

// AllFeatures in the order status and README list them.
var AllFeatures = []Feature{Pause, AttachDisk, AttachNIC, ChangeMedia, Screenshot, Console, LivePoints, MemoryState}

// State is what a guest is doing.
type State string

// States.
const (
	Running  State = "running"
	Paused   State = "paused"   // paused by a command, or created paused (start --paused)
	Stopping State = "stopping" // asked to shut down, not yet gone
	Stopped  State = "stopped"
	Crashed  State = "crashed" // stopped by a guest crash the lifecycle preserved
)

// Live reports whether a guest in state s has its disks open.
func (s State) Live() bool { return s == Running || s == Paused || s == Stopping || s == Crashed }

// Stop reasons, as stopped.json records them.
const (
	ReasonPoweroff = "poweroff" // the guest powered itself off
	ReasonReboot   = "reboot"   // the guest rebooted and on_reboot is destroy
	ReasonCrash    = "crash"    // the guest crashed (panic) and on_crash is destroy
	ReasonShutdown = "shutdown" // strata stop: the guest shut down when asked
	ReasonQuit     = "quit"     // strata stop: the guest did not shut down in time and was ended
	ReasonKilled   = "killed"   // strata kill, or stop --force
	ReasonDied     = "died"     // the toolstack's process ended with no reason on record
)

// StopRecord says how a guest last stopped.
type StopRecord struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	// ExitStatus is the emulator's exit status where the driver knows it.
	ExitStatus *int   `json:"exit_status,omitempty"`
	Detail     string `json:"detail,omitempty"`
	// SerialTail is the last lines the guest wrote to its first serial
	// port, when the driver keeps a serial log.
	SerialTail []string `json:"serial_tail,omitempty"`
}

// Status is what `strata guest status` shows.
type Status struct {
	Guest  string `json:"guest"`
	State  State  `json:"state"`
	Driver string `json:"driver,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// Domain is the toolstack's name or id for the guest (xl domid,
	// libvirt domain name) where it has one.
	Domain string `json:"domain,omitempty"`
	// Accel is how the guest's CPU runs: kvm, tcg or xen.
	Accel string `json:"accel,omitempty"`
	// VNC is the console's address (host:port) for a viewer.
	VNC     string    `json:"vnc,omitempty"`
	Started time.Time `json:"started,omitzero"`
	// UptimeSeconds is the time since Started, when running.
	UptimeSeconds float64     `json:"uptime_s,omitempty"`
	LastStop      *StopRecord `json:"last_stop,omitempty"`
	// Disks are the host paths of the disks the running guest has open.
	Disks []string `json:"disks,omitempty"`
	// Features are what the driver running the guest can do with it now.
	Features []Feature `json:"features,omitempty"`
	// Hold says why a live restore point keeps the guest paused or its
	// filesystems frozen (PauseHold), empty when none does.
	Hold string `json:"hold,omitempty"`
}

// HoldNote says what the pause hold h does to a guest in state s, ""
// when nothing.
func HoldNote(h *PauseHold, s State) string {
	if h == nil || !h.Paused && !h.Frozen || h.Paused && s != Paused && !h.Frozen {
		return ""
	}
	what := "paused"
	switch {
	case h.Frozen && h.Paused && s == Paused:
		what = "paused, its filesystems frozen,"
	case h.Frozen:
		what = "left with its filesystems frozen"
	}
	if h.Stale() {
		return what + " by an interrupted restore point (run strata doctor --repair)"
	}
	return fmt.Sprintf("%s for a restore point strata (pid %d) is taking", what, h.PID)
}

// Guest is what a driver runs: a definition whose disks are resolved to
// host paths, its catalog ID and its runtime directory.
type Guest struct {
	ID  string
	Def *hvm.Guest
	Run *RunDir
}

// StartOptions choose how a guest starts.
type StartOptions struct {
	// Paused leaves the guest paused before its first instruction.
	Paused bool
	// Network is how the qemu driver attaches NICs: bridge (default: the
	// NIC's bridge), user (QEMU's user-mode network) or none.
	Network string
	// FromState, if set, is a memory point's state file (RAM and device
	// state): the guest continues from it instead of booting. Drivers
	// that cannot (Supports MemoryState) refuse with ErrNotSupported.
	FromState string
}

// StopOptions choose how a guest stops.
type StopOptions struct {
	// Timeout is how long the guest has to shut down when asked (ACPI
	// power button) before it is ended.
	Timeout time.Duration
	// Force ends the guest at once, without asking it.
	Force bool
}

// RunningGuest is one guest a driver runs, strata's or not.
type RunningGuest struct {
	Name   string // the toolstack's name for the guest
	Domain string // the toolstack's id where it has one
	PID    int
	Disks  []string // host paths (files or block devices)
}

// Driver runs guests through one toolstack. Every method that acts on a
// guest returns an error of kind storage.ErrPrecondition when the guest is
// not in a state that allows it (start of a running guest, stop of a
// stopped one) and storage.ErrNotSupported for a feature the driver lacks.
type Driver interface {
	Name() string
	// Available returns nil when this host can run guests through the
	// driver, else why not (the toolstack is missing, does not answer).
	Available(ctx context.Context) error
	// Supports returns nil when the driver can do f for guest g, else an
	// error of kind ErrNotSupported naming the reason and, where there is
	// one, what to do.
	Supports(g *hvm.Guest, f Feature) error
	Start(ctx context.Context, g *Guest, o StartOptions) (Status, error)
	Stop(ctx context.Context, g *Guest, o StopOptions) (Status, error)
	Kill(ctx context.Context, g *Guest) error
	Pause(ctx context.Context, g *Guest) error
	Resume(ctx context.Context, g *Guest) error
	// Status reports the guest's state; a guest the driver does not run is
	// Stopped, with LastStop where one is recorded. A guest whose process
	// is gone without a record is reported stopped with ReasonDied, and its
	// runtime files are cleaned up.
	Status(ctx context.Context, g *Guest) (Status, error)
	// Screenshot writes the guest's screen as PNG to w.
	Screenshot(ctx context.Context, g *Guest, w io.Writer) error
	// Console connects to the guest's first serial port.
	Console(ctx context.Context, g *Guest) (io.ReadWriteCloser, error)
	// Running lists the guests the driver runs on this host, with their
	// disks; the in-use check asks it.
	Running(ctx context.Context) ([]RunningGuest, error)
}

// Reaper is a driver whose start, killed half-way (kill -9 after the
// toolstack started the guest, before state.json was written), can leave
// a guest behind that no state.json names: paused before its first
// instruction, holding its disks. ReapOrphans ends such guests of the
// state home (only processes the driver can prove it started for a
// runtime directory, never one that a running start still holds), so
// that status, start and every in-use check find the disks free.
type Reaper interface {
	ReapOrphans(ctx context.Context) error
}

// ReapOrphans asks each driver of s that can leave orphans to end them.
func ReapOrphans(ctx context.Context, s *Set) error {
	var errs []error
	for _, d := range s.Drivers() {
		if r, ok := d.(Reaper); ok {
			errs = append(errs, r.ReapOrphans(ctx))
		}
	}
	return errors.Join(errs...)
}

// MediaChanger is a driver that can change the medium in a running
// guest's CD-ROM drive (Supports ChangeMedia says for which guests).
type MediaChanger interface {
	// ChangeMedia puts the image at path into the CD-ROM drive vdev of
	// the running guest, or ejects it when path is "".
	ChangeMedia(ctx context.Context, g *Guest, vdev, path string) error
}

// Features lists what d can do for g.
func Features(d Driver, g *hvm.Guest) []Feature {
	var out []Feature
	for _, f := range AllFeatures {
		if d.Supports(g, f) == nil {
			out = append(out, f)
		}
	}
	return out
}

// Set is the drivers a command can use, by name.
type Set struct {
	drivers map[string]Driver
}

// NewSet returns a set of drivers.
func NewSet(ds ...Driver) *Set {
	s := &Set{drivers: map[string]Driver{}}
	for _, d := range ds {
		s.drivers[d.Name()] = d
	}
	return s
}

// Names lists the drivers in the set, in auto's order of preference.
func (s *Set) Names() []string {
	var out []string
	for _, n := range []string{XL, Libvirt, QEMU} {
		if _, ok := s.drivers[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Drivers lists the drivers in the set, in auto's order of preference.
func (s *Set) Drivers() []Driver {
	var out []Driver
	for _, n := range s.Names() {
		out = append(out, s.drivers[n])
	}
	return out
}

// Get returns the driver called name (not auto).
func (s *Set) Get(name string) (Driver, error) {
	d, ok := s.drivers[name]
	if !ok {
		return nil, storage.Errorf(storage.ErrInvalid, "driver %q is not one of %s (or auto)", name, strings.Join(s.Names(), ", "))
	}
	return d, nil
}

// Choose resolves a driver name: auto (or "") picks the first of xl,
// libvirt and qemu whose Available answers nil; a named driver must be
// available. The error says what each probe found.
func (s *Set) Choose(ctx context.Context, name string) (Driver, error) {
	if name != "" && name != Auto {
		d, err := s.Get(name)
		if err != nil {
			return nil, err
		}
		if err := d.Available(ctx); err != nil {
			return nil, storage.Errorf(storage.ErrPrecondition, "driver %s cannot run guests here: %w", name, err)
		}
		return d, nil
	}
	var why []string
	for _, d := range s.Drivers() {
		err := d.Available(ctx)
		if err == nil {
			return d, nil
		}
		why = append(why, d.Name()+": "+err.Error())
	}
	return nil, storage.Errorf(storage.ErrPrecondition, "no driver can run guests here (%s)", strings.Join(why, "; "))
}

// RunDir is a guest's runtime directory.
type RunDir struct {
	Dir string
}

// Runtime file names inside a RunDir.
const (
	StateFile   = "state.json"
	StoppedFile = "stopped.json"
	// SerialLog is the guest's first serial port as a log, written by
	// drivers that can (started empty at each start): start --wait-serial
	// and stop records read it.
	SerialLog = "serial.log"
)

// RunDirFor returns (creating, mode 0700) the runtime directory of the
// guest with catalog ID id under the state home.
func RunDirFor(home, id string) (*RunDir, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, storage.Errorf(storage.ErrInvalid, "guest id %q cannot name a runtime directory", id)
	}
	root := filepath.Join(home, "run")
	for _, d := range []string{root, filepath.Join(root, id)} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		st, err := os.Lstat(d)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, storage.Errorf(storage.ErrPrecondition, "%s is not a directory (a symlink?): remove it", d)
		}
	}
	return &RunDir{Dir: filepath.Join(root, id)}, nil
}

// Path returns the path of a file in the runtime directory.
func (r *RunDir) Path(name string) string { return filepath.Join(r.Dir, name) }

// RunState is what state.json records while a driver runs the guest.
type RunState struct {
	Driver string `json:"driver"`
	Domain string `json:"domain,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// PIDStart is the pid's start time in clock ticks since boot
	// (/proc/PID/stat field 22): a pid is the guest's process only while
	// both match.
	PIDStart uint64 `json:"pid_start,omitempty"`
	// BootID is the host's boot (/proc/sys/kernel/random/boot_id) the
	// pid belongs to: the state home outlives a reboot, and a pid and
	// start time (ticks since boot) may come again in another boot.
	BootID  string    `json:"boot_id,omitempty"`
	Accel   string    `json:"accel,omitempty"`
	VNC     string    `json:"vnc,omitempty"`
	Started time.Time `json:"started"`
	// Phase-specific data a driver keeps (sockets, the definition it
	// started), opaque to others.
	Extra map[string]string `json:"extra,omitempty"`
}

// Live reports whether the process s names runs: in this boot (a state
// without a boot id is from before strata recorded it), with its pid's
// start time.
func (s *RunState) Live() bool {
	return (s.BootID == "" || s.BootID == BootID()) && SameProcess(s.PID, s.PIDStart)
}

// ReadState returns state.json, or nil when the guest is not running.
func (r *RunDir) ReadState() (*RunState, error) {
	var s RunState
	ok, err := ReadJSON(r.Path(StateFile), &s)
	if !ok || err != nil {
		return nil, err
	}
	return &s, nil
}

// WriteState records that a driver runs the guest.
func (r *RunDir) WriteState(s RunState) error { return WriteRuntimeJSON(r.Path(StateFile), s) }

// ClearState removes state.json: the guest no longer runs.
func (r *RunDir) ClearState() error {
	err := os.Remove(r.Path(StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ReadStopped returns stopped.json, or nil when none is recorded.
func (r *RunDir) ReadStopped() (*StopRecord, error) {
	var s StopRecord
	ok, err := ReadJSON(r.Path(StoppedFile), &s)
	if !ok || err != nil {
		return nil, err
	}
	return &s, nil
}

// WriteStopped records how the guest stopped.
func (r *RunDir) WriteStopped(s StopRecord) error { return WriteJSON(r.Path(StoppedFile), s) }

// ClearStopped forgets the last stop (a new start begins).
func (r *RunDir) ClearStopped() error {
	err := os.Remove(r.Path(StoppedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ReadJSON reads a runtime record into v; false when there is none. A
// record that does not parse is an error saying what to do.
func ReadJSON(path string, v any) (bool, error) {
	b, err := ReadRuntimeFile(path, runtimeFileMax)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, storage.Errorf(storage.ErrPrecondition, "%s: %w: remove it if no guest runs", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, storage.Errorf(storage.ErrPrecondition, "%s is damaged (%v): remove it if no guest runs", path, err)
	}
	return true, nil
}

// runtimeFileMax bounds what ReadJSON reads: strata's runtime records are
// a few hundred bytes.
const runtimeFileMax = 1 << 20

// ReadRuntimeFile reads a file of a runtime directory that strata wrote
// itself: only a regular file of at most limit bytes, opened without
// following a symbolic link and without blocking (a FIFO put there would
// hang every command that looks), so that nothing put in its place is
// trusted or read whole.
func ReadRuntimeFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%d bytes, more than a runtime record (%d)", fi.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// WriteJSON replaces a record in a runtime directory atomically and
// durably (catalog.WriteFileAtomic): for what must outlive a power loss
// (how the guest last stopped, an install's phases, how it was started).
func WriteJSON(path string, v any) error { return writeJSON(path, v, catalog.WriteFileAtomic) }

// WriteRuntimeJSON replaces a record atomically but not durably
// (catalog.WriteRuntimeFile): for what describes processes that run now
// (state.json, the drivers' own files), stale after a power loss anyway.
func WriteRuntimeJSON(path string, v any) error { return writeJSON(path, v, catalog.WriteRuntimeFile) }

func writeJSON(path string, v any, write func(string, []byte) error) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return write(path, append(b, '\n'))
}

// Reaping is an in-use source that finds no holders: it ends the
// orphans of s's drivers (ReapOrphans) first, so that a source asked
// after it does not report a disk held by a guest that never ran. Put it
// before the host's sources.
func Reaping(s *Set) inuse.Source { return reaping{s} }

type reaping struct{ s *Set }

func (r reaping) Holders(ctx context.Context, imgs []inuse.Image) ([][]inuse.Holder, error) {
	return make([][]inuse.Holder, len(imgs)), ReapOrphans(ctx, r.s)
}

// InUseSources returns one in-use source per driver: a disk of a guest any
// of them runs is in use, named by driver and guest.
func InUseSources(s *Set) []inuse.Source {
	var out []inuse.Source
	for _, d := range s.Drivers() {
		d := d
		out = append(out, inuse.Domains{Toolstack: d.Name(), List: func(ctx context.Context) ([]inuse.Domain, error) {
			if d.Available(ctx) != nil {
				return nil, nil
			}
			rs, err := d.Running(ctx)
			if err != nil {
				return nil, err
			}
			doms := make([]inuse.Domain, len(rs))
			for i, r := range rs {
				doms[i] = inuse.Domain{Name: r.Name, Disks: r.Disks}
			}
			return doms, nil
		}})
	}
	return out
}
