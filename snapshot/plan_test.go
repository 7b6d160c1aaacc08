package snapshot

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/store"
)

// Unit tests of the plans: catalog checks made before any disk is
// touched, on a catalog in a temporary directory (no image, no tool).

// planCatalog is a catalog with a pool "p" and the given volumes (in the
// pool, named by their IDs) and guests.
func planCatalog(t *testing.T, vols []storage.Volume, guests []storage.Guest) *catalog.Catalog {
	t.Helper()
	home := t.TempDir()
	c, err := catalog.Open(home, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Update(func(tx *catalog.Tx) error {
		if err := tx.AddPool(storage.Pool{Name: "p", Path: filepath.Join(home, "p"), Driver: "dir"}); err != nil {
			return err
		}
		for _, v := range vols {
			v.Pool, v.Format = "p", storage.FormatRaw
			if v.Path == "" {
				v.Path = filepath.Join(home, "p", v.ID+".raw")
			}
			if err := tx.AddVolume(v); err != nil {
				return err
			}
		}
		for _, g := range guests {
			if err := tx.PutGuest(g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func view(t *testing.T, c *catalog.Catalog, fn func(tx *catalog.Tx) error) error {
	t.Helper()
	return c.View(fn)
}

func diskPoints(ids ...string) []DiskPoint {
	var out []DiskPoint
	for _, id := range ids {
		out = append(out, DiskPoint{VolumeID: id, Volume: "vol-" + id, PointRef: storage.PointRef{Method: MethodCopy}})
	}
	return out
}

// A rollback is planned over the target's disks now and the point's, and
// refused before any disk is touched when a disk of the point is gone,
// read by an overlay, or now held by another guest.
func TestRollbackPlanRefusesADiskAnotherGuestHolds(t *testing.T) {
	c := planCatalog(t,
		[]storage.Volume{{ID: "00000000000000a1", Name: "sys"}, {ID: "00000000000000a2", Name: "data"}, {ID: "00000000000000a3", Name: "base"}, {ID: "00000000000000a5", Name: "new"}},
		[]storage.Guest{
			{ID: "00000000000000b1", Name: "web", Disks: []string{"00000000000000a1", "00000000000000a5"}},
			{ID: "00000000000000b2", Name: "db", Disks: []string{"00000000000000a2"}},
		})
	if err := c.Update(func(tx *catalog.Tx) error {
		base, err := tx.VolumeByID("00000000000000a3")
		if err != nil {
			return err
		}
		return tx.AddVolume(storage.Volume{ID: "00000000000000a4", Name: "overlay", Path: base.Path + ".overlay", Backing: base.Path})
	}); err != nil {
		t.Fatal(err)
	}
	web := Target{Key: catalog.GuestKey("00000000000000b1"), Name: "web"}
	plan := func(tg Target, disks ...string) (rollbackPlan, error) {
		var rp rollbackPlan
		err := view(t, c, func(tx *catalog.Tx) (err error) {
			rp, err = planRollback(tx, tg, Point{ID: 4, TargetKey: tg.Key, Disks: diskPoints(disks...)})
			return err
		})
		return rp, err
	}
	rp, err := plan(web, "00000000000000a1")
	if err != nil {
		t.Fatal(err)
	}
	var touched []string
	for _, v := range rp.touched {
		touched = append(touched, v.Name)
	}
	if strings.Join(touched, " ") != "sys new sys" || len(rp.restored) != 1 || rp.restored[0].Name != "sys" || strings.Join(rp.also, " ") != "00000000000000a1" {
		t.Errorf("plan: touched %v, restored %v, also %v; want the guest's disks now and the point's", touched, rp.restored, rp.also)
	}
	if _, err := plan(web, "00000000000000a1", "00000000000000a2"); !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `now a disk of guest "db"`) {
		t.Errorf("a point's disk that is now guest db's: %v, want in use by db", err)
	}
	if _, err := plan(web, "00000000000000a3"); !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `backing file of "overlay"`) {
		t.Errorf("a point's disk an overlay reads: %v, want in use by the overlay", err)
	}
	if _, err := plan(web, "00000000000000ff"); !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "no longer exists") {
		t.Errorf("a point's disk that is gone: %v, want a precondition", err)
	}
	// A volume's own point: the guests using it are not asked.
	vol := Target{Key: catalog.VolumeKey("00000000000000a2"), Name: "data"}
	if _, err := plan(vol, "00000000000000a2"); err != nil {
		t.Errorf("a volume target's point of itself: %v", err)
	}
}

// A new point is refused when another point of its target has its name,
// or when it is a post point without a ready pre point to pair with.
func TestNewPointRefusedByTakenNameOrMissingPre(t *testing.T) {
	c := planCatalog(t, []storage.Volume{{ID: "00000000000000a1", Name: "sys"}}, nil)
	tg := Target{Key: catalog.VolumeKey("00000000000000a1"), Name: "sys"}
	if err := c.Update(func(tx *catalog.Tx) error {
		for _, p := range []Point{
			{ID: 1, Name: "before", Kind: KindSingle, State: stateReady},
			{ID: 2, Kind: KindPre, State: stateReady},
			{ID: 3, Kind: KindPre, State: stateCreating},
		} {
			p.TargetKey, p.Disks = tg.Key, diskPoints("00000000000000a1")
			if err := putPoint(tx, p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c2 := range []struct {
		o    CreateOptions
		want error
	}{
		{CreateOptions{Name: "before"}, storage.ErrExists},
		{CreateOptions{Name: "after"}, nil},
		{CreateOptions{Kind: KindPost, PreID: 1}, storage.ErrInvalid},
		{CreateOptions{Kind: KindPost, PreID: 3}, storage.ErrNotFound},
		{CreateOptions{Kind: KindPost, PreID: 9}, storage.ErrNotFound},
		{CreateOptions{Kind: KindPost, PreID: 2}, nil},
	} {
		err := view(t, c, func(tx *catalog.Tx) error { return checkNewPoint(tx, tg, c2.o) })
		if (c2.want == nil) != (err == nil) || (c2.want != nil && !errors.Is(err, c2.want)) {
			t.Errorf("%+v: %v, want %v", c2.o, err, c2.want)
		}
	}
	var pl pointPlan
	if err := view(t, c, func(tx *catalog.Tx) (err error) {
		pl, err = planPoint(tx, tg, CreateOptions{Kind: KindPre, Tags: nil}, time.Unix(0, 0), "0123456789ab")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if pl.label != "1-pre" || pl.point.State != stateCreating || pl.point.Tags == nil || len(pl.vols) != 1 {
		t.Errorf("planned point: label %q, %+v", pl.label, pl.point)
	}
}

// A flatten holds the locks of every target whose points include its
// disks: a volume's and its guests', or a guest's and its disks'.
func TestFlattenPlanLocksEveryTargetOfItsDisks(t *testing.T) {
	c := planCatalog(t,
		[]storage.Volume{{ID: "00000000000000a1", Name: "sys"}, {ID: "00000000000000a2", Name: "data"}},
		[]storage.Guest{{ID: "00000000000000b1", Name: "web", Disks: []string{"00000000000000a1", "00000000000000a2"}}})
	plan := func(r TargetRef) string {
		var targets []Target
		if err := view(t, c, func(tx *catalog.Tx) (err error) { _, targets, err = planFlatten(tx, r); return err }); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, tg := range targets {
			s = append(s, tg.String())
		}
		return strings.Join(s, " ")
	}
	if got := plan(TargetRef{Name: "data", Volume: true}); got != "guest:web volume:data" {
		t.Errorf("flatten of volume data locks %s", got)
	}
	if got := plan(TargetRef{Name: "web"}); got != "guest:web volume:sys volume:data" {
		t.Errorf("flatten of guest web locks %s", got)
	}
}

const cloneGoldenDef = `api_version: strata/v1
name: web
memory: 256
disks:
  - volume: web-sys
    vdev: hda
nics:
  - mac: 00:16:3e:00:00:01
    bridge: xenbr0
  - mac: 00:16:3e:00:00:02
    bridge: xenbr1
`

// Clones are refused names a guest or volume has (a guest clone's disks
// included), and recorded each with its own UUID and MACs no other guest
// has, its disks on its new volumes; once recorded, their names are
// taken.
func TestClonePlanRefusesTakenNamesAndRecordsEachCloneWithItsOwnIdentity(t *testing.T) {
	c := planCatalog(t, []storage.Volume{{ID: "00000000000000a1", Name: "web-sys"}, {ID: "00000000000000a2", Name: "b-disk1"}},
		[]storage.Guest{{ID: "00000000000000b1", Name: "web", Disks: []string{"00000000000000a1"}, Definition: cloneGoldenDef}})
	g := goldenRecord{ID: "00000000000000c1", Name: "base", Kind: GoldenGuest, State: stateReady, Definition: cloneGoldenDef,
		Disks: []GoldenDisk{{Volume: "web-sys", VolumeID: "00000000000000a1", Path: "/golden/sys.raw", Format: storage.FormatRaw, Pool: "p"}}}
	for _, c2 := range []struct{ names, want string }{
		{"web", `guest "web" already exists`},
		{"b", `volume "b-disk1" already exists, and clone "b" needs the name for its disk 1`},
	} {
		err := view(t, c, func(tx *catalog.Tx) error {
			_, err := clonePools(tx, g, CloneOptions{}, strings.Fields(c2.names))
			return err
		})
		if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("clone named %s: %v, want %q", c2.names, err, c2.want)
		}
	}
	names := CloneOptions{Name: "c", Count: 2}.CloneNames()
	var dests []storage.Pool
	if err := view(t, c, func(tx *catalog.Tx) (err error) { dests, err = clonePools(tx, g, CloneOptions{}, names); return err }); err != nil {
		t.Fatal(err)
	}
	methods := []storage.ClonePlan{{Method: CloneLinked, Format: storage.FormatQcow2, Backing: "/golden/sys.raw"}}
	plans := layoutClones(g, names, dests, methods, time.Unix(0, 0), func(k int, id string, f storage.Format) string {
		return filepath.Join(dests[k].Path, id+"."+string(f))
	})
	if err := c.Update(func(tx *catalog.Tx) error { return recordClones(tx, g, plans) }); err != nil {
		t.Fatal(err)
	}
	macs := map[string]bool{"00:16:3e:00:00:01": true, "00:16:3e:00:00:02": true}
	for _, pl := range plans {
		if len(pl.info.MACs) != 2 || pl.info.UUID == "" {
			t.Errorf("clone %s: UUID %q, MACs %v", pl.info.Name, pl.info.UUID, pl.info.MACs)
		}
		for _, mac := range pl.info.MACs {
			if macs[strings.ToLower(mac)] {
				t.Errorf("clone %s has MAC %s, which another guest or clone has", pl.info.Name, mac)
			}
			macs[strings.ToLower(mac)] = true
		}
		err := view(t, c, func(tx *catalog.Tx) error {
			gu, err := tx.Guest(pl.info.Name)
			if err != nil {
				return err
			}
			v, err := tx.Volume(pl.info.Name + "-disk1")
			if err != nil {
				return err
			}
			if len(gu.Disks) != 1 || gu.Disks[0] != v.ID || v.Backing != "/golden/sys.raw" || !strings.Contains(gu.Definition, "volume: "+v.Name) {
				t.Errorf("clone %s recorded as %+v with disk %+v", pl.info.Name, gu, v)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	err := view(t, c, func(tx *catalog.Tx) error {
		_, err := clonePools(tx, g, CloneOptions{}, names)
		return err
	})
	if !errors.Is(err, storage.ErrExists) {
		t.Errorf("the clones' names are free again after they are recorded: %v", err)
	}
}

// A guest operation locks the guest and each of its disks, and a "busy"
// error names the one that is held: the disk's volume when another
// strata works on that volume alone, not the guest.
func TestGuestLockSetNamesEachDiskInItsBusyError(t *testing.T) {
	c := planCatalog(t,
		[]storage.Volume{{ID: "00000000000000a1", Name: "sys"}, {ID: "00000000000000a2", Name: "data"}},
		[]storage.Guest{{ID: "00000000000000b1", Name: "web", Disks: []string{"00000000000000a1", "00000000000000a2"}}})
	m := &Manager{st: &store.Store{Catalog: c}, lockTimeout: 50 * time.Millisecond}
	web := Target{Key: catalog.GuestKey("00000000000000b1"), Name: "web"}
	release, err := store.LockKey(c.Home(), catalog.VolumeKey("00000000000000a2").String(), "volume:data", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = store.LockSet(c.Home(), m.lockTimeout, func() ([]store.Lock, error) { return m.lockSet(web) })
	if !errors.Is(err, storage.ErrBusy) || !strings.HasPrefix(err.Error(), `volume "data" (a disk of guest:web) is busy`) {
		t.Fatalf("guest locks while its disk data is locked: %v", err)
	}
}
