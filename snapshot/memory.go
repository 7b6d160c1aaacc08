package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
)

// Memory-state points: a live point of a guest that also holds its RAM
// and device state (consistency "memory"), saved by its driver during
// the same pause as the disks (qemu: hvm/boot LiveRequest.State; libvirt
// and xl save it themselves, boot.StateSaver: see takeSaved) into a file
// beside the first disk's image, .strata-points/VOLUMEID-UID.state (mode
// 0600). The file is named on the point before the guest is paused, so
// that undoing an interrupted point, delete and prune remove it with the
// disks' data. `rollback --memory` restores the disks as any rollback
// does, then starts the guest from the file (RollbackResume): it
// continues where it was, without a boot.

// MemoryState is where a point keeps its guest's memory.
type MemoryState struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
	// Driver is the boot driver that saved it (and can resume from it).
	Driver string `json:"driver"`
	// resumed: a point being taken by the driver's save (takeSaved) whose
	// guest ran again from it: its disks have moved on since, so an
	// interrupted point is undone, never finished (finishSaved).
	Resumed bool `json:"resumed,omitempty"`
}

// stateMargin is what a state file may need beyond the guest's RAM
// (device state, QEMU's framing), and what the filesystem keeps free.
const stateMargin = 64 << 20

// planMemory names the state file of a memory point p of t, refusing
// what cannot have one.
func planMemory(t Target, live *liveGuest, vols []storage.Volume, p *Point) error {
	switch {
	case t.Kind() != catalog.KindGuest:
		return storage.Errorf(storage.ErrInvalid, "%s is a volume: it has no memory to save; leave --memory out", t)
	case live == nil:
		return storage.Errorf(storage.ErrPrecondition, "guest %q is not running: it has nothing in memory to save; take the point without --memory (its disks as the guest left them)", t.Name)
	case live.memory != nil:
		return fmt.Errorf("guest %q: %w", t.Name, live.memory)
	case live.paused:
		return storage.Errorf(storage.ErrPrecondition, "guest %q is paused: a memory point resumes the guest once its memory is written (QEMU keeps its disks inactive until then), so resume it first (strata guest resume %s) or leave --memory out", t.Name, t.Name)
	case len(vols) == 0:
		return storage.Errorf(storage.ErrPrecondition, "guest %q has no disk volume to keep its memory beside", t.Name)
	}
	// Beside the first disk that is a file in a directory: an LV's
	// directory is /dev/VG (memory, gone at the next boot), an RBD image
	// has none.
	for _, v := range vols {
		if !v.Device && filepath.IsAbs(v.Path) && !strings.HasPrefix(v.Path, "/dev/") {
			p.Memory = &MemoryState{Path: filepath.Join(filepath.Dir(v.Path), pointsDir, v.ID+"-"+p.UID+".state"), Driver: live.driver}
			return nil
		}
	}
	return storage.Errorf(storage.ErrNotSupported, "guest %q has no disk in a directory pool to keep its memory beside (its disks are LVs or RBD images): add a small volume of a directory pool to its disks (strata volume create NAME --size 16M), or take the point without --memory", t.Name)
}

// openState creates p's state file, after checking that the guest's RAM
// (as its QEMU reports it) fits beside it with a margin.
func openState(l *liveGuest, p *Point) (*os.File, error) {
	dir := filepath.Dir(p.Memory.Path)
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ram := int64(l.ramMiB) << 20
	if raw, err := l.mon.Execute(context.Background(), "query-memory-size-summary", nil); err == nil {
		var s struct {
			Base int64 `json:"base-memory"`
		}
		if json.Unmarshal(raw, &s) == nil && s.Base > 0 {
			ram = s.Base
		}
	}
	free, err := storage.FreeIn(dir)
	if err != nil {
		return nil, err
	}
	if !skipSpaceCheck && ram+stateMargin > free {
		return nil, storage.Errorf(storage.ErrPrecondition, "not enough space for the memory of guest %q: its RAM is %s (plus %s of margin) and %q has %s free; free space there, or take the point without --memory",
			l.name, storage.FormatSize(ram), storage.FormatSize(stateMargin), dir, storage.FormatSize(free))
	}
	return os.OpenFile(p.Memory.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
}

// finishState makes p's state file durable and records its size.
func finishState(p *Point) error {
	if p.Memory == nil {
		return nil
	}
	f, err := os.Open(p.Memory.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	p.Memory.Bytes = st.Size()
	return image.SyncPath(filepath.Dir(p.Memory.Path))
}

// removeMemory deletes a point's state file (idempotent).
func removeMemory(p Point) error {
	if p.Memory == nil {
		return nil
	}
	if err := os.Remove(p.Memory.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove restore point %d's memory state: %w", p.ID, err)
	}
	return nil
}

// MemoryOf returns the memory state of a ready point of the guest called
// name, or an error saying what to do when it has none.
func (m *Manager) MemoryOf(name, ref string) (MemoryState, error) {
	t, err := m.target(TargetRef{Name: name})
	if err != nil {
		return MemoryState{}, err
	}
	p, err := m.point(t, ref)
	if err != nil {
		return MemoryState{}, err
	}
	return memoryOf(t, p)
}

func memoryOf(t Target, p Point) (MemoryState, error) {
	if p.Memory == nil {
		return MemoryState{}, storage.Errorf(storage.ErrPrecondition, "restore point %d of %s has no memory state (it was not taken with --memory while the guest ran): roll back without --memory (the guest then boots from its disks)", p.ID, t)
	}
	// Checked before the guest is stopped or a disk touched: a state
	// that cannot be loaded changes nothing.
	if err := boot.CheckState(p.Memory.Driver, p.Memory.Path, p.Memory.Bytes); err != nil {
		return MemoryState{}, storage.Errorf(storage.ErrPrecondition, "restore point %d of %s: %v; nothing was changed: roll back without --memory (the guest then boots from the point's disks)", p.ID, t, err)
	}
	return *p.Memory, nil
}

// RollbackResume rolls the guest called name back to a memory point and
// resumes it from the point's memory, with its locks held throughout (as
// RollbackRestart): stop (nil for a guest that does not run) stops it
// cleanly, the rollback runs, and start starts it from the state file.
// When the rollback fails and was undone in full, again (nil: nothing)
// starts the guest as it was. A crash at any step leaves the guest
// stopped with the rollback finished or undone.
func (m *Manager) RollbackResume(ctx context.Context, name, ref string, stop func(context.Context) error, start func(ctx context.Context, state MemoryState) error, again func(context.Context) error) (RollbackResult, error) {
	var state MemoryState
	return m.rollbackAround(ctx, name, ref,
		func(t Target, p Point) (err error) { state, err = memoryOf(t, p); return err },
		stop, func(ctx context.Context) error { return start(ctx, state) }, again,
		"did not resume from its memory: %w; start it (it boots from the restored disks), or try the rollback again")
}

// wentAway words the failure of a point whose guest's QEMU went away
// while it was taken (nil when it did not): whatever else failed then,
// a bound on the pause among it, followed from that, and a longer
// --max-pause would not help.
func wentAway(l *liveGuest, err error) error {
	if !errors.Is(err, qmp.ErrClosed) {
		return nil
	}
	return fmt.Errorf("guest %q: its QEMU went away during the point (it died or was killed: strata guest status %s says how it stopped); nothing was recorded: %w", l.name, l.name, qmp.ErrClosed)
}

// Memory points through a driver that saves the guest's memory itself
// (boot.StateSaver: libvirt's save, xl save). The point is recorded (creating,
// live, its state file named) before anything happens; then:
//
//  1. the driver saves the guest's RAM into the state file and stops it.
//     --max-pause bounds the save: libvirt's is aborted when the bound
//     passes (the guest runs on); xl's cannot be, and a save that took
//     longer is followed by the restore only, the disks not taken;
//     either way nothing is recorded;
//  2. the point's disks are taken as a stopped guest's are (qemu-img,
//     reflink, copy): nothing has written them since the save, so they
//     are of the instant of the RAM;
//  3. the driver starts the guest from the file, where it was;
//  4. the point is recorded ready, with the whole pause, 1 to 3, as
//     measured (once the memory is saved the pause lasts until the
//     restore whatever becomes of the point, so it is kept).
//
// A strata killed before 1 has finished, or after 3, leaves a running
// guest: the point is undone through its monitor as any live point. One
// killed between 1 and 3 leaves a stopped guest and a complete state
// file: the next command on the guest (or doctor --repair) finishes the
// point (finishSaved): it takes the disks again, records the point and
// starts the guest from its memory. A guest that does not come back from
// its memory (the restore fails) keeps a ready point that holds it:
// rollback --memory of that point resumes it; nothing is lost.

// errPointKept marks the failure of a point that is not to be undone:
// the point holds the memory of a guest that did not come back from it.
var errPointKept = errors.New("the point is kept")

// takeSaved takes memory point p of a guest whose driver saves its
// memory itself (see above).
func (m *Manager) takeSaved(ctx context.Context, l *liveGuest, ss boot.StateSaver, p *Point, vols []storage.Volume, o CreateOptions) error {
	f, err := openState(l, p)
	if err != nil {
		return err
	}
	f.Close()
	// (The driver refused a copy without the space for it when the point
	// was planned, before the guest is saved.)
	for _, v := range vols {
		if err := image.VerifyImage(v); err != nil {
			return err
		}
	}
	p.Consistency = boot.ConsistencyMemory
	start := time.Now()
	pause := func() {
		ms := float64(time.Since(start).Microseconds()) / 1000
		p.PauseMS = &ms
	}
	sctx, cancel := ctx, context.CancelFunc(func() {})
	if o.MaxPause > 0 {
		sctx, cancel = context.WithTimeout(ctx, o.MaxPause)
	}
	err = ss.SaveState(sctx, l.bg, p.Memory.Path)
	cancel()
	saved := time.Since(start)
	if err != nil && !savedAnyway(ctx, l, p) {
		pause()
		return m.savedFailure(l, err, saved)
	}
	crashpoint("create:memory-saved")
	// From here the guest is stopped: it comes back whatever fails,
	// even if strata is told to stop.
	ctx = context.WithoutCancel(ctx)
	disksOnly := *p
	disksOnly.Memory = nil
	var derr error
	if o.MaxPause > 0 && saved > o.MaxPause {
		// A save the driver does not interrupt (xl) went past the
		// bound: the disks are not taken, the guest comes back.
		derr = m.savedFailure(l, fmt.Errorf("%w: saving the guest's memory took %s, more than --max-pause %s", boot.ErrPauseTooLong, saved.Round(time.Millisecond), o.MaxPause), saved)
	} else if derr = m.takeDisksOffline(ctx, p, vols); derr != nil {
		// Undone while the guest is stopped: qemu-img can reach its
		// images now, not once it runs again.
		if uerr := m.removeData(ctx, disksOnly); uerr != nil {
			derr = errors.Join(derr, uerr)
		}
	}
	disksTaken := time.Since(start)
	rerr := resumeSaved(ctx, l.drv, l.bg, *p)
	pause()
	log.Debug().Str("guest", l.name).Dur("save", saved).Dur("disks", disksTaken-saved).Dur("restore", time.Since(start)-disksTaken).Msg("memory point through the driver's save")
	switch {
	case rerr != nil && derr == nil:
		if err := m.keepSaved(p); err != nil {
			return fmt.Errorf("guest %q did not come back from its saved memory (%w), and its point could not be recorded: %v; strata doctor --repair finishes it", l.name, rerr, err)
		}
		return fmt.Errorf("%w: guest %q did not come back from its saved memory: %w; restore point %d holds it (its disks and memory of one instant): strata snapshot rollback %s %d --memory resumes it", errPointKept, l.name, rerr, p.ID, l.name, p.ID)
	case rerr != nil:
		return fmt.Errorf("%w: guest %q: %w; and the guest did not come back from its saved memory: %v; the next snapshot command on the guest (or strata doctor --repair) finishes the point and starts the guest from its memory", errPointKept, l.name, derr, rerr)
	case derr != nil:
		return derr
	}
	// Once the memory is saved, the pause lasts until the restore
	// whatever becomes of the point: the point is kept, with the pause
	// as it was (--max-pause bounds the save). Recorded first: the guest
	// runs again, and an interrupted point must now be undone.
	p.Memory.Resumed = true
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return putPoint(tx, *p) }); err != nil {
		return err
	}
	p.Memory.Resumed = false
	crashpoint("create:memory-restored")
	return finishState(p)
}

// savedAnyway tells whether a save that reported an error (a lost
// connection to the toolstack, say) stopped the guest with its whole
// state written all the same: the point then goes on (else undoing it
// would throw the guest's memory away).
func savedAnyway(ctx context.Context, l *liveGuest, p *Point) bool {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st, err := l.drv.Status(sctx, l.bg)
	if err != nil || st.State.Live() || boot.CheckState(p.Memory.Driver, p.Memory.Path, 0) != nil {
		return false
	}
	log.Warn().Str("guest", l.name).Msg("the driver's save of the guest's memory reported an error, but the guest is stopped with its whole state saved: the point goes on")
	return true
}

// savedFailure words a failed save: a pause too long says how long the
// driver's way takes.
func (m *Manager) savedFailure(l *liveGuest, err error, took time.Duration) error {
	if errors.Is(err, boot.ErrPauseTooLong) {
		return storage.Errorf(storage.ErrPrecondition, "guest %q: %v; nothing was recorded: through %s a memory point pauses the guest for the driver's save of its RAM (%d MiB; %s this time), which --max-pause bounds, and then for the point's disks and the restore, so allow a longer pause (--max-pause, e.g. 30s)", l.name, err, l.driver, l.ramMiB, took.Round(time.Millisecond))
	}
	if errors.Is(err, storage.ErrPrecondition) {
		return err
	}
	return fmt.Errorf("guest %q: %w", l.name, err)
}

// takeDisksOffline takes every disk of p as a stopped guest's.
func (m *Manager) takeDisksOffline(ctx context.Context, p *Point, vols []storage.Volume) error {
	for i := range p.Disks {
		drv, pool, err := m.driverOf(vols[i])
		if err != nil {
			return err
		}
		if err := drv.TakePoint(ctx, pool, vols[i], &p.Disks[i].PointRef, m.Progress); err != nil {
			return fmt.Errorf("volume %q: %w", vols[i].Name, err)
		}
		crashpoint(fmt.Sprintf("create:disk-%d", i+1))
	}
	return nil
}

// resumeSaved starts the guest from p's state file through d.
func resumeSaved(ctx context.Context, d boot.Driver, bg *boot.Guest, p Point) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	_, err := d.Start(ctx, bg, boot.StartOptions{FromState: p.Memory.Path})
	return err
}

// keepSaved records p ready: its disks and memory are complete.
func (m *Manager) keepSaved(p *Point) error {
	if err := finishState(p); err != nil {
		return err
	}
	p.State = stateReady
	p.Bytes = sumBytes(p.Disks)
	return m.st.Catalog.Update(func(tx *catalog.Tx) error { return putPoint(tx, *p) })
}

// finishSaved finishes memory point p of the stopped guest of t when a
// dead strata left it between the driver's save and the restore (see
// above); false when p is not such a point (it is then undone as any).
func (m *Manager) finishSaved(ctx context.Context, t Target, p Point) (bool, error) {
	if !p.Live || p.Memory == nil || p.Memory.Resumed || m.Drivers == nil || t.Kind() != catalog.KindGuest {
		return false, nil
	}
	d, err := m.Drivers.Get(p.Memory.Driver)
	if err != nil {
		return false, nil
	}
	if _, ok := d.(boot.StateSaver); !ok {
		return false, nil
	}
	if boot.CheckState(p.Memory.Driver, p.Memory.Path, 0) != nil {
		return false, nil // the save did not finish: nothing to resume from
	}
	id := t.Key.ID()
	def, err := registry.New(m.st).Resolved(ctx, t.Name)
	if err != nil {
		return true, err
	}
	bg := &boot.Guest{ID: id, Def: def, Run: &boot.RunDir{Dir: filepath.Join(m.st.Catalog.Home(), "run", id)}}
	log.Warn().Str("target", t.String()).Int("point", p.ID).Msg("finishing a memory point interrupted after the guest's memory was saved: its disks are taken now (the guest has not run since) and the guest continues from its memory")
	ctx = context.WithoutCancel(ctx)
	// What an interrupted take of the disks made goes first.
	disksOnly := p
	disksOnly.Memory = nil
	if err := m.removeData(ctx, disksOnly); err != nil {
		return true, err
	}
	var vols []storage.Volume
	for _, dp := range p.Disks {
		v, err := m.volumeByID(dp.VolumeID)
		if err != nil {
			return true, err
		}
		vols = append(vols, v)
	}
	if err := m.takeDisksOffline(ctx, &p, vols); err != nil {
		// Undone, the guest coming back as it was.
		if rerr := m.removeData(ctx, disksOnly); rerr != nil {
			return true, errors.Join(err, rerr)
		}
		if rerr := resumeSaved(ctx, d, bg, p); rerr != nil {
			return true, fmt.Errorf("the interrupted memory point's disks: %w; and guest %q did not come back from its saved memory %s: %v", err, t.Name, p.Memory.Path, rerr)
		}
		log.Warn().Err(err).Str("target", t.String()).Int("point", p.ID).Msg("the interrupted memory point could not take its disks: it is undone, and the guest runs again from its memory")
		return true, m.undoCreate(ctx, p)
	}
	// It was paused from about when it was recorded until now.
	ms := float64(time.Since(p.Created).Microseconds()) / 1000
	p.PauseMS, p.Consistency = &ms, boot.ConsistencyMemory
	if err := m.keepSaved(&p); err != nil {
		return true, err
	}
	if err := resumeSaved(ctx, d, bg, p); err != nil {
		log.Error().Err(err).Str("guest", t.Name).Int("point", p.ID).Msgf("the guest did not come back from its saved memory; restore point %d holds it: strata snapshot rollback %s %d --memory resumes it", p.ID, t.Name, p.ID)
	}
	return true, nil
}

// memoryPointKey marks the context of a memory point's create.
type memoryPointKey struct{}

// forMemory marks ctx as a memory point's: liveOf then gives a running
// guest whose driver has no monitor but saves its memory itself (xl) a
// liveGuest without a monitor (stateOnly), where any other point of it is
// refused.
func forMemory(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoryPointKey{}, true)
}

// stateOnly returns, for a memory point (ctx from forMemory), the
// liveGuest of a running guest whose driver takes no live points but
// saves its memory itself; nil otherwise. Its monitor answers nothing:
// the point is taken by the driver's save, the disks offline and the
// restore (takeSaved), and undone as a stopped guest's.
func stateOnly(ctx context.Context, t Target, d boot.Driver, bg *boot.Guest, s boot.Status) *liveGuest {
	if ctx.Value(memoryPointKey{}) == nil {
		return nil
	}
	if _, ok := d.(boot.StateSaver); !ok || d.Supports(bg.Def, boot.MemoryState) != nil {
		return nil
	}
	return &liveGuest{name: t.Name, driver: d.Name(), mon: noMonitor{driver: d.Name()}, paused: s.State == boot.Paused, pid: s.PID,
		drv: d, bg: bg, ramMiB: bg.Def.EffectiveMaxMem()}
}

// noMonitor is the monitor of a guest whose driver gives none.
type noMonitor struct{ driver string }

func (n noMonitor) Execute(context.Context, string, any) (json.RawMessage, error) {
	return nil, storage.Errorf(storage.ErrNotSupported, "the %s driver gives strata no monitor of the guest", n.driver)
}
func (noMonitor) Events() <-chan qmp.Event { return nil }
func (noMonitor) Close() error             { return nil }
