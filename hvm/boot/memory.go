package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/strata-vm/strata/storage"
)

// Memory-state points.
//
// A memory point saves the guest's RAM and device state beside its
// disks, inside the same pause: after the disks are captured, QEMU
// migrates the paused guest into a file strata opened and passed over
// QMP (getfd, then migrate to "fd:NAME": no path QEMU opens itself, no
// shell), strata waits for the migration to complete and resumes the
// guest (cont leaves QEMU's postmigrate state and takes the disks back).
// The pause therefore lasts as long as writing the RAM. Starting from
// such a file is the reverse: QEMU starts with -incoming defer, gets the
// file the same way and loads it (migrate-incoming) before the guest's
// first instruction, so the guest continues where it was, without a
// boot.

// StateSaver is a driver that saves a running guest's memory itself
// rather than through a QMP migration into a file strata passes
// (libvirt's save): the guest stops while its RAM is written, the caller
// captures the point's disks while it is stopped (so they and the RAM
// are of one instant), and the driver starts it again from the file
// (Start with StartOptions.FromState), where it continues. The pause is
// the whole of it: the save, the disks and the restore.
type StateSaver interface {
	// SaveState writes the running guest's RAM and device state into
	// path (an empty file of strata's, which the driver fills) and
	// stops the guest, leaving path strata's (mode 0600). A save still
	// under way when ctx's deadline passes is aborted, the guest runs
	// on, and the error is ErrPauseTooLong.
	SaveState(ctx context.Context, g *Guest, path string) error
}

// FileMonitor is a monitor that can pass a file descriptor to QEMU with
// a command (hvm/qmp's Client over its unix socket).
type FileMonitor interface {
	ExecuteFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error)
}

// stateFD is the name QEMU knows a state file's descriptor by. One name:
// a descriptor a dead strata left on the monitor is replaced, not kept.
const stateFD = "strata-state"

// migrateInfo is what query-migrate says.
type migrateInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

func queryMigrate(ctx context.Context, mon Monitor) (migrateInfo, error) {
	var mi migrateInfo
	raw, err := mon.Execute(ctx, "query-migrate", nil)
	if err != nil {
		return mi, err
	}
	return mi, json.Unmarshal(raw, &mi)
}

// passFile hands f to QEMU under stateFD.
func passFile(ctx context.Context, mon Monitor, f *os.File) error {
	fm, ok := mon.(FileMonitor)
	if !ok {
		return storage.Errorf(storage.ErrNotSupported, "this guest's monitor cannot pass a file to QEMU, so its memory cannot be saved or loaded")
	}
	// An earlier point's descriptor, if one was left: usually none.
	bestEffort(ctx, mon, "no earlier descriptor to close", "closefd", map[string]any{"fdname": stateFD})
	if _, err := fm.ExecuteFile(ctx, "getfd", map[string]any{"fdname": stateFD}, f); err != nil {
		return fmt.Errorf("pass the state file to QEMU: %w", err)
	}
	return nil
}

// saveState writes the paused guest's RAM and device state into f
// (migrate to fd:), waiting until QEMU has completed; left is what
// remains of the pause allowed (bounded: a migration still running when
// it is over is cancelled, ErrPauseTooLong).
func saveState(ctx context.Context, mon Monitor, f *os.File, left func() time.Duration, bounded bool, during func()) error {
	if err := passFile(ctx, mon, f); err != nil {
		return err
	}
	// QEMU's default bandwidth bound (128 MiB/s) is for a network: a
	// paused guest's RAM goes to a local file as fast as it can.
	if _, err := mon.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return fmt.Errorf("save the guest's memory: %w", err)
	}
	if _, err := mon.Execute(ctx, "migrate", map[string]any{"uri": "fd:" + stateFD}); err != nil {
		bestEffort(ctx, mon, "the next point closes it first, QEMU's exit at the latest", "closefd", map[string]any{"fdname": stateFD})
		return fmt.Errorf("save the guest's memory: %w", err)
	}
	if during != nil {
		during()
	}
	for {
		mi, err := queryMigrate(ctx, mon)
		if err != nil {
			cancelMigration(ctx, mon)
			return fmt.Errorf("save the guest's memory: %w", err)
		}
		switch mi.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			why := mi.ErrorDesc
			if why == "" {
				why = "QEMU's log (qemu.log in the guest's runtime directory) says why"
			}
			return fmt.Errorf("save the guest's memory: QEMU's migration to the state file %s: %s", mi.Status, why)
		}
		if bounded && left() <= 0 {
			cancelMigration(ctx, mon)
			return fmt.Errorf("%w: the guest's memory was still being written when --max-pause was over", ErrPauseTooLong)
		}
		select {
		case <-ctx.Done():
			cancelMigration(ctx, mon)
			return fmt.Errorf("save the guest's memory: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// finishCopies waits, while the guest is paused, until the point's
// full copies (blockdev-backup jobs) are done: a migration cannot
// complete while one runs (QEMU deactivates the disks at its end). A
// memory point of a guest with full-copy disks therefore pauses it for
// the copies too; bounded, a copy still running when the pause allowed
// is over fails the point (ErrPauseTooLong).
func finishCopies(ctx context.Context, mon Monitor, jobs []string, left func() time.Duration, bounded bool) error {
	if len(jobs) == 0 {
		return nil
	}
	tooLong := fmt.Errorf("%w: the point's full copies of the disks (which a memory point makes during its pause) were not done when --max-pause was over", ErrPauseTooLong)
	wctx := ctx
	if bounded {
		if left() <= 0 {
			return tooLong
		}
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, left())
		defer cancel()
	}
	err := waitJobs(wctx, mon, jobs)
	// The bound's end shows in many forms (a socket's write deadline
	// among them): the context says whether it was the bound.
	if err != nil && bounded && ctx.Err() == nil && wctx.Err() != nil {
		return tooLong
	}
	return err
}

// cancelMigration cancels a migration under way and waits (briefly) until
// QEMU has given it up, so that the guest can resume.
func cancelMigration(ctx context.Context, mon Monitor) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	mi, err := queryMigrate(ctx, mon)
	if err != nil || !migrating(mi.Status) {
		return
	}
	bestEffort(ctx, mon, "whether the migration ended is polled next", "migrate_cancel", nil)
	for ctx.Err() == nil {
		if mi, err := queryMigrate(ctx, mon); err != nil || !migrating(mi.Status) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// migrating tells whether a migration in status s is still under way.
func migrating(s string) bool {
	switch s {
	case "", "none", "completed", "failed", "cancelled":
		return false
	}
	return true
}

// LoadState loads a guest's RAM and device state from f into a QEMU
// started with -incoming defer (and -S), and waits until it is loaded:
// the guest is then paused where the state was saved, ready for cont.
func LoadState(ctx context.Context, mon Monitor, f *os.File) error {
	if err := passFile(ctx, mon, f); err != nil {
		return err
	}
	if _, err := mon.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + stateFD}); err != nil {
		return fmt.Errorf("load the guest's memory: %w", err)
	}
	for {
		mi, err := queryMigrate(ctx, mon)
		if err != nil {
			return fmt.Errorf("load the guest's memory: %w", err)
		}
		switch mi.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			why := mi.ErrorDesc
			if why == "" {
				why = "QEMU did not accept the state file (see qemu.log)"
			}
			return storage.Errorf(storage.ErrPrecondition, "load the guest's memory: %s: the state does not fit this guest as defined now (other devices or memory size?)", why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("load the guest's memory: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// abandonMemory cancels a memory point's migration a dead strata left
// running and forgets its descriptor.
func abandonMemory(ctx context.Context, mon Monitor) {
	cancelMigration(ctx, mon)
	bestEffort(ctx, mon, "the next point closes it first, QEMU's exit at the latest", "closefd", map[string]any{"fdname": stateFD})
}

// stateMagic is how each driver's state files begin: QEMU's migration
// stream (QEVM, version 3), libvirt's save image ("LibvirtQemudPart"
// until libvirt has written it all, then "LibvirtQemudSave") and xl's
// save file.
var stateMagic = map[string]string{
	QEMU:    "QEVM\x00\x00\x00\x03",
	Libvirt: "LibvirtQemudSave",
	XL:      "Xen saved domain, xl format\n \x00 \r",
}

// CheckState checks that path holds a complete state file as the driver
// called driver writes it, before anything is changed for a resume from
// it: a regular file (never a link, which strata does not follow),
// readable, of size bytes (where size > 0: the size recorded when the
// point was taken), beginning as the driver's state files do. The error
// (ErrPrecondition) says what is wrong.
func CheckState(driver, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			err = errors.New("it is a symbolic link, which strata never follows")
		}
		return storage.Errorf(storage.ErrPrecondition, "the saved memory state %s cannot be used: %v", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return storage.Errorf(storage.ErrPrecondition, "the saved memory state %s cannot be used: %v", path, err)
	}
	if !st.Mode().IsRegular() {
		return storage.Errorf(storage.ErrPrecondition, "the saved memory state %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if size > 0 && st.Size() != size {
		return storage.Errorf(storage.ErrPrecondition, "the saved memory state %s has %d bytes, not the %d it had when the point was taken: it was changed or cut short", path, st.Size(), size)
	}
	magic, ok := stateMagic[driver]
	if !ok {
		return storage.Errorf(storage.ErrPrecondition, "the saved memory state %s was written by driver %q, which strata does not know", path, driver)
	}
	head := make([]byte, len(magic))
	if _, err := io.ReadFull(f, head); err != nil || string(head) != magic {
		why := "it does not begin as a state file of the " + driver + " driver does"
		if err != nil {
			why = err.Error()
		}
		return storage.Errorf(storage.ErrPrecondition, "the saved memory state %s is not a complete state of the %s driver (%s)", path, driver, why)
	}
	return nil
}

// OwnStateFile makes a state file a toolstack wrote (never through a
// link) strata's user's alone, mode 0600, whatever the toolstack's
// labelling did to it: it holds the guest's RAM.
func OwnStateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chown(os.Geteuid(), os.Getegid()); err != nil {
		return err
	}
	return f.Chmod(0o600)
}
