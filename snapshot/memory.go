package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
)

// Memory-state points: a live point of a guest that also holds its RAM
// and device state (consistency "memory"), saved by its driver during
// the same pause as the disks (hvm/boot: LiveRequest.State) into a file
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
}

// stateMargin is what a state file may need beyond the guest's RAM
// (device state, QEMU's framing), and what the filesystem keeps free.
const stateMargin = 64 << 20

// planMemory names the state file of a memory point p of t, refusing
// what cannot have one.
func planMemory(t Target, live *liveGuest, vols []storage.Volume, p *Point) error {
	switch {
	case t.Kind != "guest":
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
	p.Memory = &MemoryState{Path: filepath.Join(filepath.Dir(vols[0].Path), pointsDir, vols[0].ID+"-"+p.UID+".state"), Driver: live.driver}
	return nil
}

// openState creates p's state file, after checking that the guest's RAM
// (as its QEMU reports it) fits beside it with a margin.
func openState(l *liveGuest, p *Point) (*os.File, error) {
	dir := filepath.Dir(p.Memory.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
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
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, err
	}
	if free := int64(fs.Bavail) * fs.Bsize; !skipSpaceCheck && ram+stateMargin > free {
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
