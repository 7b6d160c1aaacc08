package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/store"
)

// The install workflow, as the reference gives it for Windows XP: phase 1
// (text-mode Setup) boots from the CD with on_reboot=destroy, so the guest
// stops where Setup reboots; the definition is then switched for phase 2
// (boot from the disk, on_reboot as the admin defined it, ACPI and APIC as
// defined) and the guest started again. Phase 2 ends when the guest powers
// off. install.json in the runtime directory records the phase and how
// each phase ended, so `install --status` can say it and a second
// `install` goes on where the first stopped.

// InstallFile is the install record's name in the runtime directory.
const InstallFile = "install.json"

// Install states.
const (
	InstallPhase1 = "phase-1" // phase 1 runs
	InstallPhase2 = "phase-2" // phase 2 runs
	InstallDone   = "done"
	InstallFailed = "failed"
)

// PhaseRecord is one phase of an install.
type PhaseRecord struct {
	Phase   int              `json:"phase"`
	Started time.Time        `json:"started"`
	Ended   time.Time        `json:"ended,omitzero"`
	Result  string           `json:"result,omitempty"` // ok, failed, timeout
	Stop    *boot.StopRecord `json:"stop,omitempty"`
}

// InstallRecord is install.json.
type InstallRecord struct {
	Guest  string        `json:"guest"`
	State  string        `json:"state"`
	Media  string        `json:"media"`
	XP     bool          `json:"xp,omitempty"`
	Driver string        `json:"driver,omitempty"`
	Phases []PhaseRecord `json:"phases"`
	// Defined keeps what phase 1 changed in the definition, to restore
	// for phase 2.
	Defined InstallSaved `json:"defined"`
	Point   int          `json:"point,omitempty"`  // the "installed" restore point
	Golden  string       `json:"golden,omitempty"` // the golden image made of it
	Error   string       `json:"error,omitempty"`
}

// InstallSaved is the part of a definition phase 1 changes.
type InstallSaved struct {
	Boot     string `json:"boot,omitempty"`
	OnReboot string `json:"on_reboot,omitempty"`
	ACPI     *bool  `json:"acpi,omitempty"`
	APIC     *bool  `json:"apic,omitempty"`
	// Install is the install record of an earlier Windows, which phase 1
	// removes (Setup is replacing that Windows) and a failed phase 1
	// gives back.
	Install *hvm.Install `json:"install,omitempty"`
}

// InstallOptions choose how Install runs.
type InstallOptions struct {
	Media  string // iso name, or a path to an ISO file
	XP     bool   // phase 1 with ACPI and APIC off (the HAL-safe settings)
	Driver string
	// PhaseTimeout bounds each phase; a phase that runs longer is ended
	// and the install marked failed (0: no bound).
	PhaseTimeout time.Duration
	// Unattend is an answer file (Windows Vista and later:
	// autounattend.xml), put on a CD of its own in a second CD-ROM drive,
	// where Setup looks for it.
	Unattend     string
	Snapshot     bool   // take a restore point named "installed" at the end
	Golden       string // freeze the installed guest as this golden image
	AllowExposed bool
	Network      string // qemu driver: bridge, user or none
	// Progress is told each step (may be nil).
	Progress func(msg string)
	// Poll is how often a running phase is looked at (default 200 ms).
	Poll time.Duration
}

func (r *InstallRecord) phase(n int) *PhaseRecord {
	for i := range r.Phases {
		if r.Phases[i].Phase == n {
			return &r.Phases[i]
		}
	}
	r.Phases = append(r.Phases, PhaseRecord{Phase: n})
	return &r.Phases[len(r.Phases)-1]
}

func readInstall(rd *boot.RunDir) (*InstallRecord, error) {
	var r InstallRecord
	ok, err := boot.ReadJSON(rd.Path(InstallFile), &r)
	if !ok || err != nil {
		return nil, err
	}
	return &r, nil
}

func writeInstall(rd *boot.RunDir, r *InstallRecord) error {
	return boot.WriteJSON(rd.Path(InstallFile), r)
}

// InstallStatus returns a guest's install record (nil: never installed
// through strata).
func (m *Manager) InstallStatus(ctx context.Context, name string) (*InstallRecord, error) {
	l, err := m.load(ctx, name)
	if err != nil {
		return nil, err
	}
	return readInstall(l.bg.Run)
}

// Install installs an operating system into a guest from install media
// in two phases; it returns when phase 2 has ended (the guest powered
// off), or with the phase it failed in. A second call goes on where an
// interrupted one stopped.
func (m *Manager) Install(ctx context.Context, name string, o InstallOptions) (*InstallRecord, error) {
	if o.Poll == 0 {
		o.Poll = 200 * time.Millisecond
	}
	l, err := m.load(ctx, name)
	if err != nil {
		return nil, err
	}
	// One install of a guest at a time, for its whole run: a second would
	// take the first's phase for its own, or find the guest not started
	// yet and mark the install failed under it.
	unlock, err := store.LockKey(m.St.Catalog.Home(), "install-"+l.bg.ID, fmt.Sprintf("the install of guest %q (strata guest install %s --status shows it)", name, name), 0)
	if err != nil {
		return nil, err
	}
	defer unlock()
	in := &installRun{m: m, l: l, name: name, o: o}
	rec, err := in.resume()
	if err != nil {
		return rec, err
	}
	if rec == nil {
		if rec, err = in.begin(ctx); err != nil {
			return rec, err
		}
	}
	// Each step does its part only when the record says it is due, so an
	// interrupted install goes on from where it stopped.
	for _, step := range []func(context.Context, *InstallRecord) error{
		in.endPhase1,
		in.endPhase2,
		in.takePoint,
		in.freezeGolden,
	} {
		if err := step(ctx, rec); err != nil {
			return rec, err
		}
	}
	log.Debug().Str("guest", name).Msg("install done")
	return rec, nil
}

// installRun is one Install call: the guest, its options and progress.
type installRun struct {
	m    *Manager
	l    loaded
	name string
	o    InstallOptions
}

func (in *installRun) say(format string, args ...any) {
	if in.o.Progress != nil {
		in.o.Progress(fmt.Sprintf(format, args...))
	}
}

// resume reads the install record: nil to begin a new install (none yet,
// or an ended one with --media given to install again).
func (in *installRun) resume() (*InstallRecord, error) {
	rec, err := readInstall(in.l.bg.Run)
	if err != nil {
		return nil, err
	}
	if rec != nil && (rec.State == InstallDone || rec.State == InstallFailed) {
		if in.o.Media == "" {
			return rec, storage.Errorf(storage.ErrPrecondition, "guest %q: its install has %s (see strata guest install %s --status); give --media to install again", in.name, map[string]string{InstallDone: "finished", InstallFailed: "failed"}[rec.State], in.name)
		}
		return nil, nil // a new install over the old one
	}
	return rec, nil
}

// begin checks a new install can start (media given and usable, the
// guest stopped), records it, switches the definition to phase 1's and
// boots the guest from the media. Before the record exists it returns
// no record.
func (in *installRun) begin(ctx context.Context) (*InstallRecord, error) {
	m, l, name, o := in.m, in.l, in.name, in.o
	if o.Media == "" {
		return nil, storage.Errorf(storage.ErrInvalid, "guest install needs --media ISO (an iso name or an ISO file)")
	}
	cur, err := m.status(ctx, l)
	if err != nil {
		return nil, err
	}
	if cur.State.Live() {
		return nil, storage.Errorf(storage.ErrPrecondition, "guest %q is %s: stop it before installing into it", name, cur.State)
	}
	if err := m.checkMedia(ctx, "--media", o.Media); err != nil {
		return nil, err
	}
	rec := &InstallRecord{Guest: name, State: InstallPhase1, Media: o.Media, XP: o.XP, Driver: o.Driver,
		Defined: InstallSaved{Boot: l.def.Boot, OnReboot: l.def.Lifecycle.OnReboot, ACPI: l.def.Features.ACPI, APIC: l.def.Features.APIC, Install: l.def.Install}}
	unattend := ""
	if o.Unattend != "" {
		if unattend, err = m.unattendMedium(ctx, l.def, o); err != nil {
			return nil, err
		}
	}
	// The record (with what phase 1 changes, to give back) first: a
	// crash between the two leaves a record whose guest never
	// started, which the next install ends as failed, putting the
	// definition back.
	p := rec.phase(1)
	p.Started = time.Now().UTC()
	if err := writeInstall(l.bg.Run, rec); err != nil {
		return nil, err
	}
	if _, _, err := m.Reg.Update(ctx, name, func(g *hvm.Guest) error { return phase1(g, o, unattend) }); err != nil {
		if rmErr := os.Remove(l.bg.Run.Path(InstallFile)); rmErr != nil {
			// Safe: a record whose guest never started is ended as
			// failed by the next install, as after a crash here.
			log.Warn().Err(rmErr).Str("guest", name).Msg("the install record of an install that did not begin stays; the next install ends it")
		}
		return nil, err
	}
	in.say("phase 1: booting %s from %s", name, o.Media)
	if _, err := m.Start(ctx, name, StartOptions{Driver: o.Driver, AllowExposed: o.AllowExposed, Network: o.Network}); err != nil {
		return rec, m.failInstall(ctx, l, rec, 1, "did not start", nil, err)
	}
	return rec, nil
}

// endPhase1 waits for phase 1 to end, then switches the definition to
// phase 2 and boots the guest from its disk. Phase 2 boots with the
// lifecycle and firmware tables the admin defined; Windows installs its
// HAL now, so the install record (lint's HAL and activation checks) is
// taken from this definition.
func (in *installRun) endPhase1(ctx context.Context, rec *InstallRecord) error {
	if rec.State != InstallPhase1 {
		return nil
	}
	m, l, name := in.m, in.l, in.name
	stop, err := m.waitPhase(ctx, l, rec, 1, in.o)
	if err != nil {
		return err
	}
	in.say("phase 1 ended: %s", stop.Reason)
	if _, _, err := m.Reg.Update(ctx, name, func(g *hvm.Guest) error {
		phase2(g, rec.Defined)
		g.Install = registry.InstallRecordOf(g, hvm.InstallByInstall)
		return nil
	}); err != nil {
		return err
	}
	rec.State = InstallPhase2
	p := rec.phase(2)
	p.Started = time.Now().UTC()
	if err := writeInstall(l.bg.Run, rec); err != nil {
		return err
	}
	in.say("phase 2: booting %s from its disk", name)
	if _, err := m.Start(ctx, name, StartOptions{Driver: rec.Driver, AllowExposed: in.o.AllowExposed, Network: in.o.Network}); err != nil {
		return m.failInstall(ctx, l, rec, 2, "did not start", nil, err)
	}
	return nil
}

// endPhase2 waits for phase 2 to end and records the install done.
func (in *installRun) endPhase2(ctx context.Context, rec *InstallRecord) error {
	if rec.State != InstallPhase2 {
		return nil
	}
	stop, err := in.m.waitPhase(ctx, in.l, rec, 2, in.o)
	if err != nil {
		return err
	}
	in.say("phase 2 ended: %s", stop.Reason)
	rec.State = InstallDone
	return writeInstall(in.l.bg.Run, rec)
}

// takePoint takes the "installed" restore point when asked to, once.
func (in *installRun) takePoint(ctx context.Context, rec *InstallRecord) error {
	if !in.o.Snapshot || rec.Point != 0 {
		return nil
	}
	p, err := in.m.Points.Create(ctx, snapshot.TargetRef{Name: in.name}, snapshot.CreateOptions{Name: "installed", Description: "after strata guest install from " + rec.Media})
	if err != nil {
		return fmt.Errorf("installed, but the restore point was not taken: %w", err)
	}
	rec.Point = p.ID
	in.say("restore point %d (installed) taken", p.ID)
	return writeInstall(in.l.bg.Run, rec)
}

// freezeGolden freezes the installed guest as a golden image when asked
// to, once.
func (in *installRun) freezeGolden(ctx context.Context, rec *InstallRecord) error {
	if in.o.Golden == "" || rec.Golden != "" {
		return nil
	}
	if _, err := in.m.Points.CreateGolden(ctx, snapshot.GoldenOptions{Name: in.o.Golden, Source: snapshot.TargetRef{Name: in.name}}); err != nil {
		return fmt.Errorf("installed, but the golden image was not made: %w", err)
	}
	rec.Golden = in.o.Golden
	in.say("golden image %s frozen", in.o.Golden)
	return writeInstall(in.l.bg.Run, rec)
}

// checkMedia refuses install media that is not an optical disc image
// before the definition changes: an iso name must be registered, a file
// must be a regular file holding an ISO9660 or UDF filesystem (what the
// file says, not its name).
func (m *Manager) checkMedia(ctx context.Context, what, ref string) error {
	if !strings.ContainsRune(ref, '/') {
		_, err := media.New(m.St.Catalog).Get(ctx, ref)
		return err
	}
	f, err := os.OpenFile(ref, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return storage.Errorf(storage.ErrNotFound, "%s %q does not exist: give an iso name or the path of an ISO file", what, ref)
		}
		return storage.Errorf(storage.ErrInvalid, "cannot read %s %q: %v", what, ref, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return storage.Errorf(storage.ErrInvalid, "%s %q is not a regular file: give an iso name or the path of an ISO file", what, ref)
	}
	// ErrNotSupported: a UDF disc without the ISO9660 bridge, which
	// QEMU boots all the same.
	if _, err := media.ReadHeader(f, ref); err != nil && !errors.Is(err, storage.ErrNotSupported) {
		return storage.Errorf(storage.ErrInvalid, "%s %q is not an ISO image (it holds no ISO9660 or UDF filesystem): give an iso name or the path of an ISO file", what, ref)
	}
	return nil
}

// phase1 switches a definition for phase 1: the media in the CD-ROM drive
// (one is added at hdc when there is none), boot from the CD, stop instead
// of rebooting, and with xp the HAL-safe firmware tables.
func phase1(g *hvm.Guest, o InstallOptions, unattend string) error {
	cd := -1
	for i, d := range g.Disks {
		if d.CDROM {
			cd = i
			break
		}
	}
	if cd < 0 {
		g.Disks = append(g.Disks, hvm.Disk{Vdev: "hdc", CDROM: true})
		cd = len(g.Disks) - 1
	}
	d := &g.Disks[cd]
	d.Volume, d.Media, d.Path, d.Device = "", "", "", ""
	if strings.ContainsRune(o.Media, '/') {
		d.Path = o.Media
	} else {
		d.Media = o.Media
	}
	if unattend != "" {
		attachUnattend(g, unattend)
	}
	g.Boot = "dc"
	g.Lifecycle.OnReboot = "destroy"
	// Setup replaces whatever Windows the record was taken of: until
	// phase 2 takes the new one, lint has no HAL to hold phase 1's
	// firmware tables against.
	g.Install = nil
	if o.XP {
		g.Features.ACPI, g.Features.APIC = hvm.Bool(false), hvm.Bool(false)
	}
	return nil
}

// phase2 switches a definition for phase 2: boot from the disk, and the
// lifecycle and firmware tables as defined (the media stays in: XP's
// GUI-mode Setup copies files from it).
func phase2(g *hvm.Guest, s InstallSaved) {
	g.Boot = "c"
	g.Lifecycle.OnReboot = s.OnReboot
	if g.Lifecycle.OnReboot == "destroy" {
		g.Lifecycle.OnReboot = "restart"
	}
	g.Features.ACPI, g.Features.APIC = s.ACPI, s.APIC
}

// waitPhase waits for the running phase to end; a phase ends well when the
// guest powers off or reboots by itself.
func (m *Manager) waitPhase(ctx context.Context, l loaded, rec *InstallRecord, n int, o InstallOptions) (*boot.StopRecord, error) {
	p := rec.phase(n)
	var deadline time.Time
	if o.PhaseTimeout > 0 {
		deadline = p.Started.Add(o.PhaseTimeout)
	}
	for {
		st, err := m.status(ctx, l)
		if err != nil {
			return nil, err
		}
		if !st.State.Live() {
			stop := st.LastStop
			if stop == nil {
				stop = &boot.StopRecord{At: time.Now().UTC(), Reason: boot.ReasonDied}
			}
			switch stop.Reason {
			case boot.ReasonPoweroff, boot.ReasonReboot, boot.ReasonShutdown:
				p.Ended, p.Result, p.Stop = time.Now().UTC(), "ok", stop
				return stop, writeInstall(l.bg.Run, rec)
			}
			return nil, m.failInstall(ctx, l, rec, n, "ended by "+stop.Reason, stop, nil)
		}
		if st.State == boot.Crashed {
			return nil, m.failInstall(ctx, l, rec, n, "the guest crashed", st.LastStop, nil)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			kst, err := m.Kill(ctx, rec.Guest)
			if err != nil {
				return nil, m.failInstall(ctx, l, rec, n, fmt.Sprintf("timed out after %s, and the guest could not be ended", o.PhaseTimeout), kst.LastStop, err)
			}
			return nil, m.failInstall(ctx, l, rec, n, fmt.Sprintf("timed out after %s (the guest was ended)", o.PhaseTimeout), kst.LastStop, nil)
		}
		select {
		case <-ctx.Done():
			return nil, storage.Errorf(storage.ErrPrecondition, "stopped waiting for phase %d of %q's install (it goes on; strata guest install %s picks it up, --status shows it): %w", n, rec.Guest, rec.Guest, ctx.Err())
		case <-time.After(o.Poll):
		}
	}
}

// failInstall records that phase n failed (why, with the stop that ended
// it or the error that caused it) and, for phase 1, gives the guest its
// own definition back. A failure to record or give back is added to the
// install's failure, which keeps its kind.
func (m *Manager) failInstall(ctx context.Context, l loaded, rec *InstallRecord, n int, why string, stop *boot.StopRecord, cause error) error {
	p := rec.phase(n)
	p.Ended, p.Result, p.Stop = time.Now().UTC(), "failed", stop
	rec.State = InstallFailed
	rec.Error = fmt.Sprintf("phase %d %s", n, why)
	if cause != nil {
		rec.Error += ": " + cause.Error()
	}
	failure := installFailure(rec, n, why, stop, cause)
	if err := writeInstall(l.bg.Run, rec); err != nil {
		return fmt.Errorf("%w; and the failure was not recorded: %w", failure, err)
	}
	if n == 1 {
		// Phase 1's boot order, on_reboot and firmware tables are not the
		// admin's: the guest gets its own back (the CD stays in), and a
		// next install records those, not phase 1's.
		if _, _, err := m.Reg.Update(ctx, rec.Guest, func(g *hvm.Guest) error {
			g.Boot, g.Lifecycle.OnReboot = rec.Defined.Boot, rec.Defined.OnReboot
			g.Features.ACPI, g.Features.APIC = rec.Defined.ACPI, rec.Defined.APIC
			if g.Install == nil {
				g.Install = rec.Defined.Install
			}
			return nil
		}); err != nil {
			return fmt.Errorf("%w; and its definition was not given back (boot %q, on_reboot %q, acpi and apic as before): %w", failure, rec.Defined.Boot, rec.Defined.OnReboot, err)
		}
	}
	return failure
}

// installFailure is the error an install failed in phase n with: the
// cause's kind when there is one, else a failed precondition.
func installFailure(rec *InstallRecord, n int, why string, stop *boot.StopRecord, cause error) error {
	msg := fmt.Sprintf("guest %q: install failed: phase %d %s", rec.Guest, n, why) // the cause is wrapped below
	if stop != nil && len(stop.SerialTail) > 0 {
		msg += "; last serial lines: " + strings.Join(stop.SerialTail, " | ")
	}
	if cause != nil {
		return fmt.Errorf("%s: %w", msg, cause)
	}
	return storage.Errorf(storage.ErrPrecondition, "%s (strata guest install %s --status)", msg, rec.Guest)
}

// unattendPrefix names the CDs that carry a guest's answer file:
// GUEST-unattend-N.
func unattendPrefix(guest string) string { return guest + "-unattend-" }

// unattendMedium builds a CD holding the answer file as autounattend.xml
// (Joliet, so Windows reads the long name) under the first free name
// GUEST-unattend-N, and returns that name. XP-era Setup reads its answer
// file (WINNT.SIF) only from a floppy, which HVM guests on Xen have not:
// that is refused with what to do instead.
func (m *Manager) unattendMedium(ctx context.Context, g *hvm.Guest, o InstallOptions) (string, error) {
	if o.XP || g.OS == "winxp" || g.OS == "win2000" || g.OS == "win2003" {
		return "", storage.Errorf(storage.ErrNotSupported, "guest %q: Windows XP/2000/2003 Setup reads its answer file (WINNT.SIF) only from a floppy, which Xen HVM guests do not have: put WINNT.SIF into the I386 folder of a copy of the CD and build that with strata iso build --joliet instead of --unattend", g.Name)
	}
	b, err := os.ReadFile(o.Unattend)
	if err != nil {
		return "", storage.Errorf(storage.ErrInvalid, "cannot read --unattend %q: %w", o.Unattend, err)
	}
	dir, err := os.MkdirTemp("", "strata-unattend-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "autounattend.xml"), b, 0o600); err != nil {
		return "", err
	}
	mg := media.New(m.St.Catalog)
	for n := 1; n < 1000; n++ {
		name := fmt.Sprintf("%s%d", unattendPrefix(g.Name), n)
		if _, err := mg.Get(ctx, name); err == nil {
			continue
		}
		if _, err := mg.Build(ctx, media.BuildOptions{Dir: dir, Name: name, Label: "UNATTEND", RockRidge: true, Joliet: true}, nil); err != nil {
			return "", fmt.Errorf("answer file CD: %w", err)
		}
		return name, nil
	}
	return "", storage.Errorf(storage.ErrExists, "guest %q: too many answer file CDs (%s*): delete old ones with strata iso delete", g.Name, unattendPrefix(g.Name))
}

// attachUnattend puts the answer file CD into the drive an earlier one
// was in, else into a new CD-ROM drive at the first free IDE or SCSI slot.
func attachUnattend(g *hvm.Guest, name string) {
	used := map[string]bool{}
	for i, d := range g.Disks {
		used[d.Vdev] = true
		if d.CDROM && strings.HasPrefix(d.Media, unattendPrefix(g.Name)) {
			g.Disks[i].Media = name
			return
		}
	}
	for _, v := range []string{"hdd", "hdb", "sdb", "sdc", "sdd"} {
		if !used[v] {
			g.Disks = append(g.Disks, hvm.Disk{Vdev: v, CDROM: true, Media: name})
			return
		}
	}
}
