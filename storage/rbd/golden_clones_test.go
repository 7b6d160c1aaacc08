package rbd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/storagetest"
)

// firstByte reads the byte at off of the volume at path (through
// qemu-img, as a guest's QEMU would read it).
func firstByte(t *testing.T, path string, off int) byte {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "read.raw")
	storagetest.Cmd(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", path, raw)
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[off:off+4096], bytes.Repeat(b[off:off+1], 4096)) {
		t.Fatalf("%s at %d holds mixed bytes", path, off)
	}
	return b[off]
}

// TestGoldenFiveLinkedClonesIsolated: five RBD clones of one golden
// image each keep their own writes, the golden keeps its bytes, rbd
// children backs the guard that refuses to remove the golden while any
// clone depends on it, and flatten frees them all.
func TestGoldenFiveLinkedClonesIsolated(t *testing.T) {
	ctx := context.Background()
	p := testPool(t)
	d := rbd.Driver{}
	src := storage.Volume{ID: storage.NewID(), Name: "src", Format: storage.FormatRaw}
	src.Path = d.VolumePath(p, src.ID, src.Format)
	if err := d.Create(ctx, p, src.Path, src.Format, 8<<20); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x60 0 64k", src.Path)
	g := storage.Image{Path: d.VolumePath(p, storage.NewID(), storage.FormatRaw), Format: storage.FormatRaw}
	if _, _, err := d.Freeze(ctx, p, storage.FreezeSource{Volume: src, Format: src.Format}, g, storage.NoProgress{}); err != nil {
		t.Fatal(err)
	}
	var clones []storage.Volume
	for i := 0; i < 5; i++ {
		plan, err := d.PlanClone(ctx, g, p, false)
		if err != nil || !plan.Linked || plan.Method != rbd.CloneRBD {
			t.Fatalf("PlanClone: %+v %v", plan, err)
		}
		c := storage.Volume{ID: storage.NewID(), Name: fmt.Sprintf("c%d", i), Format: plan.Format, Backing: plan.Backing}
		c.Path = d.VolumePath(p, c.ID, c.Format)
		if err := d.Clone(ctx, p, g, c, plan, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P 0x%02x 0 64k", 0x70+i), c.Path)
		clones = append(clones, c)
	}
	for i, c := range clones {
		if got := firstByte(t, c.Path, 0); got != byte(0x70+i) {
			t.Fatalf("clone %d holds %#x, want its own %#x", i, got, 0x70+i)
		}
		if got := firstByte(t, c.Path, 1<<20); got != 0 {
			t.Fatalf("clone %d holds %#x where nobody wrote", i, got)
		}
		if b, err := d.Backing(ctx, p, c); err != nil || b != g.Path {
			t.Fatalf("clone %d reads from %q (%v), want the golden %q", i, b, err, g.Path)
		}
	}
	if got := firstByte(t, g.Path, 0); got != 0x60 {
		t.Fatalf("the golden holds %#x after its clones were written", got)
	}
	err := d.RemoveImages(ctx, p, []string{g.Path})
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), rbd.ImageName(clones[4].ID)) {
		t.Fatalf("removing a golden with 5 clones: %v, want in use naming them", err)
	}
	for i, c := range clones {
		backing, err := d.Flatten(ctx, p, c, nil, storage.NoProgress{})
		if err != nil || backing != g.Path {
			t.Fatalf("Flatten clone %d: %q %v", i, backing, err)
		}
	}
	if err := d.RemoveImages(ctx, p, []string{g.Path}); err != nil {
		t.Fatalf("removing the golden after every clone was flattened: %v", err)
	}
	for i, c := range clones {
		if got := firstByte(t, c.Path, 0); got != byte(0x70+i) {
			t.Fatalf("flattened clone %d holds %#x, want %#x", i, got, 0x70+i)
		}
	}
}

// TestRollbackRefusedWhileImageOpen: a client holding the image open (a
// guest strata does not run) makes a rollback refuse before anything is
// written: the watchers are listed once the image is renamed aside (the
// rename is the first call of a rollback), and it is renamed back.
func TestRollbackRefusedWhileImageOpen(t *testing.T) { eachPath(t, testRollbackRefusedWhileImageOpen) }

func testRollbackRefusedWhileImageOpen(t *testing.T, d rbd.Driver) {
	ctx := context.Background()
	p := testPool(t)
	v := storage.Volume{ID: storage.NewID(), Name: "busy", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 4<<20); err != nil {
		t.Fatal(err)
	}
	ref, err := d.PlanPoint(ctx, p, v, "000000000001", storage.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.TakePoint(ctx, p, v, &ref, storage.NoProgress{}); err != nil {
		t.Fatal(err)
	}
	stop := storagetest.HoldRBDOpen(t, v.Path)
	defer stop()
	if err := d.CheckRestore(ctx, p, v, ref); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("CheckRestore of an open image: %v, want in use", err)
	}
	if err := d.RestorePoint(ctx, p, v, ref, storage.RestoreStep{}); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("RestorePoint of an open image: %v, want in use", err)
	}
	if _, ok, _ := d.Fingerprint(p, v); !ok {
		t.Fatal("the image left its live name")
	}
}

// TestLivePointOfOpenImage: the live mechanism of an rbd point is a
// snapshot taken while the image is open by its guest's QEMU (librbd has
// the lock holder take it); the point then exists and restores.
func TestLivePointOfOpenImage(t *testing.T) { eachPath(t, testLivePointOfOpenImage) }

func testLivePointOfOpenImage(t *testing.T, d rbd.Driver) {
	ctx := context.Background()
	p := testPool(t)
	v := storage.Volume{ID: storage.NewID(), Name: "live", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 4<<20); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x31 0 64k", v.Path)
	ref, err := d.PlanPoint(ctx, p, v, "000000000002", storage.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop := storagetest.HoldRBDOpen(t, v.Path)
	lp, err := d.LivePoint(ctx, p, v, ref, storage.LiveOptions{})
	if err != nil || lp.Mechanism != storage.LiveClone || lp.Clone == nil {
		t.Fatalf("LivePoint: %+v %v", lp, err)
	}
	if err := lp.Clone(); err != nil {
		t.Fatalf("the snapshot of an open image: %v", err)
	}
	stop()
	if ok, err := d.PointExists(ctx, p, v, ref); err != nil || !ok {
		t.Fatalf("the live point does not exist: %v %v", ok, err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x32 0 64k", v.Path)
	if err := d.RestorePoint(ctx, p, v, ref, storage.RestoreStep{}); err != nil {
		t.Fatal(err)
	}
	if got := firstByte(t, v.Path, 0); got != 0x31 {
		t.Fatalf("after restoring the live point: %#x", got)
	}
}
