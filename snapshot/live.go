package snapshot

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

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qga"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
)

// Live points: restore points of a guest that runs, taken through the
// driver that runs it (hvm/boot: TakeLive) in one pause that covers every
// disk. A point records how consistent it is (Point.Consistency) and, for
// a live one, how long the guest was paused (Point.PauseMS).
//
// Per method: qcow2-internal disks get their internal snapshots in one
// QMP transaction; reflink disks are cloned (FICLONE) during the pause;
// full-copy disks get a point-in-time copy that QEMU writes while the
// guest runs again (blockdev-backup, started in the same transaction), so
// the pause never lasts a copy. A live point is recorded (state creating,
// Live) before the guest is paused: a strata killed in between leaves a
// record that the next command on the guest undoes, resuming the guest if
// it is still paused and removing what QEMU made. A memory point (--memory,
// memory.go) also saves the guest's RAM in the same pause.

// Consistency of a point taken while the guest did not run: the disks as
// the guest left them when it stopped.
const consistencyOffline = "offline"

// DefaultMaxPause bounds a live point's pause unless told otherwise.
const DefaultMaxPause = time.Second

// liveGuest is the monitor of a running guest.
type liveGuest struct {
	name   string
	driver string
	mon    boot.Monitor
	paused bool // by its admin, before the point
	pid    int  // the guest's process, where the driver knows it
	// memory: nil when the driver can save the guest's memory, else why
	// not; ramMiB: the guest's memory as defined.
	memory error
	ramMiB int
	drv    boot.Driver
	bg     *boot.Guest
	agent  qga.Agent // the guest agent of a quiesced point (quiesce.go)
}

// killGuestAt is the test-only fault injection hook next to crashAt:
// STRATA_TEST_KILL_GUEST_AT names a step at which strata kills the
// guest's process (SIGKILL), as a crash of QEMU would.
var killGuestAt = os.Getenv("STRATA_TEST_KILL_GUEST_AT")

func killGuest(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 500 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *liveGuest) close() {
	if l != nil {
		l.mon.Close()
		if l.agent != nil {
			l.agent.Close()
		}
	}
}

// liveOf returns the monitor of t's guest if it runs (nil if it does not,
// or t is a volume). A guest that runs under a driver that cannot take
// points of running guests is an error of kind ErrInUse saying why.
func (m *Manager) liveOf(ctx context.Context, t Target) (*liveGuest, error) {
	if m.Drivers == nil || t.Kind != "guest" {
		return nil, nil
	}
	id := strings.TrimPrefix(t.Key, "g-")
	rd := &boot.RunDir{Dir: filepath.Join(m.st.Catalog.Home(), "run", id)}
	st, err := rd.ReadState()
	if err != nil || st == nil {
		return nil, err
	}
	d, err := m.Drivers.Get(st.Driver)
	if err != nil {
		return nil, err
	}
	def, err := registry.New(m.st).Resolved(ctx, t.Name)
	if err != nil {
		return nil, err
	}
	bg := &boot.Guest{ID: id, Def: def, Run: rd}
	s, err := d.Status(ctx, bg)
	if err != nil {
		return nil, err
	}
	if !s.State.Live() {
		return nil, nil
	}
	lm, ok := d.(boot.LiveMonitor)
	if err := d.Supports(def, boot.LivePoints); err != nil || !ok {
		why := fmt.Sprintf("the %s driver cannot take points of a running guest", d.Name())
		if err != nil {
			why = err.Error()
		}
		return nil, storage.Errorf(storage.ErrInUse, "guest %q is running (driver %s), so its disks are in use, and %s", t.Name, d.Name(), why)
	}
	mon, err := lm.Monitor(ctx, bg)
	if err != nil {
		return nil, fmt.Errorf("guest %q runs, but strata cannot reach its monitor: %w", t.Name, err)
	}
	return &liveGuest{name: t.Name, driver: d.Name(), mon: mon, paused: s.State == boot.Paused, pid: s.PID, drv: d, bg: bg,
		memory: d.Supports(def, boot.MemoryState), ramMiB: def.EffectiveMaxMem()}, nil
}

// takeLive captures every disk of p while the guest runs (see above); on
// error the caller undoes the point.
func (m *Manager) takeLive(ctx context.Context, l *liveGuest, p *Point, vols []storage.Volume, o CreateOptions) error {
	req := boot.LiveRequest{ID: p.UID, MaxPause: o.MaxPause, Paused: l.paused, Hold: l.bg.Run,
		DuringPause: func() {
			crashpoint("create:live-paused")
			if killGuestAt == "create:live-paused" {
				killGuest(l.pid)
			}
		}}
	if p.Memory != nil {
		f, err := openState(l, p)
		if err != nil {
			return err
		}
		defer f.Close()
		req.State = f
		req.DuringState = func() { crashpoint("create:memory-saving") }
	}
	if l.agent != nil {
		l.freezeHooks(&req)
	}
	for i := range p.Disks {
		dp, v := &p.Disks[i], vols[i]
		if err := image.VerifyImage(v); err != nil {
			return err
		}
		switch dp.Method {
		case MethodQcow2:
			req.Disks = append(req.Disks, boot.LiveDisk{Path: v.Path, Method: boot.LiveInternal, Name: dp.Ref})
		case MethodReflink:
			if err := os.MkdirAll(filepath.Dir(dp.Ref), 0o700); err != nil {
				return err
			}
			src, dst := v.Path, dp.Ref
			// Only a reflink during the pause: a fallback to a copy
			// would pause the guest for as long as the copy.
			req.Disks = append(req.Disks, boot.LiveDisk{Path: v.Path, Method: boot.LiveClone, Clone: func() error { return image.Reflink(src, dst) }})
		case MethodCopy:
			if err := os.MkdirAll(filepath.Dir(dp.Ref), 0o700); err != nil {
				return err
			}
			if err := checkSpace(v.Path, filepath.Dir(dp.Ref)); err != nil {
				return err
			}
			_, passFD := l.mon.(boot.FileMonitor)
			f, err := makeTarget(v, dp.Ref, passFD)
			if err != nil {
				return err
			}
			if f != nil {
				defer f.Close()
			}
			req.Disks = append(req.Disks, boot.LiveDisk{Path: v.Path, Method: boot.LiveBackup, Target: dp.Ref, File: f})
		default:
			return fmt.Errorf("live point: method %q", dp.Method)
		}
	}
	res, err := boot.TakeLive(ctx, l.mon, req)
	for _, d := range req.Disks {
		if d.Method == boot.LiveBackup {
			if oerr := ownTarget(d.Target); oerr != nil && err == nil {
				err = oerr
			}
		}
	}
	ms := float64(res.Pause.Microseconds()) / 1000
	p.PauseMS = &ms
	p.Consistency = res.Consistency
	if err != nil {
		if errors.Is(err, boot.ErrPauseTooLong) && p.Memory != nil {
			return storage.Errorf(storage.ErrPrecondition, "guest %q: %v; nothing was recorded: a memory point pauses the guest for as long as writing its RAM (%d MiB) takes, so allow a longer pause (--max-pause; about 1s per GiB of RAM to start with, more on a slow disk)", l.name, err, l.ramMiB)
		}
		if errors.Is(err, boot.ErrPauseTooLong) {
			return storage.Errorf(storage.ErrPrecondition, "guest %q: %v; nothing was recorded: try again when the guest is less busy, or allow a longer pause (--max-pause)", l.name, err)
		}
		return fmt.Errorf("guest %q: %w", l.name, err)
	}
	if err := finishState(p); err != nil {
		return err
	}
	for i := range p.Disks {
		dp := &p.Disks[i]
		if dp.Method == MethodCopy {
			// QEMU writes the disk's holes as allocated zeros: they
			// become holes again (and the file durable).
			if err := image.PunchZeros(ctx, dp.Ref); err != nil {
				return err
			}
			info, err := image.InspectAs(dp.Ref, vols[i].Format)
			if err != nil {
				return err
			}
			dp.Bytes = &info.AllocatedBytes
		}
		if dp.Method != MethodQcow2 {
			if err := image.SyncPath(filepath.Dir(dp.Ref)); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeTarget creates the empty file a live full copy is written into:
// the volume's virtual size, sparse, raw (copy points are of raw volumes).
// With passFD (the guest's monitor passes descriptors: the qemu driver)
// it returns the file open for QEMU to write through (add-fd): the file
// stays strata's, 0600 in its root-only directory, and no other user ever
// holds a descriptor of it. Otherwise (libvirt: go-libvirt cannot pass a
// descriptor with a monitor command) QEMU opens it by path, and it is
// owned as the disk is while QEMU writes it (libvirt's QEMU runs as its
// own user, which owns the images of the guests it runs), in a directory
// that user may pass through; strata's again, and the directory
// root-only, once written (ownTarget). That user, which already writes
// the guest's own disk, can keep a descriptor of the copy meanwhile: the
// README says so.
func makeTarget(v storage.Volume, path string, passFD bool) (*os.File, error) {
	info, err := image.InspectAs(v.Path, v.Format)
	if err != nil {
		return nil, err
	}
	flag := os.O_CREATE | os.O_EXCL | os.O_WRONLY | syscall.O_NOFOLLOW
	if passFD {
		// QEMU's file driver opens its descriptor set read-write.
		flag = os.O_CREATE | os.O_EXCL | os.O_RDWR | syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(info.VirtualSize); err != nil {
		f.Close()
		return nil, err
	}
	if passFD {
		return f, nil
	}
	if st, err := os.Stat(v.Path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != uint32(os.Geteuid()) {
			if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
				f.Close()
				return nil, err
			}
			if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	return nil, f.Close()
}

// ownTarget gives a live copy back to strata's user once QEMU is done
// with it (a point is not the guest's to read or change), and its
// directory back to root-only.
func ownTarget(path string) error {
	err := os.Lchown(path, os.Geteuid(), os.Getegid())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st, err := os.Lstat(filepath.Dir(path)); err == nil && st.IsDir() && st.Mode().Perm() != 0o700 {
		return os.Chmod(filepath.Dir(path), 0o700)
	}
	return nil
}

// removeLive deletes a point's data while its guest runs: internal
// snapshots through the guest's monitor, files as usual.
func (m *Manager) removeLive(ctx context.Context, l *liveGuest, p Point) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, d := range p.Disks {
		if d.Method != MethodQcow2 {
			continue
		}
		v, err := m.volumeByID(d.VolumeID)
		if err != nil {
			continue // the image and its internal snapshots are gone
		}
		if err := boot.DeleteLiveInternal(ctx, l.mon, v.Path, d.Ref); err != nil {
			return fmt.Errorf("remove restore point %d data of volume %q from the running guest: %w", p.ID, d.Volume, err)
		}
	}
	return m.removeFiles(ctx, p)
}

// abandonLive undoes what a live point left inside the running guest:
// its block jobs and backup nodes go, and a guest left paused by it runs
// again. recovering: the point is a dead strata's; its pause hold
// (boot.PauseHold) then says whether the guest is still paused or frozen
// for it: without one, the guest's watcher has resumed and thawed it
// already, and a pause seen now is its admin's, which stays.
func abandonLive(ctx context.Context, l *liveGuest, p Point, recovering bool) {
	resume, thaw := !p.LivePaused, true
	if recovering {
		h, _ := l.bg.Run.ReadHold()
		held := h != nil && h.Point == p.UID
		resume, thaw = held && h.Paused, held && h.Frozen
	}
	boot.AbandonLive(ctx, l.mon, p.UID, resume)
	if thaw {
		l.thawAbandoned(ctx, p)
	}
	_ = l.bg.Run.ClearHold(p.UID)
	log.Warn().Str("guest", l.name).Int("point", p.ID).Msg("a live restore point was interrupted: its copies are cancelled and the guest runs again if it was left paused")
}
