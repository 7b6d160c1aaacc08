package qcow2_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-vm/strata/storage/qcow2"
	"github.com/strata-vm/strata/storage/storagetest"
)

// Internal snapshots are taken, listed, applied and deleted with the
// image's data following them; an overlay records its backing.
func TestSnapshotsFollowTheImage(t *testing.T) {
	storagetest.NeedTool(t, "qemu-img")
	storagetest.NeedTool(t, "qemu-io")
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "a.qcow2")
	if err := qcow2.Create(ctx, p, 8<<20, "", ""); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", p)
	for _, step := range []func() error{
		func() error { return qcow2.CreateSnapshot(ctx, p, "one") },
		func() error { return qcow2.CreateSnapshot(ctx, p, "two") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	storagetest.Cmd(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x22 0 64k", p)
	if names, err := qcow2.Snapshots(ctx, p); err != nil || !slices.Equal(names, []string{"one", "two"}) {
		t.Fatalf("Snapshots: %v %v", names, err)
	}
	if err := qcow2.ApplySnapshot(ctx, p, "one"); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "qcow2", "-c", "read -P 0x11 0 64k", p)
	if err := qcow2.DeleteSnapshot(ctx, p, "two"); err != nil {
		t.Fatal(err)
	}
	if ok, err := qcow2.HasSnapshot(ctx, p, "two", true); ok || err != nil {
		t.Errorf("deleted snapshot still there: %v %v", ok, err)
	}
	if err := qcow2.Check(ctx, p); err != nil {
		t.Errorf("Check of a clean image: %v", err)
	}
	if repaired, err := qcow2.Repair(ctx, p); repaired || err != nil {
		t.Errorf("Repair of a clean image: %v %v", repaired, err)
	}
	o := filepath.Join(dir, "o.qcow2")
	if err := qcow2.Create(ctx, o, 0, p, "qcow2"); err != nil {
		t.Fatal(err)
	}
	info, err := qcow2.ReadInfo(ctx, o, false)
	if err != nil || info.BackingFile != p || info.VirtualSize != 8<<20 {
		t.Errorf("overlay info %+v %v", info, err)
	}
}

// Reads never wait for, nor fail on, the lock a running guest holds.
func TestReadsOfAnImageAGuestHolds(t *testing.T) {
	storagetest.NeedTool(t, "qemu-img")
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "held.qcow2")
	if err := qcow2.Create(ctx, p, 8<<20, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.CreateSnapshot(ctx, p, "s"); err != nil {
		t.Fatal(err)
	}
	storagetest.RunningQEMU(t, "qcow2-held", storagetest.Drive{Path: p, Format: "qcow2"})
	if names, err := qcow2.Snapshots(ctx, p); err != nil || !slices.Equal(names, []string{"s"}) {
		t.Errorf("Snapshots of a held image: %v %v", names, err)
	}
	if err := qcow2.Check(ctx, p); err != nil {
		t.Errorf("Check of a held image: %v", err)
	}
	if err := qcow2.CreateSnapshot(ctx, p, "t"); err == nil {
		t.Errorf("a write to a held image was not refused by its lock")
	}
}
