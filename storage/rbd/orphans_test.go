package rbd_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/storagetest"
)

// Orphans lists, in one listing of the pool (on the tools and on the
// helper), the images named as strata names its images (a volume's
// stable ID, or that name set aside by a rollback) that none of the
// known paths names; RemoveOrphan removes one, but not while a client
// has it open or while it holds a snapshot to keep; a pool's owner
// marker reads back as it was claimed.
func TestOrphansAreStrataImagesNoPathNames(t *testing.T) {
	eachPath(t, func(t *testing.T, d rbd.Driver) {
		ctx := context.Background()
		c := storagetest.CephCluster(t)
		p := testPool(t)
		s, err := rbd.PoolConn(p)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := d.Orphans(ctx, p, nil); err != nil || len(got) != 0 {
			t.Fatalf("Orphans of an empty pool: %q, %v", got, err)
		}
		path := func(img string) string { return rbd.Path(s.WithImage(img)) }
		const known, orphan, aside, open, kept = "strata-00000000000000c0", "strata-00000000000000c1", "strata-00000000000000c2.strata-applying", "strata-00000000000000c3", "strata-00000000000000c4"
		for _, img := range []string{known, orphan, aside, open, kept, "strata-web", "strata-00000000000000C5", "mine"} {
			storagetest.Cmd(t, "rbd", "--conf", c.Conf, "create", "--size", "1M", s.WithImage(img).String())
		}
		storagetest.Cmd(t, "rbd", "--conf", c.Conf, "snap", "create", s.WithImage(kept).Snap("strata-0123456789ab"))
		got, err := d.Orphans(ctx, p, []string{path(known), "rbd:other/" + orphan})
		sort.Strings(got)
		want := []string{path(orphan), path(aside), path(open), path(kept)}
		sort.Strings(want)
		if err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("Orphans: %q, %v\nwant %q", got, err, want)
		}
		stop := storagetest.HoldRBDOpen(t, path(open))
		keep := map[string]bool{"strata-0123456789ab": true}
		if err := d.RemoveOrphan(ctx, p, path(open), keep); !errors.Is(err, storage.ErrInUse) {
			t.Errorf("RemoveOrphan of an image a client has open: %v, want in use", err)
		}
		if err := d.RemoveOrphan(ctx, p, path(kept), keep); !errors.Is(err, storage.ErrPrecondition) {
			t.Errorf("RemoveOrphan of an image holding a snapshot to keep: %v, want a failed precondition", err)
		}
		if err := d.RemoveOrphan(ctx, p, path("mine"), keep); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("RemoveOrphan of an image strata does not name: %v, want invalid", err)
		}
		stop()
		for _, img := range []string{orphan, aside, open} {
			if err := d.RemoveOrphan(ctx, p, path(img), keep); err != nil {
				t.Errorf("RemoveOrphan %s: %v", img, err)
			}
		}
		got, _ = d.Orphans(ctx, p, []string{path(known)})
		if len(got) != 1 || got[0] != path(kept) {
			t.Errorf("Orphans after the removals: %q, want only %s", got, kept)
		}

		if _, ok, err := d.PoolOwner(ctx, p); ok || err != nil {
			t.Fatalf("PoolOwner of a pool never claimed: ok %v, %v", ok, err)
		}
		const marker = `{"home_id":"0123456789abcdef","home":"/var/lib/strata"}`
		if err := d.ClaimPool(ctx, p, []byte(marker)); err != nil {
			t.Fatal(err)
		}
		if raw, ok, err := d.PoolOwner(ctx, p); !ok || err != nil || string(raw) != marker {
			t.Errorf("PoolOwner after ClaimPool: %q, %v, %v", raw, ok, err)
		}
	})
}
