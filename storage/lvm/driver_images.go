package lvm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/strata-vm/strata/storage"
)

// Clone methods (recorded with a clone).
const (
	CloneThin = "lvm-thin-snapshot" // a writable thin snapshot of the golden: O(1)
	CloneCopy = "lvm-copy"          // a new LV the golden's bytes are copied into
)

// source is the LV a golden image is frozen from: the volume, or one of
// its points (a Moved point not moved yet is the volume itself).
func (d Driver) source(ctx context.Context, src storage.FreezeSource) (LV, error) {
	vg, lv, err := volumeLV(src.Volume)
	if err != nil {
		return LV{}, err
	}
	if src.Point != nil {
		pvg, point, err := splitRef(src.Point.Ref)
		if err != nil {
			return LV{}, err
		}
		l, ok, err := d.lookup(ctx, pvg, point)
		if err != nil {
			return LV{}, err
		}
		if ok {
			if l.Attr.Invalid {
				return LV{}, storage.Errorf(storage.ErrPrecondition, "restore point %q of volume %q overflowed and holds nothing usable", src.Point.Ref, src.Volume.Name)
			}
			if l.Attr.Snapshot && l.Origin != "" {
				// A classic snapshot's lv_size is its copy-on-write
				// space; its device reads as large as its origin.
				o, err := d.c().LV(ctx, pvg, l.Origin)
				if err != nil {
					return LV{}, err
				}
				l.Size = o.Size
			}
			return l, nil
		}
		if !src.Point.Moved {
			return LV{}, storage.Errorf(storage.ErrNotFound, "the data of the restore point (logical volume %q) is gone", src.Point.Ref)
		}
	}
	return d.c().LV(ctx, vg, lv)
}

// sharesPool: a thin snapshot of l can live in pool p (same VG and
// thin pool).
func sharesPool(l LV, p storage.Pool) bool {
	return l.Attr.Thin && p.LVM != nil && p.LVM.ThinPool != "" && l.VG == p.LVM.VG && l.Pool == p.LVM.ThinPool
}

// FreezeCost implements storage.Driver: nothing for a thin snapshot,
// the volume's size for a copy into a thick LV.
func (d Driver) FreezeCost(ctx context.Context, src storage.FreezeSource, p storage.Pool) (int64, error) {
	l, err := d.source(ctx, src)
	if err != nil {
		return 0, err
	}
	if sharesPool(l, p) || (p.LVM != nil && p.LVM.ThinPool != "") {
		return 0, nil // thin: the guardrail is the pool's usage
	}
	return l.Size, nil
}

// Freeze implements storage.Driver: a read-only thin snapshot where the
// source is a thin LV of the same thin pool (O(1)), else a copy into a
// new LV made read-only.
func (d Driver) Freeze(ctx context.Context, p storage.Pool, src storage.FreezeSource, dst storage.Image, prog storage.Progress) (int64, int64, error) {
	if err := rawOnly(dst.Format, "golden image "+dst.Path); err != nil {
		return 0, 0, err
	}
	l, err := d.source(ctx, src)
	if err != nil {
		return 0, 0, err
	}
	vg, name, ok := SplitDevPath(dst.Path)
	if !ok {
		return 0, 0, storage.Errorf(storage.ErrInvalid, "%q is not a logical volume", dst.Path)
	}
	if sharesPool(l, p) {
		if err := d.checkThin(ctx, p, "a golden image"); err != nil {
			return 0, 0, err
		}
		if err := d.c().ThinSnapshot(ctx, ThinSnapshotOptions{VG: vg, Origin: l.Name, Name: name, ReadOnly: true, Activate: true, Tags: strataTags}); err != nil {
			return 0, 0, err
		}
		return l.Size, 0, nil
	}
	if err := d.copyInto(ctx, p, l, vg, name, prog); err != nil {
		return 0, 0, err
	}
	no := false
	if err := d.c().Change(ctx, vg, name, ChangeOptions{Writable: &no}); err != nil {
		return 0, 0, err
	}
	return l.Size, l.Size, nil
}

// copyInto makes LV vg/name in pool p of src's size and copies src into
// it (a thin target skips the zero blocks: they read as zeros).
func (d Driver) copyInto(ctx context.Context, p storage.Pool, src LV, vg, name string, prog storage.Progress) error {
	lp, err := lvmPool(p)
	if err != nil {
		return err
	}
	if vg != lp.VG {
		return storage.Errorf(storage.ErrInvalid, "%q is not in volume group %q", vg+"/"+name, lp.VG)
	}
	mode := copyAll
	if lp.ThinPool != "" {
		mode = copySparse
		if err := d.checkThin(ctx, p, "a copy of "+src.FullName()); err != nil {
			return err
		}
	}
	if err := d.active(ctx, src.VG, src.Name); err != nil {
		return err
	}
	// A thick LV's space: lvcreate refuses atomically (spaceRefused).
	if err := d.c().Create(ctx, CreateOptions{VG: vg, Name: name, Size: src.Size, ThinPool: lp.ThinPool, Tags: strataTags}); err != nil {
		if lp.ThinPool == "" {
			return d.spaceRefused(ctx, err, vg, src.Size, "a copy of "+src.FullName())
		}
		return err
	}
	return copyDevice(ctx, DevPath(src.VG, src.Name), DevPath(vg, name), mode, prog, "")
}

// PlanClone implements storage.Driver: never linked (an LV depends on
// no other); a thin snapshot of the golden where it shares the clone's
// thin pool, else a copy.
func (d Driver) PlanClone(ctx context.Context, golden storage.Image, p storage.Pool, _ bool) (storage.ClonePlan, error) {
	if err := rawOnly(golden.Format, "a clone of "+golden.Path); err != nil {
		return storage.ClonePlan{}, err
	}
	vg, name, ok := SplitDevPath(golden.Path)
	if !ok {
		return storage.ClonePlan{}, storage.Errorf(storage.ErrInvalid, "golden image %q is not a logical volume", golden.Path)
	}
	g, err := d.c().LV(ctx, vg, name)
	if err != nil {
		return storage.ClonePlan{}, err
	}
	if sharesPool(g, p) {
		return storage.ClonePlan{Method: CloneThin, Format: storage.FormatRaw}, nil
	}
	need := g.Size
	if p.LVM != nil && p.LVM.ThinPool != "" {
		need = 0
	}
	return storage.ClonePlan{Method: CloneCopy, Format: storage.FormatRaw, Need: need}, nil
}

// Clone implements storage.Driver.
func (d Driver) Clone(ctx context.Context, p storage.Pool, golden storage.Image, dst storage.Volume, plan storage.ClonePlan, prog storage.Progress) error {
	gvg, gname, ok := SplitDevPath(golden.Path)
	if !ok {
		return storage.Errorf(storage.ErrInvalid, "golden image %q is not a logical volume", golden.Path)
	}
	vg, name, err := volumeLV(dst)
	if err != nil {
		return err
	}
	g, err := d.c().LV(ctx, gvg, gname)
	if err != nil {
		return err
	}
	if plan.Method == CloneThin {
		if err := d.checkThin(ctx, p, "a clone"); err != nil {
			return err
		}
		return d.c().ThinSnapshot(ctx, ThinSnapshotOptions{VG: vg, Origin: gname, Name: name, Activate: true, Tags: strataTags})
	}
	return d.copyInto(ctx, p, g, vg, name, prog)
}

// RemoveImages implements storage.Driver: LVs strata made; absent is
// success.
func (d Driver) RemoveImages(ctx context.Context, _ storage.Pool, paths []string) error {
	for _, path := range paths {
		vg, name, ok := SplitDevPath(path)
		if !ok {
			return storage.Errorf(storage.ErrInvalid, "%q is not a logical volume", path)
		}
		l, there, err := d.lookup(ctx, vg, name)
		if err != nil {
			return err
		}
		if !there {
			continue
		}
		if !l.HasTag(TagStrata) {
			return storage.Errorf(storage.ErrPrecondition, "logical volume %q was not made by strata (no tag %q): strata does not remove it", l.FullName(), TagStrata)
		}
		if err := d.c().Remove(ctx, vg, name); err != nil {
			return err
		}
	}
	return nil
}

// Flatten implements storage.Driver: an LV never reads from another
// (a thin clone shares blocks but does not depend on its golden), so
// there is nothing to do.
func (Driver) Flatten(context.Context, storage.Pool, storage.Volume, []storage.PointRef, storage.Progress) (string, error) {
	return "", nil
}

type copyMode int

const (
	copyAll    copyMode = iota // write every block (a new thick LV holds old data)
	copySparse                 // skip zero blocks (a new thin LV reads zeros)
	copyDiff                   // write only the blocks that differ from the target's
)

const copyBlock = 1 << 20

// copyDevice copies block device src into dst (which is at least as
// large), then flushes dst. crashStep, if set, is a Crashpoint halfway.
func copyDevice(ctx context.Context, src, dst string, mode copyMode, prog storage.Progress, crashStep string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	size, err := in.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if prog == nil {
		prog = storage.NoProgress{}
	}
	prog.Start(size, "copy "+src)
	defer prog.Done()
	buf, cur := make([]byte, copyBlock), make([]byte, copyBlock)
	zero := make([]byte, copyBlock)
	for off := int64(0); off < size; off += copyBlock {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(copyBlock, size-off))
		if _, err := in.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
		write := true
		switch mode {
		case copySparse:
			write = !bytes.Equal(buf[:n], zero[:n])
		case copyDiff:
			if _, err := out.ReadAt(cur[:n], off); err != nil {
				return fmt.Errorf("read %s: %w", dst, err)
			}
			write = !bytes.Equal(buf[:n], cur[:n])
		}
		if write {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("write %s: %w", dst, err)
			}
		}
		prog.Add(int64(n))
		if crashStep != "" && off <= size/2 && off+copyBlock > size/2 {
			if err := out.Sync(); err != nil {
				return err
			}
			storage.Crashpoint(crashStep)
		}
	}
	return out.Sync()
}
