package rbd_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/storagetest"
)

// TestRollbackRecordsTheStateItLeaves: a first RestorePoint records the
// state the rollback will leave before it runs (read from the snapshot
// and the image's header); after a rollback that shrinks the image back
// and drops objects written since the point, that state is the image's
// own fingerprint, as recovery compares it.
func TestRollbackRecordsTheStateItLeaves(t *testing.T) {
	eachPath(t, testRollbackRecordsTheStateItLeaves)
}

func testRollbackRecordsTheStateItLeaves(t *testing.T, d rbd.Driver) {
	ctx := context.Background()
	p := testPool(t)
	v := storage.Volume{ID: storage.NewID(), Name: "state", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 8<<20); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x41 0 64k", v.Path)
	ref, err := d.PlanPoint(ctx, p, v, "0000000000a1", storage.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.TakePoint(ctx, p, v, &ref, storage.NoProgress{}); err != nil {
		t.Fatal(err)
	}
	at, _, err := d.Fingerprint(p, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Resize(ctx, p, v.Path, v.Format, 16<<20, false); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x42 0 64k", "-c", "write -P 0x42 12M 64k", v.Path)
	var rec *storage.Fingerprint
	if err := d.RestorePoint(ctx, p, v, ref, storage.RestoreStep{Record: func(fp storage.Fingerprint) error { rec = &fp; return nil }}); err != nil {
		t.Fatal(err)
	}
	fp, ok, err := d.Fingerprint(p, v)
	if err != nil || !ok {
		t.Fatalf("Fingerprint after the rollback: %v %v", ok, err)
	}
	if rec == nil || *rec != fp {
		t.Fatalf("the rollback recorded %+v, the image is %+v", rec, fp)
	}
	if fp.Size != 8<<20 || fp.Ino != at.Ino {
		t.Fatalf("after the rollback: %+v, want the size and ID of %+v", fp, at)
	}
	if got := firstByte(t, v.Path, 0); got != 0x41 {
		t.Fatalf("after the rollback the volume holds %#x, want 0x41", got)
	}
	if err := d.RemovePoint(ctx, p, v, ref); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackAlwaysChangesTheFingerprint: a rollback to a point whose
// objects are the image's (the data overwritten in place since, within
// librbd's mtime interval) keeps the image's ID, size, modify time and
// object map; its restore generation still makes the fingerprint
// another, and a second rollback to the same point another again, each
// the one the rollback recorded. (Undoing a multi-disk rollback tells a
// restored disk from an untouched one by this.)
func TestRollbackAlwaysChangesTheFingerprint(t *testing.T) {
	eachPath(t, testRollbackAlwaysChangesTheFingerprint)
}

func testRollbackAlwaysChangesTheFingerprint(t *testing.T, d rbd.Driver) {
	ctx := context.Background()
	p := testPool(t)
	v := storage.Volume{ID: storage.NewID(), Name: "same-objects", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 8<<20); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x41 0 64k", v.Path)
	ref, err := d.PlanPoint(ctx, p, v, "0000000000b1", storage.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.TakePoint(ctx, p, v, &ref, storage.NoProgress{}); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x42 0 64k", v.Path)
	seen := map[storage.Fingerprint]string{}
	before, _, err := d.Fingerprint(p, v)
	if err != nil {
		t.Fatal(err)
	}
	seen[before] = "before the rollbacks"
	for i := range 2 {
		var rec storage.Fingerprint
		if err := d.RestorePoint(ctx, p, v, ref, storage.RestoreStep{Record: func(fp storage.Fingerprint) error { rec = fp; return nil }}); err != nil {
			t.Fatal(err)
		}
		fp, ok, err := d.Fingerprint(p, v)
		if err != nil || !ok {
			t.Fatalf("Fingerprint after rollback %d: %v %v", i+1, ok, err)
		}
		if fp != rec {
			t.Fatalf("rollback %d recorded %+v, the image is %+v", i+1, rec, fp)
		}
		if was, dup := seen[fp]; dup {
			t.Fatalf("after rollback %d the fingerprint %+v is the one %s", i+1, fp, was)
		}
		seen[fp] = fmt.Sprintf("after rollback %d", i+1)
		if fp.Ino != before.Ino || fp.Size != before.Size {
			t.Fatalf("after rollback %d: %+v, want the ID and size of %+v", i+1, fp, before)
		}
		if got := firstByte(t, v.Path, 0); got != 0x41 {
			t.Fatalf("after rollback %d the volume holds %#x, want 0x41", i+1, got)
		}
	}
	if err := d.RemovePoint(ctx, p, v, ref); err != nil {
		t.Fatal(err)
	}
}

// TestFingerprintOpensNoImage: reading a fingerprint (which every
// rollback's check does while another process may be asking whether a
// guest has the image open) never shows as a client of the image: rbd
// status lists no watcher while fingerprints are read.
func TestFingerprintOpensNoImage(t *testing.T) { eachPath(t, testFingerprintOpensNoImage) }

func testFingerprintOpensNoImage(t *testing.T, d rbd.Driver) {
	ctx := context.Background()
	p := testPool(t)
	v := storage.Volume{ID: storage.NewID(), Name: "watched", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 4<<20); err != nil {
		t.Fatal(err)
	}
	s, err := rbd.ParsePath(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 6)
	for range 6 {
		go func() { _, _, err := d.Fingerprint(p, v); done <- err }()
	}
	c := &rbd.Client{}
	for left := 6; left > 0; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			left--
		default:
			if w, err := c.Watchers(ctx, s); err != nil || len(w) > 0 {
				t.Fatalf("watchers while fingerprints are read: %v %v", w, err)
			}
		}
	}
}
