package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/run"
)

// journalEntry records a rollback under way. Its direction is what
// recovery does: finish the rollback, or (Undo) put every disk back as the
// pre-rollback point has it. A rollback that failed or was interrupted is
// marked Undo before anything is put back, so no later command ever
// applies a rollback strata reported as failed.
type journalEntry struct {
	Op      string    `json:"op"` // "rollback"
	To      int       `json:"to"`
	Pre     int       `json:"pre"` // the pre-rollback point
	Started time.Time `json:"started"`
	Undo    bool      `json:"undo,omitempty"`
	// The states of each disk's image (by volume ID) that strata itself
	// produced: Before, when the pre-rollback point was complete; After,
	// restored to To; Undone, put back to Pre. An image found in any
	// other state was written by someone else since the interruption (a
	// guest started by hand): recovery keeps it as a point first.
	Before map[string]fingerprint `json:"before,omitempty"`
	After  map[string]fingerprint `json:"after,omitempty"`
	Undone map[string]fingerprint `json:"undone,omitempty"`
}

// RollbackResult says where a rollback went and how to undo it.
type RollbackResult struct {
	To          Point `json:"to"`
	PreRollback Point `json:"pre_rollback"`
}

// Rollback returns a target to a restore point — any point, not only the
// newest. The current state is first saved as a pre-rollback point, every
// other point survives, and a guest's definition is restored with its
// disks. A disk in use (a running guest, a tool holding it) is refused.
func (m *Manager) Rollback(ctx context.Context, r TargetRef, ref string) (RollbackResult, error) {
	var res RollbackResult
	err := m.withTarget(ctx, r, func(t Target) (err error) {
		res, err = m.rollback(ctx, t, ref)
		return err
	})
	return res, err
}

// RollbackRestart rolls a running guest back: with the guest's locks held
// throughout, stop stops it (cleanly), the rollback runs, and start starts
// it again. start also runs when the rollback failed and was undone in
// full (the guest comes back as it was), never while a rollback is left
// half done: a crash at any step leaves the guest stopped, and the next
// command that takes its locks (a start among them) first finishes or
// undoes the rollback.
func (m *Manager) RollbackRestart(ctx context.Context, name, ref string, stop, start func(context.Context) error) (RollbackResult, error) {
	return m.rollbackAround(ctx, name, ref, nil, stop, start, start, "did not start again: %w")
}

// rollbackAround rolls the guest called name back to ref with its locks
// held throughout: check (if set) vets the point, stop (if set) stops the
// guest, the rollback runs, and start starts it. When the rollback failed
// and was undone in full, again (if set) starts the guest as it was;
// never while a rollback is left half done. failed words a failed start
// (one %w).
func (m *Manager) rollbackAround(ctx context.Context, name, ref string, check func(Target, Point) error, stop, start, again func(context.Context) error, failed string) (RollbackResult, error) {
	var res RollbackResult
	err := m.withTarget(ctx, TargetRef{Name: name}, func(t Target) error {
		p, err := m.point(t, ref)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(t, p); err != nil {
				return err
			}
		}
		if stop != nil {
			if err := stop(ctx); err != nil {
				return err
			}
		}
		crashpoint("rollback:guest-stopped")
		res, err = m.rollback(ctx, t, ref)
		if err != nil {
			if _, pending, jerr := m.journal(t); again != nil && jerr == nil && !pending && ctx.Err() == nil {
				if serr := again(ctx); serr != nil {
					return fmt.Errorf("%w (and the guest did not start again: %v)", err, serr)
				}
			}
			return err
		}
		crashpoint("rollback:before-start")
		if err := start(ctx); err != nil {
			return fmt.Errorf("rolled back to %d (pre-rollback point %d), but the guest "+failed, res.To.ID, res.PreRollback.ID, err)
		}
		return nil
	})
	return res, err
}

// WithGuest runs fn with the locks of the guest called name and its disks
// held, after finishing or undoing any operation a dead process left on
// it: a guest started inside fn never runs on a half-restored disk.
func (m *Manager) WithGuest(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	return m.withTarget(ctx, TargetRef{Name: name}, func(Target) error { return fn(ctx) })
}

// rollback rolls t back to its point ref, t's locks held: planned from
// the catalog (planRollback), the disks held from guests, each driver's
// check that the restore can succeed (checkRestores), the pre-rollback
// point with the journal (takePreRollback), then the disks.
func (m *Manager) rollback(ctx context.Context, t Target, ref string) (RollbackResult, error) {
	to, err := m.point(t, ref)
	if err != nil {
		return RollbackResult{}, err
	}
	var rp rollbackPlan
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { rp, err = planRollback(tx, t, to); return err }); err != nil {
		return RollbackResult{}, err
	}
	// Checked, and kept so until the rollback is done: a guest started
	// by hand meanwhile cannot open a disk halfway through.
	run.Warm()
	ctx, release, err := m.hold(ctx, rp.touched)
	if err != nil {
		return RollbackResult{}, err
	}
	defer release()
	// Meanwhile the disks whose points keep their fingerprint are
	// fingerprinted for the journal (early: see earlyFingerprints).
	early := m.earlyFingerprints(rp.touched)
	defer early() // no reader outlives a refusal
	replaced, err := m.checkRestores(ctx, t, to, rp.restored)
	if err != nil {
		return RollbackResult{}, err
	}
	pre, err := m.takePreRollback(ctx, t, to, rp, replaced, early())
	if err != nil {
		return RollbackResult{}, err
	}
	crashpoint("rollback:pre-point")
	if err := m.completeRollback(ctx, t, to, pre); err != nil {
		return RollbackResult{}, err
	}
	log.Debug().Str("target", t.String()).Int("to", to.ID).Int("pre_rollback", pre.ID).Msgf("rolled back; undo with a rollback to point %d", pre.ID)
	return RollbackResult{To: to, PreRollback: pre}, nil
}

// rollbackPlan is what a rollback writes, planned from the catalog.
type rollbackPlan struct {
	touched  []storage.Volume // every disk the rollback writes: the target's now and the point's
	restored []storage.Volume // the point's disks, in its order
	also     []string         // their IDs: the pre-rollback point covers them too
}

// planRollback plans a rollback of t to point to and refuses, before any
// disk is touched, one the catalog as it is now cannot take: a volume of
// the point that is gone, that overlays read from (rolling it back under
// them would silently change what they hold), or that is now another
// guest's disk; a definition of the point that no longer fits.
func planRollback(tx *catalog.Tx, t Target, to Point) (rollbackPlan, error) {
	var rp rollbackPlan
	cur, _, err := volumesOf(tx, t)
	if err != nil {
		return rp, err
	}
	rp.touched = append(rp.touched, cur...)
	for _, d := range to.Disks {
		v, err := tx.VolumeByID(d.VolumeID)
		if err != nil {
			return rp, storage.Errorf(storage.ErrPrecondition, "restore point %d of %s includes volume %q, which no longer exists", to.ID, t, d.Volume)
		}
		rp.restored = append(rp.restored, v)
		rp.also = append(rp.also, v.ID)
		rp.touched = append(rp.touched, v)
		deps, err := tx.Dependants(v.Path)
		if err != nil {
			return rp, err
		}
		if len(deps) > 0 {
			return rp, storage.Errorf(storage.ErrInUse, "volume %q is the backing file of %s: rolling it back would corrupt them; delete or flatten them first", v.Name, storage.QuoteList(deps))
		}
		if t.Kind() != catalog.KindGuest {
			continue
		}
		users, err := tx.GuestsUsing(v.ID)
		if err != nil {
			return rp, err
		}
		for _, u := range users {
			if u != t.Name {
				return rp, storage.Errorf(storage.ErrInUse, "restore point %d of %s includes volume %q, which is now a disk of guest %q: rolling it back would overwrite that guest's disk; remove it from %q first", to.ID, t, v.Name, u, u)
			}
		}
	}
	if to.Guest != nil {
		// What the guest record will become must fit the catalog as it
		// is now.
		if _, err := restoredGuest(tx, to); err != nil {
			return rp, err
		}
	}
	return rp, nil
}

// checkRestores has each driver refuse now, not halfway, a restore that
// cannot succeed (no space for a copy) or would lose data. It returns the
// disks whose restore puts a new volume under the live name: each keeps
// its current data as the pre-rollback point's, moved there when the
// restored volume takes its name (one copy instead of two, and never data
// shared by the live name and a point).
func (m *Manager) checkRestores(ctx context.Context, t Target, to Point, restored []storage.Volume) (replaced map[string]bool, err error) {
	replaced = map[string]bool{}
	for i, d := range to.Disks {
		v := restored[i]
		drv, pool, err := m.driverOf(v)
		if err != nil {
			return nil, err
		}
		if err := drv.CheckRestore(ctx, pool, v, d.PointRef); err != nil {
			return nil, fmt.Errorf("restore point %d of %s: %w", to.ID, t, err)
		}
		if _, pm, err := m.pointDriver(d); err == nil && pm.ReplacesLive {
			replaced[d.VolumeID] = true
		}
	}
	return replaced, nil
}

// preRollbackOptions describe the point a rollback to to takes first:
// a pre-rollback point, or for snapshot run's failed command (ctx says
// so) the post point of its pre point (run.go).
func preRollbackOptions(ctx context.Context, to Point) CreateOptions {
	if po, ok := ctx.Value(postOfKey{}).(postOf); ok && po.pre == to.ID && to.Kind == KindPre {
		return CreateOptions{Kind: KindPost, PreID: po.pre, Description: po.description}
	}
	return CreateOptions{Kind: KindPreRollback, Description: fmt.Sprintf("before rollback to %d", to.ID)}
}

// takePreRollback takes the point that undoes a rollback to to, and
// journals the rollback in the transaction that records it (then again,
// with the disks' fingerprints before (read early where the method keeps
// them), when it is ready).
func (m *Manager) takePreRollback(ctx context.Context, t Target, to Point, rp rollbackPlan, replaced map[string]bool, before map[string]fingerprint) (Point, error) {
	o := preRollbackOptions(ctx, to)
	o.replaced, o.also, o.inUseChecked = replaced, rp.also, true
	o.onReady = func(tx *catalog.Tx, p Point) error {
		j := journalEntry{Op: "rollback", To: to.ID, Pre: p.ID, Started: m.Now()}
		if err := m.fingerprintsInto(tx, p, &j, before); err != nil {
			return err
		}
		return tx.Put(bJournal, t.Key.String(), j)
	}
	pre, err := m.create(ctx, t, o, func(tx *catalog.Tx, p Point) error {
		return tx.Put(bJournal, t.Key.String(), journalEntry{Op: "rollback", To: to.ID, Pre: p.ID, Started: m.Now()})
	})
	if err != nil {
		// create undid its point; the journal entry made with it goes too.
		// If it cannot, it stays for the next command on the target (or
		// doctor), whose recovery finds the pre-rollback point gone and
		// closes it: nothing was rolled back.
		if jerr := m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.Delete(bJournal, t.Key.String()) }); jerr != nil {
			log.Warn().Err(jerr).Str("target", t.String()).Msg("the journal entry of the failed rollback stays until the next command on the target closes it")
		}
		return Point{}, err
	}
	return pre, nil
}

// checkNotInUse refuses if anything holds the image of any of vols (one
// look at the host for all of them).
func (m *Manager) checkNotInUse(ctx context.Context, vols []storage.Volume) error {
	return m.st.InUse.CheckAll(ctx, m.images(vols))
}

// hold keeps guests out of the images of vols (inuse.Hold) and refuses if
// anything holds one already; the returned ctx carries the hold until
// release.
func (m *Manager) hold(ctx context.Context, vols []storage.Volume) (context.Context, func(), error) {
	return m.st.InUse.HoldAll(ctx, m.images(vols))
}

// images are the paths a guest could open vols under (each volume once).
func (m *Manager) images(vols []storage.Volume) []inuse.Image {
	return imagesOf(vols, func(i int) []string { return m.locations(vols[i]) })
}

func imagesOf(vols []storage.Volume, locations func(i int) []string) []inuse.Image {
	seen := map[string]bool{}
	var imgs []inuse.Image
	for i, v := range vols {
		if !seen[v.ID] {
			seen[v.ID] = true
			for _, p := range locations(i) {
				imgs = append(imgs, inuse.Image{What: fmt.Sprintf("volume %q", v.Name), Path: p})
			}
		}
	}
	return imgs
}

// completeRollback finishes a rollback to to; if that fails, or strata is
// told to stop (a signal cancels ctx), it marks the journal for undoing
// and puts every disk back as the pre-rollback point has it, so a guest's
// disks roll back all or none.
func (m *Manager) completeRollback(ctx context.Context, t Target, to, pre Point) error {
	err := m.finishRollback(ctx, t, to, pre)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		// A signal to every process of strata's group or cgroup (a
		// service stop) also stopped the tool that failed.
		err = fmt.Errorf("%w: %w", interrupted(ctx), err)
	}
	ctx = context.WithoutCancel(ctx)
	if jerr := m.updateJournal(t, func(j *journalEntry) { j.Undo = true }); jerr != nil {
		return fmt.Errorf("%w; the journal could not be marked for undoing: %v (run strata doctor --repair)", err, jerr)
	}
	kept, uerr := m.undoRollback(ctx, t, pre)
	if uerr != nil {
		return fmt.Errorf("%w; putting the disks back as they were also failed: %v (strata doctor --repair finishes putting them back; it never applies this rollback)", err, uerr)
	}
	if kept {
		return fmt.Errorf("%w; nothing was rolled back: every disk is as it was (also kept as restore point %d)", err, pre.ID)
	}
	return fmt.Errorf("%w; nothing was rolled back: every disk is as it was", err)
}

// interrupted is the error of an operation stopped by a signal: it wraps
// context.Canceled (main maps it to its exit code) and says which signal.
func interrupted(ctx context.Context) error {
	return fmt.Errorf("interrupted (%v): %w", context.Cause(ctx), ctx.Err())
}

func (m *Manager) journal(t Target) (journalEntry, bool, error) {
	var j journalEntry
	var ok bool
	err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { ok, err = tx.Get(bJournal, t.Key.String(), &j); return err })
	return j, ok, err
}

func (m *Manager) updateJournal(t Target, fn func(j *journalEntry)) error {
	return m.st.Catalog.Update(func(tx *catalog.Tx) error {
		var j journalEntry
		ok, err := tx.Get(bJournal, t.Key.String(), &j)
		if err != nil || !ok {
			return err
		}
		fn(&j)
		return tx.Put(bJournal, t.Key.String(), j)
	})
}

func (m *Manager) volumeByID(id string) (storage.Volume, error) {
	var v storage.Volume
	err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.VolumeByID(id); return err })
	return v, err
}

func diskOf(p Point, volumeID string) (DiskPoint, bool) {
	for _, d := range p.Disks {
		if d.VolumeID == volumeID {
			return d, true
		}
	}
	return DiskPoint{}, false
}

// finishRollback restores every disk of to, then the guest record, and
// closes the journal. A disk already restored (its image as strata left
// it) is skipped, so recovery repeats it safely.
func (m *Manager) finishRollback(ctx context.Context, t Target, to, pre Point) error {
	j, _, err := m.journal(t)
	if err != nil {
		return err
	}
	for i, d := range to.Disks {
		if ctx.Err() != nil {
			return interrupted(ctx)
		}
		v, err := m.volumeByID(d.VolumeID)
		if err != nil {
			return err
		}
		// Only a disk the journal says was restored can be done already
		// (a fingerprint can cost a round trip to a cluster).
		if after, done := j.After[v.ID]; done {
			if fp, ok, err := m.fingerprint(v); err != nil {
				return err
			} else if ok && fp == after {
				continue
			}
		}
		if err := m.forward(ctx, t, j, to, pre, v, d); err != nil {
			return err
		}
		crashpoint(fmt.Sprintf("rollback:disk-%d", i+1))
	}
	return m.st.Catalog.Update(func(tx *catalog.Tx) error {
		if to.Guest != nil {
			g, err := restoredGuest(tx, to)
			if err != nil {
				return err
			}
			if err := tx.PutGuest(g); err != nil {
				return err
			}
		}
		return tx.Delete(bJournal, t.Key.String())
	})
}

// forward restores one disk to point to, noting in the journal the state
// it leaves the image in before the image takes the live name.
func (m *Manager) forward(ctx context.Context, t Target, j journalEntry, to, pre Point, v storage.Volume, d DiskPoint) error {
	drv, pool, err := m.driverOf(v)
	if err != nil {
		return err
	}
	step := storage.RestoreStep{Progress: m.Progress, Record: m.recorder(t, v.ID, false)}
	if fp, ok := j.After[v.ID]; ok {
		step.Done = &fp
	}
	if pd, ok := diskOf(pre, v.ID); ok && pd.Moved {
		step.MoveTo = pd.Ref
	}
	if err := drv.RestorePoint(ctx, pool, v, d.PointRef, step); err != nil {
		return fmt.Errorf("roll back volume %q to restore point %d: %w", v.Name, to.ID, err)
	}
	return nil
}

// back puts one disk back as the pre-rollback point pre has it. A disk
// whose data the point took by moving it gets it back by a move (the
// driver's PutBack: O(1), no space needed, so a rollback that failed for
// lack of space can always be undone); moved tells that the point no
// longer holds that disk.
func (m *Manager) back(ctx context.Context, t Target, pre Point, v storage.Volume, d DiskPoint) (moved bool, err error) {
	drv, pool, err := m.driverOf(v)
	if err != nil {
		return d.Moved, err
	}
	if d.Moved {
		return true, drv.PutBack(ctx, pool, v, d.PointRef)
	}
	if err := drv.RestorePoint(ctx, pool, v, d.PointRef, storage.RestoreStep{Progress: m.Progress, Record: m.recorder(t, v.ID, true)}); err != nil {
		return false, fmt.Errorf("put volume %q back as restore point %d has it: %w", v.Name, pre.ID, err)
	}
	return false, nil
}

// recorder notes in t's journal the state a restore step leaves a
// volume's image in (After when rolling forward, Undone when undoing).
func (m *Manager) recorder(t Target, volumeID string, undo bool) func(fingerprint) error {
	return func(fp fingerprint) error {
		return m.updateJournal(t, func(j *journalEntry) {
			at := &j.After
			if undo {
				at = &j.Undone
			}
			if *at == nil {
				*at = map[string]fingerprint{}
			}
			(*at)[volumeID] = fp
		})
	}
}

// undoRollback puts every disk back as the pre-rollback point has it and
// closes the journal. If the point held a disk by its moved image, that
// image is the live one again and the point, no longer whole, is deleted:
// kept is false.
func (m *Manager) undoRollback(ctx context.Context, t Target, pre Point) (kept bool, err error) {
	j, _, err := m.journal(t)
	if err != nil {
		return false, err
	}
	kept = true
	for i, d := range pre.Disks {
		v, err := m.volumeByID(d.VolumeID)
		if err != nil {
			return false, err
		}
		if !d.Moved {
			fp, ok, err := m.fingerprint(v)
			if err != nil {
				return false, err
			}
			if ok && (fp == j.Before[v.ID] || fp == j.Undone[v.ID]) {
				continue // never touched, or already put back
			}
		}
		moved, err := m.back(ctx, t, pre, v, d)
		if err != nil {
			return false, err
		}
		kept = kept && !moved
		crashpoint(fmt.Sprintf("undo:disk-%d", i+1))
	}
	if !kept {
		if err := m.removeData(ctx, pre); err != nil {
			return false, err
		}
	}
	return kept, m.st.Catalog.Update(func(tx *catalog.Tx) error {
		if !kept {
			if err := deletePoint(tx, t.Key, pre.ID); err != nil {
				return err
			}
		}
		return tx.Delete(bJournal, t.Key.String())
	})
}

// restoredGuest is the guest record a rollback to p writes: p's
// definition, checked against the catalog as it is now and under the name
// the guest has now (renames are not undone by a rollback), with the disks
// and volumes it names. A definition that no longer fits (a volume gone, a
// MAC or a disk another guest has taken since) is refused.
func restoredGuest(tx *catalog.Tx, p Point) (storage.Guest, error) {
	g, err := tx.GuestByID(p.Guest.ID)
	if err != nil {
		return g, err
	}
	if p.Guest.Definition == "" { // a guest recorded as a list of disks only
		g.Disks, g.Uses, g.Definition = p.Guest.Disks, p.Guest.Uses, ""
		return g, nil
	}
	def, ids, uses, err := registry.Recheck(tx, g, p.Guest.Definition)
	if err != nil {
		return g, fmt.Errorf("restore point %d of guest %q cannot bring its definition back: %w", p.ID, g.Name, err)
	}
	g.Disks, g.Uses, g.Definition = ids, uses, def
	return g, nil
}

// recoverRollback continues the rollback a dead process journaled on t,
// in the journal's direction. Before it decides anything it waits (up to
// the lock timeout) for every process still holding one of the disks (a
// qemu-img that outlived strata), and if a disk was written since the
// interruption by anyone but strata, it keeps the disks as they are now as
// a restore point first: recovery never discards a guest's writes.
func (m *Manager) recoverRollback(ctx context.Context, t Target, j journalEntry) error {
	var rr recoveredRollback
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { rr, err = planRecoveredRollback(tx, t, j); return err }); err != nil {
		return err
	}
	if !rr.started {
		// The pre-rollback point was never completed: nothing was rolled
		// back, and its remains were undone already.
		log.Warn().Str("target", t.String()).Int("to", j.To).Msg("an interrupted rollback had not started: nothing to finish")
		return m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.Delete(bJournal, t.Key.String()) })
	}
	to, pre, disks := rr.to, rr.pre, rr.disks
	var vols []storage.Volume
	for _, v := range disks {
		for _, p := range m.locations(v) {
			if err := m.st.InUse.Wait(ctx, fmt.Sprintf("volume %q", v.Name), p, m.lockTimeout); err != nil {
				return err
			}
		}
		vols = append(vols, v)
	}
	ctx, release, err := m.hold(ctx, vols)
	if err != nil {
		return err
	}
	defer release()
	changed, err := m.changedSince(j, disks)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		// Disks strata left half-way (moved away, being applied) are
		// settled first in the journal's direction: no guest can have
		// used them. Then the state found is kept, before anything else.
		if err := m.settle(ctx, t, j, to, pre, disks); err != nil {
			if j.Undo {
				return err
			}
			// Finishing cannot be done (no space for a copy?): undo,
			// which never needs space for a disk moved into its point.
			log.Warn().Err(err).Str("target", t.String()).Msg("the interrupted rollback cannot be finished: undoing it")
			return m.abandon(ctx, t, pre, err)
		}
		if err := m.keepFound(ctx, t, j, disks, changed); err != nil {
			return err
		}
	}
	if j.Undo {
		log.Warn().Str("target", t.String()).Int("to", j.To).Int("pre_rollback", j.Pre).Msg("finishing the undo of a rollback that failed or was interrupted: the disks go back as they were")
		_, err = m.undoRollback(ctx, t, pre)
	} else {
		log.Warn().Str("target", t.String()).Int("to", j.To).Int("pre_rollback", pre.ID).Msg("finishing an interrupted rollback")
		err = m.completeRollback(ctx, t, to, pre)
	}
	// Restored copies a dead process left that this recovery did not use
	// go once it is done, whichever way it went (they are made only under
	// the disks' locks, which this process holds).
	m.cleanRestores(disks)
	return err
}

// recoveredRollback is what recovery of a journaled rollback works on:
// its point and its pre-rollback point, and every volume either has (by
// ID). started is false when the pre-rollback point was never completed
// (or the point is gone): nothing was rolled back.
type recoveredRollback struct {
	to, pre Point
	disks   map[string]storage.Volume
	started bool
}

// planRecoveredRollback reads what recovery of the rollback j journals
// on t works on.
func planRecoveredRollback(tx *catalog.Tx, t Target, j journalEntry) (recoveredRollback, error) {
	var rr recoveredRollback
	pre, preOK, err := pointByNumber(tx, t.Key, j.Pre)
	if err != nil {
		return rr, err
	}
	to, toOK, err := pointByNumber(tx, t.Key, j.To)
	if err != nil || !preOK || pre.State != stateReady || !toOK {
		return rr, err
	}
	rr = recoveredRollback{to: to, pre: pre, disks: map[string]storage.Volume{}, started: true}
	for _, p := range []Point{to, pre} {
		for _, d := range p.Disks {
			v, err := tx.VolumeByID(d.VolumeID)
			if err != nil {
				return rr, err
			}
			rr.disks[v.ID] = v
		}
	}
	return rr, nil
}

// cleanRestores has each disk's driver remove what interrupted restores
// left (the dir driver's temporary restored images).
func (m *Manager) cleanRestores(disks map[string]storage.Volume) {
	for _, v := range disks {
		if drv, pool, err := m.driverOf(v); err == nil {
			drv.CleanRestores(pool, v)
		}
	}
}

// locations are the paths a guest could open v's data under while a
// driver step runs.
func (m *Manager) locations(v storage.Volume) []string {
	drv, pool, err := m.driverOf(v)
	if err != nil {
		return []string{v.Path}
	}
	return drv.Locations(pool, v)
}

// keepFound keeps the disks as recovery found them as a restore point.
// No point of the rollback is touched by the writes found: a full-copy
// disk's pre-rollback point holds the image moved out of the live name,
// which no guest can have opened since.
func (m *Manager) keepFound(ctx context.Context, t Target, j journalEntry, disks map[string]storage.Volume, changed []string) error {
	kept, err := m.create(ctx, t, CreateOptions{Kind: KindPreRollback, also: keys(disks), inUseChecked: true,
		Description: fmt.Sprintf("found when recovering the interrupted rollback to %d: %s changed since", j.To, storage.QuoteList(changed))}, nil)
	if err != nil {
		return fmt.Errorf("keep the disks as they are now before finishing the interrupted rollback (%s changed since): %w", storage.QuoteList(changed), err)
	}
	log.Warn().Str("target", t.String()).Strs("changed", changed).Int("kept_as", kept.ID).Msg("disks changed after an interrupted rollback (a guest ran?): their state is kept as a restore point before the rollback is finished")
	return nil
}

// fingerprintsInto records in j.Before the state of each of p's disks:
// for a disk whose point method KeepsFingerprint, the one read before
// the point was taken (early) when there is one.
func (m *Manager) fingerprintsInto(tx *catalog.Tx, p Point, j *journalEntry, early map[string]fingerprint) error {
	j.Before = map[string]fingerprint{}
	for _, d := range p.Disks {
		if fp, ok := early[d.VolumeID]; ok {
			if _, pm, err := m.pointDriver(d); err == nil && pm.KeepsFingerprint {
				j.Before[d.VolumeID] = fp
				continue
			}
		}
		v, err := tx.VolumeByID(d.VolumeID)
		if err != nil {
			return err
		}
		drv, pool, err := m.st.VolumeDriverTx(tx, v) // inside tx: no transaction of its own
		if err != nil {
			return err
		}
		if fp, ok, err := drv.Fingerprint(pool, v); err != nil {
			return err
		} else if ok {
			j.Before[v.ID] = fp
		}
	}
	return nil
}

// earlyFingerprints starts reading the fingerprint of each of vols
// whose driver has a point method that KeepsFingerprint (a question to
// a cluster: asked while the restore is checked, not after the
// pre-rollback point is taken); the returned func waits for them. Read
// before the point is taken, such a fingerprint is the point's state
// unless something wrote the disk in between, and then recovery only
// sees a change that is not one (it keeps a point too many), never the
// reverse: a disk whose fingerprint is still this one was not written
// since. A disk that could not be read is left out (read again after
// the take).
func (m *Manager) earlyFingerprints(vols []storage.Volume) func() map[string]fingerprint {
	out := map[string]fingerprint{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, v := range vols {
		if seen[v.ID] {
			continue
		}
		seen[v.ID] = true
		drv, pool, err := m.driverOf(v)
		if err != nil || !slices.ContainsFunc(drv.PointMethods(), func(pm storage.PointMethod) bool { return pm.KeepsFingerprint }) {
			continue
		}
		wg.Go(func() {
			if fp, ok, err := drv.Fingerprint(pool, v); err == nil && ok {
				mu.Lock()
				out[v.ID] = fp
				mu.Unlock()
			}
		})
	}
	return func() map[string]fingerprint {
		wg.Wait()
		return out
	}
}

// abandon undoes a rollback that cannot be finished and says so.
func (m *Manager) abandon(ctx context.Context, t Target, pre Point, cause error) error {
	if err := m.updateJournal(t, func(j *journalEntry) { j.Undo = true }); err != nil {
		return errors.Join(cause, err)
	}
	kept, err := m.undoRollback(context.WithoutCancel(ctx), t, pre)
	if err != nil {
		return fmt.Errorf("%w; putting the disks back as they were also failed: %v (strata doctor --repair finishes putting them back)", cause, err)
	}
	if kept {
		return fmt.Errorf("%w; the interrupted rollback was undone instead: every disk is as it was before it (also kept as restore point %d)", cause, pre.ID)
	}
	return fmt.Errorf("%w; the interrupted rollback was undone instead: every disk is as it was before it", cause)
}

// changedSince names the disks whose image is in a state strata did not
// produce during the journaled rollback. A disk with no image under its
// name (moved away mid-step) cannot have been written.
func (m *Manager) changedSince(j journalEntry, disks map[string]storage.Volume) ([]string, error) {
	var out []string
	for id, v := range disks {
		fp, ok, err := m.fingerprint(v)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		b, inB := j.Before[id]
		a, inA := j.After[id]
		u, inU := j.Undone[id]
		if (inB && fp == b) || (inA && fp == a) || (inU && fp == u) {
			continue
		}
		out = append(out, v.Name)
	}
	return out, nil
}

// settle finishes, in the journal's direction, the step of every disk
// that has no image under its live name (a qcow2 image moved away while
// qemu-img applied a snapshot, a full-copy disk moved into its
// pre-rollback point), so that every disk has an image again.
func (m *Manager) settle(ctx context.Context, t Target, j journalEntry, to, pre Point, disks map[string]storage.Volume) error {
	for id, v := range disks {
		if _, ok, err := m.fingerprint(v); err != nil || ok {
			if err != nil {
				return err
			}
			continue
		}
		if j.Undo {
			if d, ok := diskOf(pre, id); ok {
				if _, err := m.back(ctx, t, pre, v, d); err != nil {
					return err
				}
			}
		} else if d, ok := diskOf(to, id); ok {
			if err := m.forward(ctx, t, j, to, pre, v, d); err != nil {
				return err
			}
		}
	}
	return nil
}

func keys(m map[string]storage.Volume) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
