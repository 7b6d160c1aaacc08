package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
)

// Point methods of the lvm driver (recorded in the catalog).
const (
	// MethodThin: a read-only thin snapshot of a thin LV, inactive
	// (activation skipped); restored by rename-away.
	MethodThin = "lvm-thin"
	// MethodThick: a read-only classic snapshot of a thick LV, sized a
	// percentage of it; restored by copying it back in place.
	MethodThick = "lvm-thick"
)

var pointMethods = []storage.PointMethod{
	{Name: MethodThin, Formats: []storage.Format{storage.FormatRaw}, O1Take: true, O1Restore: true, ReplacesLive: true, Live: storage.LiveClone},
	// A classic snapshot is made in O(1) time but reserves its size in
	// the VG at once (100% of the volume by default): not O(1) in space.
	{Name: MethodThick, Formats: []storage.Format{storage.FormatRaw}, Live: storage.LiveClone},
}

// PointMethods implements storage.Driver.
func (Driver) PointMethods() []storage.PointMethod { return pointMethods }

// restoreLVs are the LVs a restore (or put-back, or recovery) of a
// volume deals with: the volume's VG and live LV, the point's LV (empty
// without a point), and the names a restore gives its LVs for a moment:
// the restored LV before it takes the live name (tmp), the live LV
// renamed aside by a restore (aside) and by PutBack (undo).
type restoreLVs struct {
	vg, live, point  string
	tmp, aside, undo string
}

// restoreNames names the LVs a restore of volume v to the point at ref
// ("VG/LV"; "" for none) deals with.
func restoreNames(v storage.Volume, ref string) (n restoreLVs, err error) {
	if n.vg, n.live, err = volumeLV(v); err != nil {
		return n, err
	}
	if ref != "" {
		if _, n.point, err = splitRef(ref); err != nil {
			return n, err
		}
	}
	if n.tmp, err = LVName(KindTemp, v.ID, "restore"); err != nil {
		return n, err
	}
	if n.aside, err = LVName(KindAside, v.ID, "restore"); err != nil {
		return n, err
	}
	n.undo, err = LVName(KindAside, v.ID, "undo")
	return n, err
}

// smallWarned: volumes (by ID) this process warned about points smaller
// than their volume.
var smallWarned sync.Map

// PlanPoint implements storage.Driver: a thin snapshot for a thin LV, a
// classic snapshot for a thick one (whatever the pool's record says: an
// imported LV keeps its kind), with the thin pool's limits checked
// first. An active LV (a volume's usually is) is read from
// device-mapper, its thin pool's usage too: no lvm command runs. A thick
// point's space is left to lvcreate's own refusal (TakePoint).
func (d Driver) PlanPoint(ctx context.Context, p storage.Pool, v storage.Volume, uid string, o storage.PointOptions) (storage.PointRef, error) {
	if v.Format != storage.FormatRaw {
		return storage.PointRef{}, storage.Errorf(storage.ErrNotSupported, "volume %q is %s, which has no restore points in an lvm pool", v.Name, v.Format)
	}
	vg, live, err := volumeLV(v)
	if err != nil {
		return storage.PointRef{}, err
	}
	thin, use := false, func() (thinUse, error) { return thinUse{}, nil }
	if a, ok := d.activeLV(vg, live); ok {
		thin = a.thin
		use = func() (thinUse, error) {
			if u, ok := d.thinPoolStatus(DMQuery{Dev: a.poolDev}); ok {
				return u, nil
			}
			_, u, err := d.reportPlan(ctx, vg, live, v)
			return u, err
		}
	} else {
		l, u, err := d.reportPlan(ctx, vg, live, v)
		if err != nil {
			return storage.PointRef{}, err
		}
		thin = l.Attr.Thin
		use = func() (thinUse, error) { return u, nil }
	}
	method := MethodThick
	if thin {
		method = MethodThin
	}
	switch o.Method {
	case "", method:
	case MethodThin, MethodThick:
		return storage.PointRef{}, storage.Errorf(storage.ErrInvalid, "method %s does not apply to volume %q: its logical volume %q is %s, whose points are %s; leave --method out", o.Method, v.Name, vg+"/"+live, map[bool]string{true: "thin", false: "thick"}[thin], method)
	default:
		return storage.PointRef{}, storage.Errorf(storage.ErrInvalid, "invalid method %q for volume %q: use %s", o.Method, v.Name, method)
	}
	name, err := LVName(KindPoint, v.ID, uid)
	if err != nil {
		return storage.PointRef{}, err
	}
	ref := storage.PointRef{Method: method, Ref: vg + "/" + name}
	if method == MethodThin {
		// The pre-rollback point of a rollback is the live LV itself,
		// renamed aside when the restored one takes its name: no data.
		ref.Moved = o.ReplacingLive
		if !ref.Moved {
			u, err := use()
			if err != nil {
				return storage.PointRef{}, err
			}
			if err := thinLimits(p, u, "a restore point of volume "+v.Name); err != nil {
				return storage.PointRef{}, err
			}
		}
		return ref, nil
	}
	pct := snapshotPercent(p.LVM)
	if _, said := smallWarned.Load(v.ID); pct < 100 && !said {
		smallWarned.Store(v.ID, true)
		log.Warn().Str("volume", v.Name).Int("snapshot_percent", pct).Msg("restore points of this volume are classic snapshots smaller than it: one becomes invalid (and cannot be rolled back to) once the guest changes more than that")
	}
	return ref, nil
}

// reportPlan is PlanPoint's question to lvs, for an LV device-mapper
// cannot tell about (inactive): one report of the VG gives the LV and
// its thin pool.
func (d Driver) reportPlan(ctx context.Context, vg, live string, v storage.Volume) (LV, thinUse, error) {
	lvs, err := d.c().LVs(ctx, vg)
	if err != nil {
		return LV{}, thinUse{}, err
	}
	byName := map[string]LV{}
	for _, l := range lvs {
		byName[l.Name] = l
	}
	l, ok := byName[live]
	if !ok {
		return LV{}, thinUse{}, storage.Errorf(storage.ErrNotFound, "logical volume %q of volume %q not found", vg+"/"+live, v.Name)
	}
	if !l.Attr.Thin {
		return l, thinUse{}, nil
	}
	tp, ok := byName[l.Pool]
	if !ok {
		return l, thinUse{}, storage.Errorf(storage.ErrNotFound, "thin pool %q of volume %q not found", vg+"/"+l.Pool, v.Name)
	}
	return l, thinUseOfLV(tp), nil
}

// TakePoint implements storage.Driver. A Moved point is taken by the
// rollback that replaces the live LV (RestorePoint, MoveTo): until then
// the live LV is the point's state and nothing is done here. A thick
// point that does not fit is refused by lvcreate (atomically), and
// reported with the numbers.
func (d Driver) TakePoint(ctx context.Context, p storage.Pool, v storage.Volume, ref *storage.PointRef, _ storage.Progress) error {
	vg, live, err := volumeLV(v)
	if err != nil {
		return err
	}
	pvg, name, err := splitRef(ref.Ref)
	if err != nil {
		return err
	}
	if pvg != vg {
		return storage.Errorf(storage.ErrInvalid, "point %q is not in volume %q's volume group %q", ref.Ref, v.Name, vg)
	}
	switch {
	case ref.Moved:
		return nil
	case ref.Method == MethodThin:
		return d.c().ThinSnapshot(ctx, ThinSnapshotOptions{VG: vg, Origin: live, Name: name, ReadOnly: true, Tags: strataTags})
	case ref.Method == MethodThick:
		pct := snapshotPercent(p.LVM)
		err := d.c().Snapshot(ctx, SnapshotOptions{VG: vg, Origin: live, Name: name, PercentOrigin: pct, ReadOnly: true, Tags: strataTags})
		if errors.Is(err, ErrNoSpace) {
			var size int64
			if l, ok, lerr := d.lookup(ctx, vg, live); lerr == nil && ok {
				size = l.Size
			}
			return d.spaceRefused(ctx, err, vg, size*int64(pct)/100, "a restore point of volume "+v.Name)
		}
		return err
	}
	return storage.Errorf(storage.ErrInvalid, "invalid lvm point method %q", ref.Method)
}

// CheckRestore implements storage.Driver: a classic snapshot that
// overflowed holds nothing usable.
func (d Driver) CheckRestore(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	vg, name, err := splitRef(ref.Ref)
	if err != nil {
		return err
	}
	l, ok, err := d.lookup(ctx, vg, name)
	if err != nil {
		return err
	}
	if !ok {
		if ref.Moved {
			return nil // not moved yet: the live LV is its state
		}
		return storage.Errorf(storage.ErrNotFound, "the data of this restore point of volume %q (logical volume %q) is gone", v.Name, ref.Ref)
	}
	if l.Attr.Invalid {
		return storage.Errorf(storage.ErrPrecondition, "this restore point of volume %q is invalid: its snapshot %q overflowed (the guest changed more than its %s) and holds nothing usable; roll back to another point, and delete this one", v.Name, ref.Ref, storage.FormatSize(l.Size))
	}
	return nil
}

// RestorePoint implements storage.Driver.
func (d Driver) RestorePoint(ctx context.Context, p storage.Pool, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error {
	switch ref.Method {
	case MethodThin:
		return d.restoreThin(ctx, v, ref, s)
	case MethodThick:
		if err := d.CheckRestore(ctx, p, v, ref); err != nil {
			return err
		}
		return d.restoreThick(ctx, v, ref, s)
	}
	return storage.Errorf(storage.ErrInvalid, "invalid lvm point method %q", ref.Method)
}

func (d Driver) exists(ctx context.Context, vg, lv string) (bool, error) {
	_, ok, err := d.lookup(ctx, vg, lv)
	return ok, err
}

func record(s storage.RestoreStep, fp storage.Fingerprint) error {
	if s.Record == nil {
		return nil
	}
	return s.Record(fp)
}

// restoreThin is the rename-away: a writable thin snapshot of the point
// is made under a temporary name (strata.tmp.VOLID.restore) and
// recorded; the live LV is renamed to the pre-rollback point (MoveTo)
// or aside (strata.aside.VOLID.restore); the new LV takes the live
// name; what was put aside is removed last. Run again, it finds the
// restored LV by its recorded state (s.Done) under either name. A first
// run runs just those commands (each lvm command costs a metadata scan
// and a process): it reads the VG's LVs only when one fails for
// something left over (a temporary or aside LV, or the point gone), or
// when run again.
func (d Driver) restoreThin(ctx context.Context, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error {
	n, err := restoreNames(v, ref.Ref)
	if err != nil {
		return err
	}
	r := &thinRestore{d: d, ctx: ctx, v: v, ref: ref, s: s, n: n}
	if done, err := r.restored(); err != nil || done {
		return err
	}
	asideThere, err := r.moveLive()
	if err != nil {
		return err
	}
	if err := d.c().Rename(ctx, n.vg, n.tmp, n.live); err != nil {
		return err
	}
	storage.Crashpoint("rollback:thin-renamed")
	if asideThere {
		d.removeLeftover(ctx, n.vg, n.aside)
	}
	return nil
}

// thinRestore is one run of restoreThin: its names, its step, and the
// VG's LVs once it had to list them.
type thinRestore struct {
	d   Driver
	ctx context.Context
	v   storage.Volume
	ref storage.PointRef
	s   storage.RestoreStep
	n   restoreLVs
	all map[string]bool // the VG's LVs by name; nil until listed
}

// list reads the VG's LVs, once.
func (r *thinRestore) list() (err error) {
	if r.all == nil {
		r.all, err = r.d.list(r.ctx, r.n.vg)
	}
	return err
}

// restored brings the restored LV under the temporary name, recorded.
// done: nothing is left to do (a run after the restore finished, or a
// Moved point not moved yet, whose state is the live LV).
func (r *thinRestore) restored() (done bool, err error) {
	if r.s.Done == nil {
		// A first run tries the snapshot blind; if it fails (a leftover
		// temporary LV, the point gone), its error is not the answer:
		// the VG is listed below and the snapshot made again or refused
		// with the reason.
		if r.snapshot() == nil {
			return false, r.recordMade()
		}
	}
	if err := r.list(); err != nil {
		return false, err
	}
	if r.s.Done != nil {
		found, done, err := r.findDone()
		if err != nil || done || found {
			return done, err
		}
	}
	if !r.all[r.n.point] {
		if r.ref.Moved {
			return true, nil // a Moved point not moved yet is the live state
		}
		return false, storage.Errorf(storage.ErrNotFound, "the data of this restore point of volume %q (logical volume %q) is gone", r.v.Name, r.ref.Ref)
	}
	if r.all[r.n.tmp] {
		if err := r.d.c().Remove(r.ctx, r.n.vg, r.n.tmp); err != nil {
			return false, err
		}
	}
	if err := r.snapshot(); err != nil {
		return false, err
	}
	return false, r.recordMade()
}

// snapshot makes the restored LV: a writable, active thin snapshot of
// the point under the temporary name.
func (r *thinRestore) snapshot() error {
	return r.d.c().ThinSnapshot(r.ctx, ThinSnapshotOptions{VG: r.n.vg, Origin: r.n.point, Name: r.n.tmp, Activate: true, Tags: strataTags})
}

// findDone looks, on a run after a crash, for the restored LV by its
// recorded state: under the live name (done, but for removing what was
// put aside) or still under the temporary one (found).
func (r *thinRestore) findDone() (found, done bool, err error) {
	n := r.n
	if fp, ok, err := r.d.fingerprintLV(n.vg, n.live); err != nil {
		return false, false, err
	} else if ok && fp == *r.s.Done {
		if r.all[n.aside] {
			r.d.removeLeftover(r.ctx, n.vg, n.aside)
		}
		return false, true, nil
	}
	if !r.all[n.tmp] {
		return false, false, nil
	}
	fp, ok, err := r.d.fingerprintLV(n.vg, n.tmp)
	if err != nil {
		return false, false, err
	}
	return ok && fp == *r.s.Done, false, nil
}

// recordMade records the state of the restored LV just made, or removes
// it again.
func (r *thinRestore) recordMade() error {
	storage.Crashpoint("rollback:thin-made")
	fp, ok, err := r.d.fingerprintLV(r.n.vg, r.n.tmp)
	if err == nil && !ok {
		err = fmt.Errorf("the restored logical volume %q vanished", r.n.vg+"/"+r.n.tmp)
	}
	if err == nil {
		err = record(r.s, fp)
	}
	if err != nil {
		if rerr := r.d.c().Remove(context.WithoutCancel(r.ctx), r.n.vg, r.n.tmp); rerr != nil {
			// Unrecorded, it is never taken for the restored LV: the
			// next restore of the volume, or recovery, removes it.
			log.Warn().Err(rerr).Str("lv", r.n.vg+"/"+r.n.tmp).Msg("left the temporary logical volume of a failed rollback; the next rollback of the volume or strata doctor --repair removes it")
		}
		return err
	}
	storage.Crashpoint("rollback:thin-recorded")
	return nil
}

// moveLive renames the live LV, where there is one, to the pre-rollback
// point (s.MoveTo) or aside. asideThere: an LV is under the aside name,
// to be removed once the restored LV has the live name.
func (r *thinRestore) moveLive() (asideThere bool, err error) {
	n, c := r.n, r.d.c()
	liveThere, err := r.liveThere()
	if err != nil {
		return false, err
	}
	asideThere = r.all != nil && r.all[n.aside]
	if !liveThere {
		return asideThere, nil
	}
	to := n.aside
	if r.s.MoveTo != "" {
		if _, to, err = splitRef(r.s.MoveTo); err != nil {
			return false, err
		}
		if r.all != nil && r.all[to] {
			return false, r.moveToExists()
		}
	} else {
		if asideThere {
			if err := c.Remove(r.ctx, n.vg, n.aside); err != nil {
				return false, err
			}
		}
		asideThere = true
	}
	err = c.Rename(r.ctx, n.vg, n.live, to)
	if errors.Is(err, storage.ErrExists) && r.all == nil {
		// Not listed: something is there already under that name.
		if r.s.MoveTo != "" {
			return false, r.moveToExists()
		}
		if err = c.Remove(r.ctx, n.vg, n.aside); err == nil {
			err = c.Rename(r.ctx, n.vg, n.live, to)
		}
	}
	if err != nil {
		return false, err
	}
	storage.Crashpoint("rollback:thin-moved")
	return asideThere, nil
}

// liveThere reports the live LV: from the listing when there is one,
// else from its device node (an active LV), else from a listing.
func (r *thinRestore) liveThere() (bool, error) {
	if r.all == nil {
		if _, ok := devOf(DevPath(r.n.vg, r.n.live)); ok {
			return true, nil
		}
		if err := r.list(); err != nil {
			return false, err
		}
	}
	return r.all[r.n.live], nil
}

func (r *thinRestore) moveToExists() error {
	return storage.Errorf(storage.ErrExists, "the pre-rollback point %q of volume %q exists already and so does its live logical volume: strata doctor --repair sorts it out", r.s.MoveTo, r.v.Name)
}

// removeLeftover removes an LV a finished step put aside. It may still
// be open (strata's own hold on the volume's devices keeps guests out
// while the step runs): then it stays until the next restore or undo of
// the volume, or recovery (CleanRestores), removes it.
func (d Driver) removeLeftover(ctx context.Context, vg, lv string) {
	if err := d.c().Remove(ctx, vg, lv); err != nil {
		log.Warn().Err(err).Str("lv", vg+"/"+lv).Msg("left the logical volume a rollback put aside; the next rollback of the volume or strata doctor --repair removes it")
	}
}

// list names the LVs of vg (one report).
func (d Driver) list(ctx context.Context, vg string) (map[string]bool, error) {
	lvs, err := d.c().LVs(ctx, vg)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(lvs))
	for _, l := range lvs {
		out[l.Name] = true
	}
	return out, nil
}

// restoreThick copies the point back over the live LV in place, writing
// only the blocks that differ: O(size) reads, O(changed) writes (each
// also copied into every other classic snapshot of the volume, which is
// how they keep their state). Points of a thick LV are snapshots of that
// LV: a rename-away would take them all with the old LV. Run again, it
// copies again (what is there already is not rewritten).
func (d Driver) restoreThick(ctx context.Context, v storage.Volume, ref storage.PointRef, s storage.RestoreStep) error {
	n, err := restoreNames(v, ref.Ref)
	if err != nil {
		return err
	}
	vg, live, point := n.vg, n.live, n.point
	if s.Done != nil {
		if fp, ok, err := d.fingerprintLV(vg, live); err != nil {
			return err
		} else if ok && fp == *s.Done {
			return nil
		}
	}
	if err := d.active(ctx, vg, live); err != nil {
		return err
	}
	if err := d.active(ctx, vg, point); err != nil {
		return err
	}
	if err := copyDevice(ctx, DevPath(vg, point), DevPath(vg, live), copyDiff, s.Progress, "rollback:thick-copying"); err != nil {
		return err
	}
	storage.Crashpoint("rollback:thick-copied")
	// The point may have overflowed while it was read (a guest wrote
	// the volume meanwhile): then what was copied is not the point.
	if l, err := d.c().LV(ctx, vg, point); err == nil && l.Attr.Invalid {
		return storage.Errorf(storage.ErrPrecondition, "restore point %q of volume %q overflowed while it was copied back: roll back to another point", ref.Ref, v.Name)
	}
	fp, ok, err := d.fingerprintLV(vg, live)
	if err == nil && !ok {
		err = fmt.Errorf("logical volume %q vanished", vg+"/"+live)
	}
	if err != nil {
		return err
	}
	return record(s, fp)
}

// active activates an LV that is not (a thin point: activation skipped).
func (d Driver) active(ctx context.Context, vg, lv string) error {
	if _, err := os.Stat(DevPath(vg, lv)); err == nil {
		return nil
	}
	return d.c().Activate(ctx, vg, lv)
}

// PutBack implements storage.Driver: the moved pre-rollback point takes
// the live name again; the restored LV there is renamed aside first
// (strata.aside.VOLID.undo) and removed last.
func (d Driver) PutBack(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	n, err := restoreNames(v, ref.Ref)
	if err != nil {
		return err
	}
	vg, live, point, undo := n.vg, n.live, n.point, n.undo
	all, err := d.list(ctx, vg)
	if err != nil {
		return err
	}
	if !all[point] {
		if all[live] && all[undo] {
			return d.c().Remove(ctx, vg, undo)
		}
		return nil
	}
	if all[live] {
		if all[undo] {
			if err := d.c().Remove(ctx, vg, undo); err != nil {
				return err
			}
		}
		if err := d.c().Rename(ctx, vg, live, undo); err != nil {
			return err
		}
		all[undo] = true
		storage.Crashpoint("putback:aside")
	}
	if err := d.c().Rename(ctx, vg, point, live); err != nil {
		return fmt.Errorf("put the logical volume of volume %q back: %w", v.Name, err)
	}
	if all[undo] {
		d.removeLeftover(ctx, vg, undo)
	}
	return nil
}

// RemovePoint implements storage.Driver.
func (d Driver) RemovePoint(ctx context.Context, p storage.Pool, v storage.Volume, ref storage.PointRef) error {
	vg, point, err := splitRef(ref.Ref)
	if err != nil {
		return err
	}
	all, err := d.list(ctx, vg)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // the VG is gone, and the point with it
	}
	if err != nil || !all[point] {
		return err
	}
	if ref.Moved && v.Path != "" {
		if lvg, live, err := volumeLV(v); err == nil && lvg == vg && !all[live] {
			// The point holds the live LV, moved by a rollback that
			// never put another in its place: back, never away.
			return d.PutBack(ctx, p, v, ref)
		}
	}
	return d.c().Remove(ctx, vg, point)
}

// PointExists implements storage.Driver.
func (d Driver) PointExists(ctx context.Context, _ storage.Pool, _ storage.Volume, ref storage.PointRef) (bool, error) {
	vg, point, err := splitRef(ref.Ref)
	if err != nil {
		return false, err
	}
	return d.exists(ctx, vg, point)
}

// SamePoint implements storage.Driver: two LVs are never compared.
func (Driver) SamePoint(_ context.Context, _ storage.Pool, _ storage.Volume, a, b storage.PointRef) (bool, error) {
	return a.Ref == b.Ref, nil
}

// PointUsage reports how full a thick point's classic snapshot is
// (percent of its size) and whether it overflowed; ok is false for
// points without such a figure (thin, or not there).
func (d Driver) PointUsage(ctx context.Context, ref storage.PointRef) (percent float64, invalid, ok bool, err error) {
	if ref.Method != MethodThick {
		return 0, false, false, nil
	}
	vg, point, err := splitRef(ref.Ref)
	if err != nil {
		return 0, false, false, err
	}
	l, there, err := d.lookup(ctx, vg, point)
	if err != nil || !there {
		return 0, false, false, err
	}
	if l.DataPercent != nil {
		percent = *l.DataPercent
	}
	if l.Attr.Invalid {
		percent = 100
	}
	return percent, l.Attr.Invalid, true, nil
}

// LivePoint implements storage.Driver: both kinds of snapshot are made
// while the guest is paused (LVM suspends the origin for a moment).
func (d Driver) LivePoint(ctx context.Context, p storage.Pool, v storage.Volume, ref storage.PointRef, _ storage.LiveOptions) (storage.LivePoint, error) {
	if ref.Moved {
		return storage.LivePoint{}, storage.Errorf(storage.ErrInvalid, "a moved point is not taken live")
	}
	return storage.LivePoint{Mechanism: storage.LiveClone, Clone: func() error {
		return d.TakePoint(ctx, p, v, &ref, storage.NoProgress{})
	}}, nil
}

// CleanRestores implements storage.Driver: the temporary restored LV
// and, while the live LV is there, what was renamed aside (one report
// of the VG, then only what is there is removed).
func (d Driver) CleanRestores(_ storage.Pool, v storage.Volume) {
	ctx := context.Background()
	n, err := restoreNames(v, "")
	if err != nil {
		// Not a logical volume strata names (an invalid path or ID): no
		// restore of it ever made an LV to clean up.
		log.Debug().Err(err).Str("volume", v.Name).Msg("no interrupted rollback to look for")
		return
	}
	vg, live := n.vg, n.live
	all, err := d.list(ctx, vg)
	if err != nil {
		log.Warn().Err(err).Str("volume", v.Name).Msg("could not look for what an interrupted rollback left")
		return
	}
	var errs []error
	if all[n.tmp] {
		errs = append(errs, d.c().Remove(ctx, vg, n.tmp))
	}
	for _, lv := range []string{n.aside, n.undo} {
		if all[live] && all[lv] {
			errs = append(errs, d.c().Remove(ctx, vg, lv))
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn().Err(err).Str("volume", v.Name).Msg("could not remove what an interrupted rollback left")
	}
}
