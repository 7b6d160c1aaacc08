// Package lifecycle runs the guests of a state home through the boot
// drivers (hvm/boot): it finds a guest's definition and runtime directory,
// picks the driver that runs it, and checks what must hold before a guest
// starts.
//
// Vocabulary: the driver of a guest is the one its state.json names while
// it runs; a stopped guest has none, and `start` picks one (--driver, else
// the definition's driver, else auto).
//
// Invariants: a guest starts only with its restore-point locks held and
// any interrupted operation on its disks finished or undone first (a guest
// never runs on a half-restored disk); with every disk present and no
// writable disk held by anyone else; never with a console or monitor the
// network can reach unless the admin allowed it; and at most once (one
// lifecycle operation per guest at a time, under its runtime directory's
// lock).
package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/store"
)

// Manager runs a state home's guests.
type Manager struct {
	St      *store.Store
	Reg     *registry.Registry
	Points  *snapshot.Manager
	Drivers *boot.Set
	// LockTimeout is how long a lifecycle command waits for another on
	// the same guest.
	LockTimeout time.Duration
	// Owner claims the guest for this host just before it starts, when
	// hosts share the catalog (nil: one host); done tells whether it
	// started (the claim is kept while it runs) or not (it is dropped).
	Owner func(ctx context.Context, id, name string) (done func(started bool), err error)
}

// StartOptions choose how Start starts a guest.
type StartOptions struct {
	Driver       string `json:"driver,omitempty"` // auto, qemu, libvirt, xl; "" = the definition's, else auto
	Paused       bool   `json:"-"`
	Network      string `json:"network,omitempty"` // qemu driver: bridge, user or none
	AllowExposed bool   `json:"-"`                 // start even if lint finds a console the network can reach
	FromState    string `json:"-"`                 // continue from a memory point's state file instead of booting
}

// startOptionsFile records, in the runtime directory, the driver and
// network a guest was last started with.
const startOptionsFile = "start.json"

// lastStart returns how the guest was last started (defaults when not
// recorded), for restart and rollback --restart.
func lastStart(l loaded) StartOptions {
	var o StartOptions
	if _, err := boot.ReadJSON(l.bg.Run.Path(startOptionsFile), &o); err != nil {
		// Safe: the defaults start the guest as a plain start would.
		log.Warn().Err(err).Str("guest", l.def.Name).Msg("how the guest was last started is unreadable: it starts with the defaults")
		return StartOptions{}
	}
	return o
}

// loaded is a guest as the drivers take it.
type loaded struct {
	bg  *boot.Guest
	def *hvm.Guest // as stored (names, not paths)
}

func (m *Manager) load(ctx context.Context, name string) (loaded, error) {
	def, rec, err := m.Reg.Get(ctx, name)
	if err != nil {
		return loaded{}, err
	}
	res, err := m.Reg.Resolved(ctx, name)
	if err != nil {
		return loaded{}, err
	}
	rd, err := boot.RunDirFor(m.St.Catalog.Home(), rec.ID)
	if err != nil {
		return loaded{}, err
	}
	return loaded{bg: &boot.Guest{ID: rec.ID, Def: res, Run: rd}, def: def}, nil
}

// lock takes the guest's lifecycle lock (one start, stop or install step
// at a time), kept with strata's other locks in HOME/locks.
func (m *Manager) lock(ctx context.Context, l loaded) (func(), error) {
	return store.LockKey(m.St.Catalog.Home(), "run-"+l.bg.ID, fmt.Sprintf("guest %q (started or stopped by another strata command)", l.def.Name), m.LockTimeout)
}

// locked loads the guest called name and runs fn with its lifecycle lock
// held.
func (m *Manager) locked(ctx context.Context, name string, fn func(l loaded) error) error {
	l, err := m.load(ctx, name)
	if err != nil {
		return err
	}
	unlock, err := m.lock(ctx, l)
	if err != nil {
		return err
	}
	defer unlock()
	return fn(l)
}

// driverOf returns the driver that runs the guest now (the one its
// state.json names), or nil when none does.
func (m *Manager) driverOf(l loaded) (boot.Driver, error) {
	rs, err := l.bg.Run.ReadState()
	if err != nil {
		return nil, err
	}
	if rs != nil {
		return m.Drivers.Get(rs.Driver)
	}
	return nil, nil
}

// Status reports a guest's state.
func (m *Manager) Status(ctx context.Context, name string) (boot.Status, error) {
	l, err := m.load(ctx, name)
	if err != nil {
		return boot.Status{}, err
	}
	return m.status(ctx, l)
}

func (m *Manager) status(ctx context.Context, l loaded) (boot.Status, error) {
	d, err := m.driverOf(l)
	if err != nil {
		return boot.Status{}, err
	}
	if d == nil {
		// A start killed half-way may have left a paused guest that
		// holds the disks with no state.json naming it: ended here.
		if err := boot.ReapOrphans(ctx, m.Drivers); err != nil {
			return boot.Status{}, err
		}
		last, err := l.bg.Run.ReadStopped()
		if err != nil {
			return boot.Status{}, err
		}
		return boot.Status{Guest: l.def.Name, State: boot.Stopped, LastStop: last}, nil
	}
	s, err := d.Status(ctx, l.bg)
	if err != nil {
		return s, err
	}
	s.Guest, s.Driver = l.def.Name, d.Name()
	if s.State.Live() {
		s.Features = boot.Features(d, l.bg.Def)
		// A hold that cannot be read is not shown: status reports the
		// guest as its driver sees it, paused or running.
		if h, _ := l.bg.Run.ReadHold(); h != nil {
			s.Hold = boot.HoldNote(h, s.State)
		}
	}
	if !s.Started.IsZero() && s.State.Live() {
		s.UptimeSeconds = time.Since(s.Started).Round(time.Millisecond).Seconds()
	}
	return s, nil
}

// Start starts a guest.
func (m *Manager) Start(ctx context.Context, name string, o StartOptions) (boot.Status, error) {
	var st boot.Status
	err := m.Points.WithGuest(ctx, name, func(ctx context.Context) (err error) {
		st, err = m.start(ctx, name, o)
		return err
	})
	return st, err
}

// start starts a guest; the caller holds its restore-point locks.
func (m *Manager) start(ctx context.Context, name string, o StartOptions) (boot.Status, error) {
	l, err := m.load(ctx, name)
	if err != nil {
		return boot.Status{}, err
	}
	unlock, err := m.lock(ctx, l)
	if err != nil {
		return boot.Status{}, err
	}
	defer unlock()
	if cur, err := m.status(ctx, l); err != nil {
		return cur, err
	} else if cur.State.Live() {
		return cur, storage.Errorf(storage.ErrPrecondition, "guest %q is already %s (driver %s): stop it first (strata guest stop %s)", name, cur.State, cur.Driver, name)
	}
	want := o.Driver
	if want == "" {
		want = l.def.Driver
	}
	d, err := m.Drivers.Choose(ctx, want)
	if err != nil {
		return boot.Status{}, fmt.Errorf("guest %q: %w", name, err)
	}
	if !o.AllowExposed {
		if exposed := lint.Exposures(l.bg.Def); len(exposed) > 0 {
			msgs := make([]string, len(exposed))
			for i, f := range exposed {
				msgs[i] = f.Field + ": " + f.Message
			}
			return boot.Status{}, storage.Errorf(storage.ErrPrecondition, "guest %q opens what the network can reach: %s; fix it (strata guest lint %s says how) or add --allow-exposed to start it anyway", name, strings.Join(msgs, "; "), name)
		}
	}
	started := false
	// Claimed first: another host running the guest is named as such,
	// not as a process holding its disks.
	if m.Owner != nil {
		done, err := m.Owner(ctx, l.bg.ID, name)
		if err != nil {
			return boot.Status{}, err
		}
		defer func() { done(started) }()
	}
	if err := m.checkDisks(ctx, l); err != nil {
		return boot.Status{}, err
	}
	if err := l.bg.Run.ClearStopped(); err != nil {
		return boot.Status{}, err
	}
	st, err := d.Start(ctx, l.bg, boot.StartOptions{Paused: o.Paused, Network: o.Network, FromState: o.FromState})
	started = err == nil
	if err != nil {
		if !strings.HasPrefix(err.Error(), fmt.Sprintf("guest %q", name)) { // not twice
			err = fmt.Errorf("guest %q: %w", name, err)
		}
		return st, err
	}
	st.Guest, st.Driver = name, d.Name()
	// restart and rollback --restart start it again as it was started.
	if err := boot.WriteJSON(l.bg.Run.Path(startOptionsFile), StartOptions{Driver: d.Name(), Network: o.Network}); err != nil {
		log.Warn().Str("guest", name).Err(err).Msg("how the guest was started is not recorded: a restart uses the defaults")
	}
	log.Debug().Str("guest", name).Str("driver", d.Name()).Str("state", string(st.State)).Msg("guest started")
	return st, nil
}

// checkDisks refuses a start whose disks are missing or held by someone
// else: a guest must not boot without its disk (it would boot the next
// device) nor write a disk another guest or tool holds.
func (m *Manager) checkDisks(ctx context.Context, l loaded) error {
	var imgs []inuse.Image
	for i, d := range l.bg.Def.Disks {
		kind, src := d.Source()
		if kind == hvm.SourceNone {
			continue
		}
		if strings.Contains(src, ":") && !strings.HasPrefix(src, "/") {
			continue // a network source such as rbd:pool/image
		}
		orig := l.def.Disks[i]
		okind, oname := orig.Source()
		what := fmt.Sprintf("disk %s (%s)", d.Vdev, src)
		if okind == hvm.SourceVolume || okind == hvm.SourceMedia {
			what = fmt.Sprintf("disk %s (%s %q, %s)", d.Vdev, map[hvm.SourceKind]string{hvm.SourceVolume: "volume", hvm.SourceMedia: "iso"}[okind], oname, src)
		}
		if okind == hvm.SourceVolume {
			// QEMU opens the path, following links: the volume's image
			// must still be the file strata registered.
			if err := m.verifyVolume(oname); err != nil {
				return fmt.Errorf("guest %q: %w", l.def.Name, err)
			}
		}
		if _, err := os.Stat(src); err != nil {
			fix := "put it back, or change the guest's disk (strata guest set)"
			if okind == hvm.SourceMedia {
				fix = "capture or build the iso again, or eject it (strata guest set)"
			}
			return storage.Errorf(storage.ErrNotFound, "guest %q: %s is missing (%v): %s", l.def.Name, what, errors.Unwrap(err), fix)
		}
		if !d.ReadOnly() {
			imgs = append(imgs, inuse.Image{What: fmt.Sprintf("guest %q %s", l.def.Name, what), Path: src})
		}
	}
	return m.St.InUse.CheckAll(ctx, imgs)
}

// verifyVolume refuses a volume whose image is no longer the file
// registered (image.VerifyImage).
func (m *Manager) verifyVolume(name string) error {
	var v storage.Volume
	if err := m.St.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		v, err = tx.Volume(name)
		return err
	}); err != nil {
		return err
	}
	return image.VerifyImage(v)
}

// StopOptions choose how Stop stops a guest.
type StopOptions = boot.StopOptions

// Stop shuts a guest down (or ends it with Force).
func (m *Manager) Stop(ctx context.Context, name string, o StopOptions) (st boot.Status, err error) {
	err = m.locked(ctx, name, func(l loaded) error {
		st, err = m.stop(ctx, l, o)
		return err
	})
	return st, err
}

func (m *Manager) stop(ctx context.Context, l loaded, o StopOptions) (boot.Status, error) {
	d, cur, err := m.live(ctx, l)
	if err != nil {
		return cur, err
	}
	st, err := d.Stop(ctx, l.bg, o)
	st.Guest, st.Driver = l.def.Name, d.Name()
	if err == nil {
		log.Debug().Str("guest", l.def.Name).Msg("guest stopped")
	}
	return st, err
}

// live returns the driver of a guest that runs, or an error saying it
// does not.
func (m *Manager) live(ctx context.Context, l loaded) (boot.Driver, boot.Status, error) {
	cur, err := m.status(ctx, l)
	if err != nil {
		return nil, cur, err
	}
	if !cur.State.Live() {
		return nil, cur, storage.Errorf(storage.ErrPrecondition, "guest %q is not running (%s): start it with strata guest start %s", l.def.Name, cur.State, l.def.Name)
	}
	d, err := m.Drivers.Get(cur.Driver)
	return d, cur, err
}

// Kill ends a running guest at once.
func (m *Manager) Kill(ctx context.Context, name string) (boot.Status, error) {
	return m.Stop(ctx, name, StopOptions{Force: true})
}

// Pause pauses a running guest; Resume resumes it.
func (m *Manager) Pause(ctx context.Context, name string) (boot.Status, error) {
	return m.act(ctx, name, boot.Pause, func(d boot.Driver, g *boot.Guest) error { return d.Pause(ctx, g) })
}

// Resume resumes a paused guest.
func (m *Manager) Resume(ctx context.Context, name string) (boot.Status, error) {
	return m.act(ctx, name, boot.Pause, func(d boot.Driver, g *boot.Guest) error { return d.Resume(ctx, g) })
}

func (m *Manager) act(ctx context.Context, name string, f boot.Feature, fn func(boot.Driver, *boot.Guest) error) (st boot.Status, err error) {
	err = m.locked(ctx, name, func(l loaded) error {
		d, cur, err := m.live(ctx, l)
		st = cur
		if err != nil {
			return err
		}
		if err := d.Supports(l.bg.Def, f); err != nil {
			return err
		}
		if err := fn(d, l.bg); err != nil {
			return err
		}
		st, err = m.status(ctx, l)
		return err
	})
	return st, err
}

// Restart stops a running guest cleanly and starts it again with the same
// driver (and the definition as it is now).
func (m *Manager) Restart(ctx context.Context, name string, o StopOptions, so StartOptions) (boot.Status, error) {
	l, err := m.load(ctx, name)
	if err != nil {
		return boot.Status{}, err
	}
	last := lastStart(l)
	cur, err := m.Stop(ctx, name, o)
	if err != nil {
		return cur, err
	}
	if so.Driver == "" {
		so.Driver = cur.Driver
	}
	if so.Network == "" {
		so.Network = last.Network
	}
	return m.Start(ctx, name, so)
}

// Rollback rolls a guest back to a restore point; a running guest is
// refused unless restart is set, then it is stopped cleanly (within
// timeout), rolled back and started again with the same driver, all with
// its locks held.
func (m *Manager) Rollback(ctx context.Context, name, ref string, restart bool, timeout time.Duration) (snapshot.RollbackResult, error) {
	cur, err := m.Status(ctx, name)
	if err != nil {
		return snapshot.RollbackResult{}, err
	}
	if !cur.State.Live() {
		return m.Points.Rollback(ctx, snapshot.TargetRef{Name: name}, ref)
	}
	if !restart {
		return snapshot.RollbackResult{}, storage.Errorf(storage.ErrInUse, "guest %q is %s (driver %s): stop it first, or add --restart to stop it, roll back and start it again", name, cur.State, cur.Driver)
	}
	l, err := m.load(ctx, name)
	if err != nil {
		return snapshot.RollbackResult{}, err
	}
	again := StartOptions{Driver: cur.Driver, Network: lastStart(l).Network}
	return m.Points.RollbackRestart(ctx, name, ref,
		func(ctx context.Context) error {
			return m.locked(ctx, name, func(l loaded) error {
				_, err := m.stop(ctx, l, StopOptions{Timeout: timeout})
				return err
			})
		},
		func(ctx context.Context) error {
			_, err := m.start(ctx, name, again)
			return err
		})
}

// RollbackResume rolls a guest back to a memory point (snapshot create
// --memory) and resumes it from the point's saved memory with the driver
// that saved it: it continues where it was, without a boot. A running
// guest is refused unless restart is set; then it is stopped cleanly
// (within timeout) first, and started again as before should the
// rollback fail and be undone.
func (m *Manager) RollbackResume(ctx context.Context, name, ref string, restart bool, timeout time.Duration) (snapshot.RollbackResult, error) {
	cur, err := m.Status(ctx, name)
	if err != nil {
		return snapshot.RollbackResult{}, err
	}
	if _, err := m.Points.MemoryOf(name, ref); err != nil {
		return snapshot.RollbackResult{}, err
	}
	var stop, again func(context.Context) error
	network := ""
	if cur.State.Live() {
		if !restart {
			return snapshot.RollbackResult{}, storage.Errorf(storage.ErrInUse, "guest %q is %s (driver %s): stop it first, or add --restart to stop it, roll back and resume it from the point's memory", name, cur.State, cur.Driver)
		}
		l, err := m.load(ctx, name)
		if err != nil {
			return snapshot.RollbackResult{}, err
		}
		network = lastStart(l).Network
		stop = func(ctx context.Context) error {
			return m.locked(ctx, name, func(l loaded) error {
				_, err := m.stop(ctx, l, StopOptions{Timeout: timeout})
				return err
			})
		}
		prev := StartOptions{Driver: cur.Driver, Network: network}
		again = func(ctx context.Context) error {
			_, err := m.start(ctx, name, prev)
			return err
		}
	}
	return m.Points.RollbackResume(ctx, name, ref, stop,
		func(ctx context.Context, state snapshot.MemoryState) error {
			_, err := m.start(ctx, name, StartOptions{Driver: state.Driver, Network: network, FromState: state.Path})
			return err
		}, again)
}

// Screenshot writes a running guest's screen as PNG to file (replaced
// whole or not at all).
func (m *Manager) Screenshot(ctx context.Context, name, file string) error {
	_, err := m.act(ctx, name, boot.Screenshot, func(d boot.Driver, g *boot.Guest) error {
		return writeFile(file, func(f *os.File) error { return d.Screenshot(ctx, g, f) })
	})
	return err
}

// Console connects to a running guest's serial console.
func (m *Manager) Console(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	l, err := m.load(ctx, name)
	if err != nil {
		return nil, err
	}
	d, _, err := m.live(ctx, l)
	if err != nil {
		return nil, err
	}
	if err := d.Supports(l.bg.Def, boot.Console); err != nil {
		return nil, err
	}
	return d.Console(ctx, l.bg)
}

// States reports the state of each named guest for guest list; a guest
// whose state cannot be read is "unknown".
func (m *Manager) States(ctx context.Context, names []string) map[string]boot.State {
	out := map[string]boot.State{}
	for _, n := range names {
		s, err := m.Status(ctx, n)
		if err != nil {
			out[n] = "unknown"
			continue
		}
		out[n] = s.State
	}
	return out
}

// Running reports whether the guest with catalog ID id is running under a
// driver strata started it with (for the guest delete guard).
func Running(home, id string) (bool, string) {
	rd := &boot.RunDir{Dir: filepath.Join(home, "run", id)}
	rs, err := rd.ReadState()
	if err != nil || rs == nil {
		return false, ""
	}
	if rs.PID > 0 && !rs.Live() {
		return false, ""
	}
	return true, rs.Driver
}

// writeFile replaces path with what fill writes (atomicfile; not fsynced:
// a screenshot is worth no disk flush). The temporary's name is one nobody
// can have prepared, so a file already there, or a hard link to another,
// is never written through.
func writeFile(path string, fill func(*os.File) error) error {
	err := atomicfile.Replace(path, atomicfile.Options{}, fill)
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe) && pe.Op == "createtemp":
		return storage.Errorf(storage.ErrInvalid, "cannot write %q: %w", path, err)
	case errors.As(err, &le):
		return storage.Errorf(storage.ErrInvalid, "cannot write %q: %v", path, le.Err)
	}
	return err
}

// WaitSerial waits until a line of the guest's serial log matches re and
// returns it; it fails when the guest stops first or timeout passes.
func (m *Manager) WaitSerial(ctx context.Context, name string, re *regexp.Regexp, timeout time.Duration) (string, error) {
	l, err := m.load(ctx, name)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	var st boot.Status
	var log serialReader
	for i := 0; ; i++ {
		// The log is looked at every boot.PollInterval, the guest's state
		// every 50 looks: the state before the log, so that a guest that
		// printed the line and stopped at once has it in the log when it
		// is seen stopped.
		if i%50 == 0 {
			if st, err = m.status(ctx, l); err != nil {
				return "", err
			}
		}
		if line, ok := log.match(l.bg.Run.Path(boot.SerialLog), re); ok {
			return line, nil
		}
		if !st.State.Live() {
			return "", storage.Errorf(storage.ErrPrecondition, "guest %q stopped (%s) before its serial console printed a line matching %q", name, reasonOf(st.LastStop), re)
		}
		if time.Now().After(deadline) {
			return "", storage.Errorf(storage.ErrPrecondition, "guest %q runs, but its serial console printed no line matching %q within %s", name, re, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(boot.PollInterval):
		}
	}
}

// serialReader reads a serial log as it grows: each look reads only what
// was added since the last (a guest may write megabytes a second to its
// serial port), and keeps at most maxSerialLine bytes of a line not yet
// ended.
type serialReader struct {
	off  int64
	line []byte // the last line, not ended yet
	buf  []byte
}

const maxSerialLine = 64 << 10

// match reads what the log gained and returns the first line matching re
// (the unfinished last line included: a prompt has no newline).
func (r *serialReader) match(path string, re *regexp.Regexp) (string, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	if st.Size() < r.off { // a new log (another start), or cut short
		r.off, r.line = 0, nil
	} else if st.Size() == r.off {
		return "", false // nothing new: what there was did not match
	}
	if r.buf == nil {
		r.buf = make([]byte, 256<<10)
	}
	buf := r.buf
	for {
		n, err := f.ReadAt(buf, r.off)
		r.off += int64(n)
		chunk := buf[:n]
		for len(chunk) > 0 {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				r.line = append(r.line, chunk...)
				break
			}
			r.line = append(r.line, chunk[:i]...)
			chunk = chunk[i+1:]
			if line := strings.TrimRight(string(r.line), "\r"); re.MatchString(line) {
				return line, true
			}
			r.line = r.line[:0]
		}
		if len(r.line) > maxSerialLine {
			r.line = append(r.line[:0], r.line[len(r.line)-maxSerialLine:]...)
		}
		if err != nil || n < len(buf) {
			break
		}
	}
	if line := strings.TrimRight(string(r.line), "\r"); len(r.line) > 0 && re.MatchString(line) {
		return line, true
	}
	return "", false
}

func reasonOf(s *boot.StopRecord) string {
	if s == nil {
		return "no reason on record"
	}
	return s.Reason
}

// undefiner is a driver that keeps a guest defined while it is stopped
// (libvirt's persistent domains): a deleted guest is undefined there too.
type undefiner interface {
	Undefine(ctx context.Context, g *boot.Guest) error
}

// Delete forgets a guest (and with withDisks its volumes): refused while
// it runs. Every check that can refuse the delete runs first (it runs,
// it has restore points, a disk is in use or still needed); then its
// definitions in toolstacks that keep one (libvirt) are removed, then
// the guest is deleted from the catalog, then its runtime directory. A
// refused delete so leaves the guest defined everywhere it was; a delete
// that fails after the undefine (the catalog unreachable) says so and
// what to do.
func (m *Manager) Delete(ctx context.Context, name string, withDisks bool) error {
	return m.locked(ctx, name, func(l loaded) error {
		if cur, err := m.status(ctx, l); err != nil {
			return err
		} else if cur.State.Live() {
			return storage.Errorf(storage.ErrInUse, "guest %q is %s (driver %s): stop it first (strata guest stop %s)", name, cur.State, cur.Driver, name)
		}
		var undefined []string
		undefine := func() error {
			// The guest the store is about to delete is the one this
			// command locked, checked and undefines: the name may have
			// become another guest's while it waited for the lock.
			if _, rec, err := m.Reg.Get(ctx, name); err != nil {
				return err
			} else if err := store.SameGuest(rec, l.bg.ID); err != nil {
				return err
			}
			for _, d := range m.Drivers.Drivers() {
				u, ok := d.(undefiner)
				if !ok {
					continue
				}
				if err := d.Available(ctx); errors.Is(err, context.Canceled) {
					return err // interrupted: nothing is deleted
				} else if err != nil {
					log.Warn().Str("guest", name).Str("driver", d.Name()).Err(err).Msg("cannot ask whether the guest is still defined there; undefine it by hand if it is")
					continue
				}
				if err := u.Undefine(ctx, l.bg); err != nil {
					if len(undefined) > 0 {
						return fmt.Errorf("guest %q was undefined from %s but not from %s (%w), and is not deleted: strata still has it; run 'strata guest delete %s' again", name, strings.Join(undefined, ", "), d.Name(), err, name)
					}
					return err
				}
				undefined = append(undefined, d.Name())
			}
			return nil
		}
		if err := m.Reg.DeleteThen(ctx, name, withDisks, undefine); err != nil {
			if len(undefined) > 0 {
				return fmt.Errorf("guest %q was undefined from %s, but strata could not delete it: %w; strata still has the guest: run 'strata guest delete %s' again once that is fixed, or 'strata guest start %s' defines it there again", name, strings.Join(undefined, ", "), err, name, name)
			}
			return err
		}
		if err := os.RemoveAll(l.bg.Run.Dir); err != nil {
			log.Warn().Str("guest", name).Err(err).Msg("runtime directory not removed")
		}
		return nil
	})
}
