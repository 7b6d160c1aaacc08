package rbd

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/strata-vm/strata/storage"
)

// PlanPoint implements storage.Driver: every point of a raw rbd volume
// is an RBD snapshot named from uid.
func (Driver) PlanPoint(_ context.Context, _ storage.Pool, v storage.Volume, uid string, o storage.PointOptions) (storage.PointRef, error) {
	if v.Format != storage.FormatRaw {
		return storage.PointRef{}, storage.Errorf(storage.ErrNotSupported, "volume %q is %s, which has no restore points in an rbd pool", v.Name, v.Format)
	}
	if o.Method != "" && o.Method != MethodSnapshot {
		return storage.PointRef{}, storage.Errorf(storage.ErrInvalid, "invalid method %q for volume %q in an rbd pool: its restore points are RBD snapshots (%s); leave --method out", o.Method, v.Name, MethodSnapshot)
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
	return d.c().SnapCreate(ctx, s, ref.Ref)
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
	return errors.Join(errs...)
}

// holder is the image that holds v's snapshots now: the live image, or
// the same image renamed aside by a rollback under way; ok false: none.
func (d Driver) holder(ctx context.Context, s Spec) (Spec, []Snapshot, bool, error) {
	for _, img := range []Spec{s, s.WithImage(s.Image + ApplyingSuffix)} {
		snaps, err := d.c().Snapshots(ctx, img)
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

// RestorePoint implements storage.Driver: the image is renamed aside
// (IMAGE.strata-applying), the snapshot rolled back into it (rbd snap
// rollback: every snapshot stays), its state recorded, and it is renamed
// back. Run again after a crash, it finds the image aside and rolls back
// again (a rollback is idempotent), or finds it back under its live name
// in the state recorded (done).
func (d Driver) RestorePoint(ctx context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef, st storage.RestoreStep) error {
	live, err := ParsePath(v.Path)
	if err != nil {
		return err
	}
	aside := live.WithImage(live.Image + ApplyingSuffix)
	var liveOK, asideOK bool
	var openErr error
	err = together(
		func() (err error) { liveOK, err = d.c().Exists(ctx, live); return err },
		func() (err error) { asideOK, err = d.c().Exists(ctx, aside); return err },
		func() error {
			openErr = d.notOpen(ctx, live, fmt.Sprintf("roll back volume %q", v.Name))
			return nil
		})
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
				return nil // an interrupted run had finished
			}
		}
		if openErr != nil {
			return openErr
		}
		if err := d.c().Rename(ctx, live, aside.Image); err != nil {
			return err
		}
		storage.Crashpoint("rollback:rbd-moved")
	}
	if err := d.c().SnapRollback(ctx, aside, ref.Ref); err != nil {
		return err
	}
	storage.Crashpoint("rollback:rbd-applied")
	fp, ok, err := d.fingerprint(ctx, aside)
	if err != nil {
		return err
	}
	if !ok {
		return storage.Errorf(storage.ErrNotFound, "volume %q: rbd image %q went away during the rollback", v.Name, aside.String())
	}
	if st.Record != nil {
		if err := st.Record(fp); err != nil {
			return err
		}
	}
	return d.c().Rename(ctx, aside, live.Image)
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
		return d.c().SnapCreate(context.Background(), s, name)
	}}, nil
}

// CleanRestores implements storage.Driver: an interrupted rollback
// leaves only the image aside, which the next restore finishes.
func (Driver) CleanRestores(storage.Pool, storage.Volume) {}
