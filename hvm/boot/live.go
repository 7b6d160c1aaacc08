package boot

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

	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage"
)

// Live restore points.
//
// A restore point of a running guest covers every disk at one instant:
// the guest is paused (QMP stop, which drains and flushes every disk),
// every disk is captured, and the guest resumes. What "captured" means
// depends on the disk's method:
//
//   - internal: a qcow2 internal snapshot, all of them in one QMP
//     transaction (blockdev-snapshot-internal-sync);
//   - clone: a callback the caller runs during the pause (a reflink of
//     the image file, FICLONE: O(1));
//   - backup: a point-in-time copy into a new file that QEMU makes while
//     the guest runs again (blockdev-backup with sync=full, started in the
//     same transaction: copy-before-write keeps the target at the instant
//     of the pause), so that the pause never lasts as long as a copy.
//
// The pause is measured from QEMU's STOP and RESUME events where the
// monitor passes them (the qemu driver's own socket), else as the wall
// time between the two commands. Resume always happens, with its own
// deadline, whatever failed in between, unless the guest is gone.

// Monitor is a QMP monitor of a running guest's QEMU.
type Monitor interface {
	Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error)
	// Events returns QEMU's events, or nil where the monitor passes none.
	Events() <-chan qmp.Event
	Close() error
}

// LiveMonitor is a driver that can hand out a QMP monitor of a guest it
// runs (Supports LivePoints says for which guests).
type LiveMonitor interface {
	Monitor(ctx context.Context, g *Guest) (Monitor, error)
}

// Live capture methods of one disk.
const (
	LiveInternal = "internal"
	LiveClone    = "clone"
	LiveBackup   = "backup"
)

// LiveDisk is one disk of a live point.
type LiveDisk struct {
	Path   string // the image as the guest has it open
	Method string // LiveInternal, LiveClone or LiveBackup
	// Name: LiveInternal's snapshot name.
	Name string
	// Target: LiveBackup's target file, which must exist with the disk's
	// virtual size (raw); QEMU writes the point into it.
	Target string
	// File, if set, is Target opened for reading and writing: QEMU gets
	// this descriptor (add-fd over the monitor, a FileMonitor) and never
	// opens Target by its path, so the file can stay strata's own, in
	// its root-only directory, while QEMU writes it (liveTarget).
	File *os.File
	// Clone: LiveClone's capture, run while the guest is paused.
	Clone func() error
}

// LiveRequest is a live point to take.
type LiveRequest struct {
	Disks []LiveDisk
	// MaxPause: a pause longer than this fails the point (after the
	// guest resumed); 0 means no bound.
	MaxPause time.Duration
	// ID names the point's block jobs and nodes (unique per point).
	ID string
	// Paused: the guest is paused already (by its admin): it is neither
	// paused nor resumed again, and the point has no pause of its own.
	Paused bool
	// DuringPause, if set, runs while the guest is paused, after the
	// transaction and before the clones.
	DuringPause func()
	// State, if set, receives the guest's RAM and device state, written
	// during the pause after the disks (a memory point: see memory.go);
	// the monitor must be a FileMonitor.
	State *os.File
	// DuringState, if set, runs once QEMU is writing State.
	DuringState func()
	// Freeze, if set, runs before the pause (the guest agent freezes the
	// guest's filesystems: consistency "filesystem"); Thaw runs after
	// the resume, whatever failed in between, with a deadline of its own
	// (see agent.go).
	Freeze, Thaw func(ctx context.Context) error
	// Hold, if set, is the guest's runtime directory, where the point
	// keeps a pause hold while the guest is paused or frozen for it
	// (livehold.go): should this process die, the guest's watcher
	// resumes and thaws the guest.
	Hold *RunDir
}

// LiveResult is what a live point got.
type LiveResult struct {
	Pause time.Duration
	// Consistency: "crash" (the disks as a power cut would leave them;
	// every write the guest issued before the pause is in), "filesystem"
	// (with Freeze: the guest's filesystems were frozen), or "memory"
	// (LiveRequest.State: with the guest's RAM and device state).
	Consistency string
}

// Consistency levels of a point.
const (
	ConsistencyCrash      = "crash"
	ConsistencyFilesystem = "filesystem"
	ConsistencyMemory     = "memory"
)

// ErrPauseTooLong is the error of a live point whose pause went past
// LiveRequest.MaxPause.
var ErrPauseTooLong = errors.New("pause too long")

// blockInfo is what query-block says of one drive.
type blockInfo struct {
	Device   string `json:"device"`
	QDev     string `json:"qdev"`
	Inserted *struct {
		File     string `json:"file"`
		NodeName string `json:"node-name"`
		Image    struct {
			Filename string `json:"filename"`
		} `json:"image"`
	} `json:"inserted"`
}

// Nodes maps each image path a running guest has open to the name of the
// block node QMP commands take (node name, else the drive's name).
func Nodes(ctx context.Context, mon Monitor) (map[string]string, error) {
	raw, err := mon.Execute(ctx, "query-block", nil)
	if err != nil {
		return nil, err
	}
	var bs []blockInfo
	if err := json.Unmarshal(raw, &bs); err != nil {
		return nil, fmt.Errorf("query-block: %w", err)
	}
	out := map[string]string{}
	for _, b := range bs {
		if b.Inserted == nil {
			continue
		}
		name := b.Inserted.NodeName
		if name == "" {
			name = b.Device
		}
		for _, f := range []string{b.Inserted.File, b.Inserted.Image.Filename} {
			if f != "" && !strings.HasPrefix(f, "json:") {
				out[filepath.Clean(f)] = name
			}
		}
	}
	return out, nil
}

// nodeOf returns the node of path, or an error saying the guest does not
// have it open.
func nodeOf(nodes map[string]string, path string) (string, error) {
	if n, ok := nodes[filepath.Clean(path)]; ok {
		return n, nil
	}
	return "", storage.Errorf(storage.ErrPrecondition, "the running guest does not have %s open (it runs with other disks than its definition names): stop it and start it again, then take the point", path)
}

// TakeLive takes a live point through mon (see the package's notes on
// live restore points). On error, what it made inside QEMU (internal
// snapshots, backup jobs and their nodes) may be left for the caller to
// remove: the caller undoes the point as a whole.
func TakeLive(ctx context.Context, mon Monitor, req LiveRequest) (LiveResult, error) {
	res := LiveResult{Consistency: ConsistencyCrash}
	if req.State != nil {
		if req.Paused {
			return res, storage.Errorf(storage.ErrPrecondition, "the guest is paused: a memory point resumes the guest once its memory is written (QEMU keeps its disks inactive until then), so resume it first (strata guest resume) or leave --memory out")
		}
		res.Consistency = ConsistencyMemory
	}
	nodes, err := Nodes(ctx, mon)
	if err != nil {
		return res, err
	}
	lr := &liveRun{mon: mon, req: req}
	defer lr.cleanup(ctx)
	if err := lr.prepare(ctx, nodes); err != nil {
		return res, err
	}
	hold, thaw, err := holdAndFreeze(ctx, req)
	if err != nil {
		return res, err
	}
	during := pauseFor
	if req.Paused {
		during = func(_ context.Context, _ Monitor, _ time.Duration, fn func(func() time.Duration) error) (time.Duration, error) {
			return 0, fn(func() time.Duration { return time.Hour })
		}
	}
	pause, err := during(ctx, mon, req.MaxPause, func(left func() time.Duration) error {
		return lr.capture(ctx, left)
	})
	err = release(hold, thaw, req.Freeze != nil, err)
	res.Pause = pause
	if err != nil {
		return res, err
	}
	if req.Freeze != nil {
		res.Consistency = ConsistencyFilesystem
	}
	if req.MaxPause > 0 && pause > req.MaxPause {
		return res, fmt.Errorf("%w: the guest was paused %s, more than --max-pause %s", ErrPauseTooLong, pause.Round(time.Millisecond), req.MaxPause)
	}
	if err := waitJobs(ctx, mon, lr.jobs); err != nil {
		return res, err
	}
	lr.jobs = nil
	return res, nil
}

// bestEffort runs a QMP command whose failure leaves nothing that
// matters (why says what covers it: QEMU's exit, the next step, an
// undo); a failure is logged at debug with that reason.
func bestEffort(ctx context.Context, mon Monitor, why, cmd string, args any) {
	if _, err := mon.Execute(ctx, cmd, args); err != nil {
		log.Debug().Err(err).Str("command", cmd).Interface("args", args).Msg("best effort, " + why)
	}
}

// liveRun is one TakeLive: the transaction's actions, and what it made
// inside QEMU for backups (target nodes, descriptor sets, jobs) that
// cleanup takes out again. jobs is emptied once they have ended well or
// never began.
type liveRun struct {
	mon     Monitor
	req     LiveRequest
	actions []map[string]any
	targets []string
	jobs    []string
	fdsets  []int64
}

// prepare plans one transaction action per disk (an internal snapshot or
// a backup job; clones run during the pause) and opens each backup's
// target in QEMU.
func (lr *liveRun) prepare(ctx context.Context, nodes map[string]string) error {
	for i, d := range lr.req.Disks {
		node, err := nodeOf(nodes, d.Path)
		if err != nil {
			return err
		}
		switch d.Method {
		case LiveInternal:
			lr.actions = append(lr.actions, map[string]any{"type": "blockdev-snapshot-internal-sync", "data": map[string]any{"device": node, "name": d.Name}})
		case LiveBackup:
			if err := lr.addBackup(ctx, i, d, node); err != nil {
				return err
			}
		case LiveClone:
		default:
			return fmt.Errorf("live point: unknown method %q", d.Method)
		}
	}
	return nil
}

// addBackup opens disk i's backup target as a node of QEMU's and plans
// its backup job.
func (lr *liveRun) addBackup(ctx context.Context, i int, d LiveDisk, node string) error {
	target := fmt.Sprintf("strata-bk-%s-%d", lr.req.ID, i)
	// Zeros become holes in the target: the copy stays as
	// sparse as the disk.
	filename, fdset, err := liveTarget(ctx, lr.mon, d, target)
	if err != nil {
		return err
	}
	if fdset >= 0 {
		lr.fdsets = append(lr.fdsets, fdset)
	}
	if _, err := lr.mon.Execute(ctx, "blockdev-add", map[string]any{"driver": "raw", "node-name": target,
		"discard": "unmap", "detect-zeroes": "unmap",
		"file": map[string]any{"driver": "file", "filename": filename, "discard": "unmap"}}); err != nil {
		return fmt.Errorf("open the point's file %s in QEMU: %w", d.Target, err)
	}
	lr.targets = append(lr.targets, target)
	job := fmt.Sprintf("strata-%s-%d", lr.req.ID, i)
	// No copy offload (copy_file_range): where the filesystem
	// cannot share blocks it fills the holes in.
	lr.actions = append(lr.actions, map[string]any{"type": "blockdev-backup", "data": map[string]any{"job-id": job, "device": node, "target": target, "sync": "full", "auto-dismiss": false,
		"x-perf": map[string]any{"use-copy-range": false}}})
	lr.jobs = append(lr.jobs, job)
	return nil
}

// capture is the work inside the pause: the transaction, DuringPause,
// the clones, and for a memory point the guest's state (after the
// copies, which must end first). left says how much of MaxPause is left.
func (lr *liveRun) capture(ctx context.Context, left func() time.Duration) error {
	req := lr.req
	if len(lr.actions) > 0 {
		// Nothing in the pause waits on QEMU for ever: a QEMU that stops
		// answering ends the point (and the guest is resumed if it can be).
		step := 30 * time.Second
		if req.MaxPause > 0 {
			step = req.MaxPause + 5*time.Second
		}
		tctx, cancel := context.WithTimeout(ctx, step)
		defer cancel()
		if _, err := lr.mon.Execute(tctx, "transaction", map[string]any{"actions": lr.actions}); err != nil {
			lr.jobs = nil // a failed transaction started none
			return err
		}
	}
	if req.DuringPause != nil {
		req.DuringPause()
	}
	for _, d := range req.Disks {
		if d.Method != LiveClone {
			continue
		}
		if req.MaxPause > 0 && left() <= 0 {
			return ErrPauseTooLong
		}
		if err := d.Clone(); err != nil {
			return err
		}
	}
	if req.State == nil {
		return nil
	}
	// QEMU ends a migration by deactivating every disk, which
	// a running copy forbids: the copies finish first.
	if err := finishCopies(ctx, lr.mon, lr.jobs, left, req.MaxPause > 0); err != nil {
		return err
	}
	lr.jobs = nil
	return saveState(ctx, lr.mon, req.State, left, req.MaxPause > 0, req.DuringState)
}

// cleanup takes the backup targets out of QEMU once their jobs are over
// (or never began): the point's file is then the caller's alone. It is
// best effort, each step logged when it fails: a job, node or descriptor
// set left behind holds the point's file open until QEMU exits, and the
// caller undoes a failed point as a whole (AbandonLive finds them).
func (lr *liveRun) cleanup(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	const why = "left to QEMU's exit or the point's undo"
	exec := func(cmd string, args map[string]any) { bestEffort(dctx, lr.mon, why, cmd, args) }
	for _, j := range lr.jobs {
		exec("job-cancel", map[string]any{"id": j})
		exec("job-dismiss", map[string]any{"id": j})
	}
	for _, n := range lr.targets {
		exec("blockdev-del", map[string]any{"node-name": n})
	}
	// QEMU closes a set's descriptors once removed and unused.
	for _, id := range lr.fdsets {
		exec("remove-fd", map[string]any{"fdset-id": id})
	}
}

// holdAndFreeze records the pause hold, freezes the guest's filesystems
// (req.Freeze) and records the hold as the pause will leave the guest.
// On error nothing is held or frozen, unless the error says the guest
// could not be thawed: then the hold stays for the watcher to try again
// once this process ends.
func holdAndFreeze(ctx context.Context, req LiveRequest) (*holder, func() error, error) {
	hold, err := newHolder(req)
	if err != nil {
		return nil, nil, err
	}
	frozen := req.Freeze != nil
	if err := hold.set(false, frozen); err != nil {
		return nil, nil, err
	}
	thaw, err := freezeFor(ctx, req)
	if err != nil {
		// freezeFor thawed (or its error says it could not).
		if !errors.Is(err, errNotThawed) {
			hold.keep(false, false)
		}
		return nil, nil, err
	}
	if err := hold.set(!req.Paused, frozen); err != nil {
		err = errors.Join(err, thaw())
		if !errors.Is(err, errNotThawed) {
			hold.keep(false, false)
		}
		return nil, nil, err
	}
	return hold, thaw, nil
}

// release thaws the guest after the pause (err is the pause's error) and
// records what the point leaves held: a guest left paused (its resume
// failed) or frozen keeps its hold, for the watcher to resume and thaw
// once this process has ended.
func release(hold *holder, thaw func() error, frozen bool, err error) error {
	notResumed := errors.Is(err, errNotResumed)
	hold.keep(notResumed, frozen)
	terr := thaw()
	hold.keep(notResumed, frozen && errors.Is(terr, errNotThawed))
	return errors.Join(err, terr)
}

// errNotResumed is the error of a pause whose resume failed while QEMU
// still runs: the guest may be left paused.
var errNotResumed = errors.New("resume the guest")

// liveTarget returns the filename QEMU opens a backup target by: with
// d.File, a descriptor set of its own (add-fd, "/dev/fdset/N"; the set's
// id returned for remove-fd; its opaque is the target's node name, so
// that AbandonLive finds it), else Target's path (fdset -1).
func liveTarget(ctx context.Context, mon Monitor, d LiveDisk, node string) (string, int64, error) {
	if d.File == nil {
		return d.Target, -1, nil
	}
	fm, ok := mon.(FileMonitor)
	if !ok {
		return "", -1, storage.Errorf(storage.ErrNotSupported, "this guest's monitor cannot pass a file to QEMU, so the point's copy %s cannot be handed over as one", d.Target)
	}
	raw, err := fm.ExecuteFile(ctx, "add-fd", map[string]any{"opaque": node}, d.File)
	if err != nil {
		return "", -1, fmt.Errorf("pass the point's file %s to QEMU: %w", d.Target, err)
	}
	var fi struct {
		FDSet int64 `json:"fdset-id"`
	}
	if err := json.Unmarshal(raw, &fi); err != nil {
		return "", -1, fmt.Errorf("add-fd: %w", err)
	}
	return fmt.Sprintf("/dev/fdset/%d", fi.FDSet), fi.FDSet, nil
}

// pauseFor pauses the guest, runs fn, and resumes it whatever fn did
// (unless QEMU is gone); it returns how long the guest was paused.
func pauseFor(ctx context.Context, mon Monitor, max time.Duration, fn func(left func() time.Duration) error) (time.Duration, error) {
	events := mon.Events()
	drain(events)
	before := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := mon.Execute(sctx, "stop", nil); err != nil {
		if !errors.Is(err, qmp.ErrClosed) {
			// It may pause all the same, later: resume it then.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			bestEffort(rctx, mon, "a guest that did not pause needs no resume", "cont", nil)
		}
		return 0, fmt.Errorf("pause the guest: %w", err)
	}
	stopped := time.Now()
	left := func() time.Duration { return max - time.Since(before) }
	ferr := fn(left)
	// Resume with a deadline of its own: an interrupted command must
	// still leave the guest running.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, rerr := mon.Execute(rctx, "cont", nil)
	resumed := time.Now()
	pause := resumed.Sub(stopped)
	if rerr != nil {
		if errors.Is(rerr, qmp.ErrClosed) {
			return pause, errors.Join(ferr, fmt.Errorf("the guest's QEMU went away during the point: %w", rerr))
		}
		return pause, errors.Join(ferr, fmt.Errorf("%w (it is paused: strata guest resume): %w", errNotResumed, rerr))
	}
	if p, ok := eventPause(rctx, events); ok {
		pause = p
	} else {
		// Without events: the whole round trip of both commands bounds
		// the pause from above.
		pause = resumed.Sub(before)
	}
	return pause, ferr
}

// drain empties an event channel of what came before.
func drain(ch <-chan qmp.Event) {
	for ch != nil {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// eventPause reads the STOP and RESUME events the pause caused and
// returns the time between them (QEMU's own clock, microseconds).
func eventPause(ctx context.Context, ch <-chan qmp.Event) (time.Duration, bool) {
	if ch == nil {
		return 0, false
	}
	var stop time.Time
	wait := time.NewTimer(time.Second)
	defer wait.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return 0, false
			}
			switch ev.Name {
			case "STOP":
				stop = ev.Time
			case "RESUME":
				if stop.IsZero() || ev.Time.IsZero() {
					return 0, false
				}
				return ev.Time.Sub(stop), true
			}
		case <-wait.C:
			return 0, false
		case <-ctx.Done():
			return 0, false
		}
	}
}

// jobInfo is what query-jobs says of one job.
type jobInfo struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

// waitJobs waits until every job has concluded, and dismisses them.
func waitJobs(ctx context.Context, mon Monitor, jobs []string) error {
	for len(jobs) > 0 {
		raw, err := mon.Execute(ctx, "query-jobs", nil)
		if err != nil {
			return fmt.Errorf("the point's copy: %w", err)
		}
		var js []jobInfo
		if err := json.Unmarshal(raw, &js); err != nil {
			return fmt.Errorf("query-jobs: %w", err)
		}
		var left []string
		for _, id := range jobs {
			i := -1
			for k := range js {
				if js[k].ID == id {
					i = k
				}
			}
			switch {
			case i < 0:
				return fmt.Errorf("the point's copy (job %s) vanished from QEMU", id)
			case js[i].Status == "concluded":
				bestEffort(ctx, mon, "a concluded job left undismissed is removed by the point's cleanup", "job-dismiss", map[string]any{"id": id})
				if js[i].Error != "" {
					return fmt.Errorf("the point's copy failed: %s", js[i].Error)
				}
			default:
				left = append(left, id)
			}
		}
		jobs = left
		if len(jobs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// DeleteLiveInternal deletes the internal snapshot name of the image at
// path, which the running guest has open; a snapshot that is not there
// is not an error.
func DeleteLiveInternal(ctx context.Context, mon Monitor, path, name string) error {
	// An undone point may never have made it (refused before the
	// pause); QEMU's "does not exist" wording is not something to match.
	if ok, err := LiveInternalExists(ctx, mon, path, name); err != nil || !ok {
		return err
	}
	nodes, err := Nodes(ctx, mon)
	if err != nil {
		return err
	}
	node, err := nodeOf(nodes, path)
	if err != nil {
		return err
	}
	_, err = mon.Execute(ctx, "blockdev-snapshot-delete-internal-sync", map[string]any{"device": node, "name": name})
	var qe *qmp.Error
	if errors.As(err, &qe) && strings.Contains(qe.Desc, "not found") {
		return nil
	}
	return err
}

// LiveInternalExists tells whether the image at path, which the running
// guest has open, has the internal snapshot name.
func LiveInternalExists(ctx context.Context, mon Monitor, path, name string) (bool, error) {
	raw, err := mon.Execute(ctx, "query-block", nil)
	if err != nil {
		return false, err
	}
	var bs []struct {
		Inserted *struct {
			File  string `json:"file"`
			Image struct {
				Filename  string `json:"filename"`
				Snapshots []struct {
					Name string `json:"name"`
				} `json:"snapshots"`
			} `json:"image"`
		} `json:"inserted"`
	}
	if err := json.Unmarshal(raw, &bs); err != nil {
		return false, err
	}
	for _, b := range bs {
		if b.Inserted == nil || (filepath.Clean(b.Inserted.File) != filepath.Clean(path) && filepath.Clean(b.Inserted.Image.Filename) != filepath.Clean(path)) {
			continue
		}
		for _, s := range b.Inserted.Image.Snapshots {
			if s.Name == name {
				return true, nil
			}
		}
		return false, nil
	}
	_, err = nodeOf(nil, path)
	return false, err
}

// AbandonLive undoes what an interrupted live point (id as in
// LiveRequest.ID) left inside a running guest's QEMU: its block jobs are
// cancelled and dismissed, its backup target nodes deleted and their
// descriptor sets removed, a memory
// point's migration cancelled (one that completed leaves QEMU in
// postmigrate, which counts as paused here), and, with
// resume (the point paused a running guest), a guest left paused runs
// again. Best effort: what is not there is skipped.
func AbandonLive(ctx context.Context, mon Monitor, id string, resume bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	const why = "AbandonLive is best effort: QEMU drops what is left when it exits"
	// query runs a query; what of its answer decodes is used.
	query := func(cmd string, args any, v any) bool {
		raw, err := mon.Execute(ctx, cmd, args)
		if err != nil {
			log.Debug().Err(err).Str("command", cmd).Msg(why)
			return false
		}
		if err := json.Unmarshal(raw, v); err != nil {
			log.Debug().Err(err).Str("command", cmd).Msg(why + " (its answer decoded in part)")
		}
		return true
	}
	var js []jobInfo
	if query("query-jobs", nil, &js) {
		for _, j := range js {
			if strings.HasPrefix(j.ID, "strata-"+id+"-") {
				bestEffort(ctx, mon, why, "job-cancel", map[string]any{"id": j.ID, "force": true})
				bestEffort(ctx, mon, why, "job-dismiss", map[string]any{"id": j.ID})
			}
		}
	}
	var ns []struct {
		NodeName string `json:"node-name"`
	}
	if query("query-named-block-nodes", map[string]any{"flat": true}, &ns) {
		for _, n := range ns {
			if strings.HasPrefix(n.NodeName, "strata-bk-"+id+"-") {
				bestEffort(ctx, mon, why, "blockdev-del", map[string]any{"node-name": n.NodeName})
			}
		}
	}
	var sets []struct {
		ID  int64 `json:"fdset-id"`
		FDs []struct {
			Opaque string `json:"opaque"`
		} `json:"fds"`
	}
	if query("query-fdsets", nil, &sets) {
		for _, set := range sets {
			for _, fd := range set.FDs {
				if strings.HasPrefix(fd.Opaque, "strata-bk-"+id+"-") {
					bestEffort(ctx, mon, why, "remove-fd", map[string]any{"fdset-id": set.ID})
					break
				}
			}
		}
	}
	abandonMemory(ctx, mon)
	// postmigrate: a memory point's migration completed.
	var st qmp.Status
	if resume && query("query-status", nil, &st) && (st.Status == "paused" || st.Status == "postmigrate") {
		bestEffort(ctx, mon, why+" (the guest stays paused: strata guest resume)", "cont", nil)
	}
}
