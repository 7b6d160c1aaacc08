package rbd

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/run"
)

// sameCluster tells whether path is an rbd image rbd cp and rbd clone
// can reach from the pool spec s (the same ceph.conf and client).
func sameCluster(path string, s Spec) (Spec, bool) {
	src, err := ParsePath(path)
	return src, err == nil && src.Conn == s.Conn
}

// imageUsed is what an image (or one of its snapshots) holds, by rbd du.
func (d Driver) imageUsed(ctx context.Context, s Spec, snap string) (int64, error) {
	du, err := d.c().DU(ctx, s)
	if err != nil {
		return 0, err
	}
	for _, u := range du {
		if u.Name == s.Image && u.Snapshot == snap {
			return u.Used, nil
		}
	}
	return 0, nil
}

// FreezeCost implements storage.Driver: a golden image is a full copy of
// what its source holds.
func (d Driver) FreezeCost(ctx context.Context, src storage.FreezeSource, p storage.Pool) (int64, error) {
	ps, err := PoolConn(p)
	if err != nil {
		return 0, err
	}
	if s, ok := sameCluster(src.Volume.Path, ps); ok {
		snap := ""
		if src.Point != nil {
			snap = src.Point.Ref
		}
		return d.imageUsed(ctx, s, snap)
	}
	from := src.Volume.Path
	if src.Point != nil && src.Point.Method != "qcow2-internal" {
		from = src.Point.Ref
	}
	info, err := image.InspectAs(from, storage.FormatRaw)
	if err != nil {
		return 0, err
	}
	return info.AllocatedBytes, nil
}

// Freeze implements storage.Driver: the source's data at that instant
// (or at its point) is copied into a new image, which gets the protected
// snapshot GoldenSnap its clones are made from. An rbd source is copied
// by rbd cp (no snapshots come with it); a file (a volume of a dir pool,
// or a point's copy) by qemu-img convert into an image made first.
func (d Driver) Freeze(ctx context.Context, p storage.Pool, src storage.FreezeSource, dst storage.Image, _ storage.Progress) (int64, int64, error) {
	if err := rawOnly(dst.Format); err != nil {
		return 0, 0, err
	}
	ps, err := PoolConn(p)
	if err != nil {
		return 0, 0, err
	}
	g, err := ParsePath(dst.Path)
	if err != nil {
		return 0, 0, err
	}
	if s, ok := sameCluster(src.Volume.Path, ps); ok {
		snap := ""
		if src.Point != nil {
			snap = src.Point.Ref
		}
		if err := d.c().Copy(ctx, s, snap, g); err != nil {
			return 0, 0, err
		}
	} else if err := d.convertInto(ctx, src, g); err != nil {
		return 0, 0, err
	}
	if err := d.c().SnapCreate(ctx, g, GoldenSnap); err != nil {
		return 0, 0, err
	}
	if err := d.c().SnapProtect(ctx, g, GoldenSnap); err != nil {
		return 0, 0, err
	}
	img, err := d.c().Info(ctx, g)
	if err != nil {
		return 0, 0, err
	}
	used, err := d.imageUsed(ctx, g, GoldenSnap)
	if err != nil {
		return 0, 0, err
	}
	return img.Size, used, nil
}

// convertInto copies a source outside this cluster into the new image
// g: made with strata's features at the source's virtual size, then
// written by qemu-img (which skips zeros).
func (d Driver) convertInto(ctx context.Context, src storage.FreezeSource, g Spec) error {
	from, format, snap := src.Volume.Path, src.Format, ""
	if src.Point != nil {
		if src.Point.Method == "qcow2-internal" {
			snap = src.Point.Ref
		} else {
			from = src.Point.Ref
		}
	}
	info, err := image.InspectAs(from, format)
	if err != nil {
		return err
	}
	if err := d.c().Create(ctx, g, info.VirtualSize); err != nil {
		return err
	}
	argv := image.QemuImgRead("convert", "-q", "-n", "-f", string(format))
	if snap != "" {
		argv = append(argv, "-l", "snapshot.name="+snap)
	}
	argv = append(argv, "-O", "raw", from, Path(g))
	return run.Run(ctx, nil, nil, argv...)
}

// PlanClone implements storage.Driver: a linked clone is an RBD clone of
// the golden's protected snapshot (O(1)); a full clone an rbd cp of it.
// A golden outside this cluster can only be copied (qemu-img convert).
func (d Driver) PlanClone(ctx context.Context, golden storage.Image, p storage.Pool, full bool) (storage.ClonePlan, error) {
	ps, err := PoolConn(p)
	if err != nil {
		return storage.ClonePlan{}, err
	}
	g, ok := sameCluster(golden.Path, ps)
	if ok && !full {
		return storage.ClonePlan{Method: CloneRBD, Linked: true, Format: storage.FormatRaw, Backing: golden.Path}, nil
	}
	var need int64
	if ok {
		need, err = d.imageUsed(ctx, g, GoldenSnap)
	} else {
		var info image.Info
		if info, err = image.InspectAs(golden.Path, golden.Format); err == nil {
			need = info.AllocatedBytes
		}
	}
	if err != nil {
		return storage.ClonePlan{}, err
	}
	return storage.ClonePlan{Method: CloneCopy, Format: storage.FormatRaw, Need: need}, nil
}

// Clone implements storage.Driver.
func (d Driver) Clone(ctx context.Context, p storage.Pool, golden storage.Image, dst storage.Volume, plan storage.ClonePlan, _ storage.Progress) error {
	ps, err := PoolConn(p)
	if err != nil {
		return err
	}
	c, err := ParsePath(dst.Path)
	if err != nil {
		return err
	}
	g, same := sameCluster(golden.Path, ps)
	switch {
	case plan.Method == CloneRBD:
		if !same {
			return storage.Errorf(storage.ErrInvalid, "golden image %q is not in this cluster: a linked clone cannot reach it", golden.Path)
		}
		return d.c().Clone(ctx, g, GoldenSnap, c)
	case same:
		return d.c().Copy(ctx, g, GoldenSnap, c)
	}
	return d.convertInto(ctx, storage.FreezeSource{Volume: storage.Volume{Path: golden.Path}, Format: golden.Format}, c)
}

// RemoveImages implements storage.Driver: a golden image goes only when
// rbd children lists no clone of it (storage.ErrInUse names them).
func (d Driver) RemoveImages(ctx context.Context, _ storage.Pool, paths []string) error {
	for _, path := range paths {
		s, err := ParsePath(path)
		if err != nil {
			return err
		}
		if err := d.removeImage(ctx, s); err != nil {
			return fmt.Errorf("remove %q: %w", path, err)
		}
	}
	return nil
}

// Flatten implements storage.Driver: rbd flatten copies the golden's
// data into the clone (and, with deep-flatten, into its snapshots) and
// cuts the link only at the end: a crash leaves the clone reading the
// same bytes, still linked, and running it again finishes it.
func (d Driver) Flatten(ctx context.Context, _ storage.Pool, v storage.Volume, _ []storage.PointRef, _ storage.Progress) (string, error) {
	s, err := ParsePath(v.Path)
	if err != nil {
		return "", err
	}
	img, err := d.c().Info(ctx, s)
	if err != nil {
		return "", err
	}
	if img.Parent == nil {
		return "", nil
	}
	backing := Path(Spec{Conn: s.Conn, Pool: img.Parent.Pool, Namespace: img.Parent.Namespace, Image: img.Parent.Image})
	if err := d.c().Flatten(ctx, s); err != nil {
		if errors.Is(err, storage.ErrInvalid) {
			// EINVAL: no parent any more (a run that was killed after
			// rbd had cut the link).
			if again, ierr := d.c().Info(ctx, s); ierr == nil && again.Parent == nil {
				return backing, nil
			}
		}
		return "", err
	}
	storage.Crashpoint("flatten:rbd-flattened")
	return backing, nil
}
