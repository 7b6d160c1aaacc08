package rbd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/strata-vm/strata/storage"
)

// PlanPoint implements storage.Driver: every point of a raw rbd volume
// is an RBD snapshot named from uid.
func (d Driver) PlanPoint(_ context.Context, _ storage.Pool, v storage.Volume, uid string, o storage.PointOptions) (storage.PointRef, error) {
	if v.Format != storage.FormatRaw {
		return storage.PointRef{}, storage.Errorf(storage.ErrNotSupported, "volume %q is %s, which has no restore points in an rbd pool", v.Name, v.Format)
	}
	if o.Method != "" && o.Method != MethodSnapshot {
		return storage.PointRef{}, storage.Errorf(storage.ErrInvalid, "invalid method %q for volume %q in an rbd pool: its restore points are RBD snapshots (%s); leave --method out", o.Method, v.Name, MethodSnapshot)
	}
	if h, ok := d.ops().(*Helper); ok {
		if err := h.Usable(); err != nil {
			return storage.PointRef{}, fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	return storage.PointRef{Method: MethodSnapshot, Ref: PointPrefix + uid}, nil
}

// TakePoint implements storage.Driver: rbd snap create. A client that
// has the image open does not stop it: librbd has the client holding the
// exclusive lock take the snapshot (crash-consistent, as a power cut
// would leave the disk); whether a guest may be running is the caller's
// rule (its in-use check covers RBD watchers).
func (d Driver) TakePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref *storage.PointRef, _ storage.Progress) error {
	s, err := ParsePath(v.Path)
	if err != nil {
		return err
	}
	return d.ops().SnapCreate(ctx, s, ref.Ref)
}

// together runs fs at once (each rbd call costs a connection to the
// cluster: independent questions are asked in parallel).
func together(fs ...func() error) error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f() }()
	}
	wg.Wait()
	// One cause (a helper that cannot run, a cluster that does not
	// answer) fails every question alike: say it once.
	var distinct []error
	for _, err := range errs {
		if err != nil && !slices.ContainsFunc(distinct, func(e error) bool { return e.Error() == err.Error() }) {
			distinct = append(distinct, err)
		}
	}
	return errors.Join(distinct...)
}

// holder is the image that holds v's snapshots now: the live image, or
// the same image renamed aside by a rollback under way; ok false: none.
func (d Driver) holder(ctx context.Context, s Spec) (Spec, []Snapshot, bool, error) {
	for _, img := range []Spec{s, s.WithImage(s.Image + ApplyingSuffix)} {
		snaps, err := d.ops().Snapshots(ctx, img)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return img, nil, false, err
		}
		return img, snaps, true, nil
	}
	return s, nil, false, nil
}

func hasSnap(snaps []Snapshot, name string) bool {
	for _, sn := range snaps {
		if sn.Name == name {
			return true
		}
	}
	return false
}

// CheckRestore implements storage.Driver: the snapshot is there and no
// client has the image open.
func (d Driver) CheckRestore(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	s, err := ParsePath(v.Path)
	if err != nil {
		return err
	}
	var (
		snaps []Snapshot
		ok    bool
	)
	// The live image is asked whether it is open while its snapshots are
	// listed (an image aside is strata's own: nobody opens it).
	err = together(
		func() (err error) { _, snaps, ok, err = d.holder(ctx, s); return err },
		func() error {
			err := d.notOpen(ctx, s, fmt.Sprintf("roll back volume %q", v.Name))
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		})
	if err != nil {
		return err
	}
	if !ok || !hasSnap(snaps, ref.Ref) {
		return storage.Errorf(storage.ErrNotFound, "volume %q has no snapshot %q (rbd image %q): the restore point's data is gone", v.Name, ref.Ref, s.String())
	}
	return nil
}

// newGeneration is a fresh restore generation.
func newGeneration() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RestorePoint implements storage.Driver: the image is renamed aside
// (IMAGE.strata-applying), the snapshot rolled back into it (rbd snap
// rollback: every snapshot stays) while a new restore generation is set
// (GenerationObject), its state recorded, and it is renamed back. Run
// again after a crash, it finds the image aside and rolls back again (a
// rollback is idempotent), or finds it back under its live name in the
// state recorded (done).
//
// Every rbd call connects to the cluster anew (50-100 ms): a first run
// (st.Done nil) asks no question before the rename, which answers them
// itself (ENOENT: no live image, EEXIST: one aside already). The
// watchers are listed once the image is aside (a client that has it
// open keeps it open across a rename; the rename's own process is a
// watcher while it runs): found, the image is renamed back and the
// rollback refused before anything is written (the generation too: a
// refused rollback leaves the fingerprint as it was). The image takes
// its live name only once the generation is set and the state recorded.
func (d Driver) RestorePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef, st storage.RestoreStep) error {
	live, err := ParsePath(v.Path)
	if err != nil {
		return err
	}
	aside := live.WithImage(live.Image + ApplyingSuffix)
	what := fmt.Sprintf("roll back volume %q", v.Name)
	gen := newGeneration()
	moved := false
	var predicted *storage.Fingerprint
	if st.Done == nil {
		err := d.ops().Rename(ctx, live, aside.Image)
		switch {
		case err == nil:
			moved = true
			// The state the rollback will leave, read meanwhile: see
			// predict.
			var openErr error
			predicted, err = d.predict(ctx, aside, ref.Ref, gen, func() error {
				openErr = d.notOpen(ctx, aside, what)
				return nil
			})
			if openErr == nil {
				openErr = err
			}
			if openErr != nil {
				// Nothing was written: the image goes back as it was.
				if err := d.ops().Rename(context.WithoutCancel(ctx), aside, live.Image); err != nil {
					return fmt.Errorf("%w (and renaming rbd image %q back failed: %v; run strata doctor --repair)", openErr, aside.String(), err)
				}
				return openErr
			}
			storage.Crashpoint("rollback:rbd-moved")
		case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExists):
			// Not a first run after all (or two images): the careful path.
		default:
			return err
		}
	}
	if !moved {
		if err := d.settleAside(ctx, live, aside, v, what, st); err != nil {
			if errors.Is(err, errRestored) {
				return nil
			}
			return err
		}
	}
	// The new generation is set while the rollback runs (no client
	// opens the image for it: it is a RADOS object of strata's own).
	err = together(
		func() error { return d.ops().SnapRollback(ctx, aside, ref.Ref) },
		func() error { return d.ops().SetGeneration(ctx, aside, gen) })
	if err != nil {
		return err
	}
	storage.Crashpoint("rollback:rbd-applied")
	if predicted == nil {
		fp, ok, err := d.fingerprint(ctx, aside)
		if err != nil {
			return err
		}
		if !ok {
			return storage.Errorf(storage.ErrNotFound, "volume %q: rbd image %q went away during the rollback", v.Name, aside.String())
		}
		predicted = &fp
	}
	if st.Record != nil {
		if err := st.Record(*predicted); err != nil {
			return err
		}
	}
	return d.ops().Rename(ctx, aside, live.Image)
}

// predict reads, with also, the fingerprint an image will have once
// rolled back to its snapshot snap: the image's ID and modify_timestamp
// (rbd snap rollback changes neither: it is no client write), the
// snapshot's size and allocated objects (which the rollback gives the
// image), and the restore generation gen it will be given. Read before
// the rollback, alongside the watchers check, it saves a round of rbd
// calls after it; the image is aside meanwhile, where no client opens
// it. Were a Ceph release to change the image's
// modify_timestamp in a rollback, the state recorded would not be the
// image's: recovery would take the rolled back image for one a guest
// wrote and keep it as a point first (one point too many, never a write
// lost), and the conformance suite's check of the recorded state fails.
func (d Driver) predict(ctx context.Context, s Spec, snap, gen string, also func() error) (*storage.Fingerprint, error) {
	var st State
	err := together(
		func() (err error) { st, err = d.ops().State(ctx, s, snap); return err },
		also)
	if err != nil {
		return nil, err
	}
	fp := FingerprintOf(st, gen)
	return &fp, nil
}

// errRestored: settleAside found the restore done by an interrupted run.
var errRestored = errors.New("restored already")

// settleAside brings the image to its name aside, whatever an
// interrupted run left: under its live name (renamed aside now, unless
// it is in the state st.Done recorded: errRestored), or aside already.
func (d Driver) settleAside(ctx context.Context, live, aside Spec, v storage.Volume, what string, st storage.RestoreStep) error {
	var liveOK, asideOK bool
	var openErr error
	err := together(
		func() (err error) { liveOK, err = d.ops().Exists(ctx, live); return err },
		func() (err error) { asideOK, err = d.ops().Exists(ctx, aside); return err },
		func() error { openErr = d.notOpen(ctx, live, what); return nil })
	if err != nil {
		return err
	}
	switch {
	case liveOK && asideOK:
		return storage.Errorf(storage.ErrPrecondition, "volume %q has both an image %q and one being rolled back (%q): strata cannot tell which is the disk; rename the one that is not aside (rbd rename), then run strata doctor --repair", v.Name, live.String(), aside.String())
	case !liveOK && !asideOK:
		return storage.Errorf(storage.ErrNotFound, "volume %q: rbd image %q is missing", v.Name, live.String())
	case liveOK:
		if st.Done != nil {
			if fp, ok, err := d.fingerprint(ctx, live); err == nil && ok && fp == *st.Done {
				return errRestored // an interrupted run had finished
			}
		}
		if openErr != nil {
			return openErr
		}
		if err := d.ops().Rename(ctx, live, aside.Image); err != nil {
			return err
		}
		storage.Crashpoint("rollback:rbd-moved")
	}
	return nil
}

// PutBack implements storage.Driver: rbd points are never Moved.
func (Driver) PutBack(context.Context, storage.Pool, storage.Volume, storage.PointRef) error {
	return nil
}

// RemovePoint implements storage.Driver: rbd snap rm; absent (the
// snapshot, or the whole image with a volume record gone) is success.
func (d Driver) RemovePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) error {
	if v.Path == "" {
		return nil // the snapshots went with the image
	}
	s, err := ParsePath(v.Path)
	if err != nil {
		return err
	}
	img, snaps, ok, err := d.holder(ctx, s)
	if err != nil || !ok || !hasSnap(snaps, ref.Ref) {
		return err
	}
	if err := d.c().SnapRemove(ctx, img, ref.Ref); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

// PointExists implements storage.Driver.
func (d Driver) PointExists(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef) (bool, error) {
	s, err := ParsePath(v.Path)
	if err != nil {
		return false, err
	}
	_, snaps, ok, err := d.holder(ctx, s)
	return ok && hasSnap(snaps, ref.Ref), err
}

// SamePoint implements storage.Driver: snapshots are not compared.
func (Driver) SamePoint(context.Context, storage.Pool, storage.Volume, storage.PointRef, storage.PointRef) (bool, error) {
	return false, nil
}

// LivePoint implements storage.Driver: the snapshot is taken while the
// guest is paused (LiveClone). librbd hands it to the running QEMU,
// which holds the image's exclusive lock, and flushes its cache first.
func (d Driver) LivePoint(_ context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef, _ storage.LiveOptions) (storage.LivePoint, error) {
	s, err := ParsePath(v.Path)
	if err != nil {
		return storage.LivePoint{}, err
	}
	name := ref.Ref
	return storage.LivePoint{Mechanism: storage.LiveClone, Clone: func() error {
		return d.ops().SnapCreate(context.Background(), s, name)
	}}, nil
}

// CleanRestores implements storage.Driver: an interrupted rollback
// leaves only the image aside, which the next restore finishes.
func (Driver) CleanRestores(storage.Pool, storage.Volume) {}
