// Package store is the entry point to strata's storage: it ties the catalog
// to the pool drivers and implements the pool and volume operations the CLI
// offers. Each operation validates all input before changing anything, and
// orders its steps so that a crash leaves at worst an orphan file named by
// an unused ID (which strata doctor removes), never a catalog record
// pointing at nothing.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/pattern"
	"github.com/strata-vm/strata/storage/run"
)

// Store is an open state home.
type Store struct {
	Catalog *catalog.Catalog
	// InUse tells who holds an image: every operation that writes,
	// replaces, truncates or removes one asks it first. Guest drivers add
	// their sources to it.
	InUse *inuse.Checker
	// Running refuses (storage.ErrInUse, naming the driver or host) a
	// guest that runs now, here or on another host of a shared catalog
	// (nil: none is known to): a running guest is not deleted. The guest
	// drivers know; they live above the store.
	Running     func(g storage.Guest) error
	lockTimeout time.Duration
	drivers     map[string]storage.Driver
}

// Open opens (creating on first use) the state home.
func Open(home string, lockTimeout time.Duration) (*Store, error) {
	return OpenWith(home, lockTimeout, catalog.Options{})
}

// OpenWith opens the state home with its catalog in the store o names
// (the bbolt file by default, or a shared etcd catalog).
func OpenWith(home string, lockTimeout time.Duration, o catalog.Options) (*Store, error) {
	c, err := catalog.OpenWith(home, lockTimeout, o)
	if err != nil {
		return nil, err
	}
	s := &Store{Catalog: c, InUse: inuse.Default(), lockTimeout: lockTimeout, drivers: map[string]storage.Driver{dir.Name: dir.Driver{}}}
	c.PoolDriver = func(name string) bool { _, ok := s.drivers[name]; return ok }
	return s, nil
}

// Driver returns the driver serving pool p.
func (s *Store) Driver(p storage.Pool) (storage.Driver, error) {
	d, ok := s.drivers[p.Driver]
	if !ok {
		return nil, storage.Errorf(storage.ErrNotSupported, "pool %q uses driver %q, which this strata does not have", p.Name, p.Driver)
	}
	return d, nil
}

// AddDriver makes a driver available to pools of its name (the dir
// driver is always there).
func (s *Store) AddDriver(name string, d storage.Driver) { s.drivers[name] = d }

// VolumeDriver returns the driver and pool serving a volume. A volume
// outside any pool (imported in place) is served by the dir driver, with
// its image's folder as a pseudo-pool.
func (s *Store) VolumeDriver(v storage.Volume) (d storage.Driver, p storage.Pool, err error) {
	err = s.Catalog.View(func(tx *catalog.Tx) error { d, p, err = s.VolumeDriverTx(tx, v); return err })
	return d, p, err
}

// VolumeDriverTx is VolumeDriver inside a catalog transaction.
func (s *Store) VolumeDriverTx(tx *catalog.Tx, v storage.Volume) (storage.Driver, storage.Pool, error) {
	if v.Pool != "" {
		if p, err := tx.Pool(v.Pool); err == nil {
			d, err := s.Driver(p)
			return d, p, err
		}
	}
	if vg, _, ok := lvm.SplitDevPath(v.Path); ok && v.Device {
		// A logical volume adopted in place: the lvm driver, with its
		// volume group as a pseudo-pool.
		if d, ok := s.drivers[lvm.Name]; ok {
			return d, storage.Pool{Driver: lvm.Name, LVM: &storage.LVMPool{VG: vg}}, nil
		}
	}
	return s.drivers[dir.Name], storage.Pool{Driver: dir.Name, Path: filepath.Dir(v.Path)}, nil
}

// PointDriver returns the driver that records restore point method name,
// and the method's description (method names are unique across drivers).
func (s *Store) PointDriver(method string) (storage.Driver, storage.PointMethod, error) {
	names := make([]string, 0, len(s.drivers))
	for n := range s.drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	var all []string
	for _, n := range names {
		d := s.drivers[n]
		for _, pm := range d.PointMethods() {
			if pm.Name == method {
				return d, pm, nil
			}
			all = append(all, pm.Name)
		}
	}
	list := strings.Join(all, ", ")
	if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " or " + list[i+2:]
	}
	return nil, storage.PointMethod{}, storage.Errorf(storage.ErrInvalid, "invalid method %q: use %s", method, list)
}

// AddPool registers a pool: a directory (created, mode 0711, if
// missing) or, for a driver that is a storage.PoolAdder, what that
// driver checks.
func (s *Store) AddPool(ctx context.Context, spec storage.Pool) (storage.PoolStatus, error) {
	name, driver := spec.Name, spec.Driver
	if err := storage.ValidateName("pool", name); err != nil {
		return storage.PoolStatus{}, err
	}
	d, ok := s.drivers[driver]
	if !ok {
		return storage.PoolStatus{}, storage.Errorf(storage.ErrInvalid, "invalid driver %q: available drivers: %s", driver, strings.Join(s.driverNames(), ", "))
	}
	if adder, ok := d.(storage.PoolAdder); ok {
		return s.addDevicePool(ctx, adder, spec)
	}
	return s.addDirPool(ctx, spec)
}

// addDirPool adds a pool that is a directory: checked, created when
// missing, claimed with this home's marker, then recorded; a failure
// undoes what it made.
func (s *Store) addDirPool(ctx context.Context, spec storage.Pool) (storage.PoolStatus, error) {
	name, path := spec.Name, spec.Path
	p, homeID, err := s.planDirPool(spec)
	if err != nil {
		return storage.PoolStatus{}, err
	}
	created := false
	if _, err := os.Stat(p.Path); os.IsNotExist(err) {
		if err := storage.MkdirPassable(p.Path); err != nil {
			return storage.PoolStatus{}, storage.Errorf(storage.ErrPrecondition, "cannot create pool directory %q: %w", p.Path, err)
		}
		created = true
	}
	abs := storage.RealPath(p.Path) // images in it are recorded under one spelling
	p.Path = abs
	undo := func() {
		if created {
			os.Remove(abs)
		}
	}
	// A pool must be writable: strata makes images in it.
	if err := unix.Access(abs, unix.W_OK|unix.X_OK); err != nil {
		undo()
		return storage.PoolStatus{}, storage.Errorf(storage.ErrPrecondition, "pool directory %q is not writable (%v): strata makes its images there", abs, err)
	}
	// An unreadable marker counts as none here: Claim reads it again
	// and refuses it, so it is never removed below.
	_, hadMarker, _ := catalog.ReadMarker(abs)
	if err := s.Catalog.Claim(abs, homeID); err != nil {
		undo()
		return storage.PoolStatus{}, err
	}
	if err := s.Catalog.Update(func(tx *catalog.Tx) error {
		// One directory, one pool, however it is spelled (a symlink to
		// another pool's directory would make doctor see that pool's
		// images twice, once as nobody's).
		pools, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, q := range pools {
			if sameDir(q.Path, abs) {
				return storage.Errorf(storage.ErrExists, "path %q is already pool %q (as %s)", path, q.Name, q.Path)
			}
		}
		return tx.AddPool(p)
	}); err != nil {
		if !hadMarker {
			os.Remove(filepath.Join(abs, catalog.MarkerFile))
		}
		undo()
		return storage.PoolStatus{}, err
	}
	log.Debug().Str("pool", name).Str("path", abs).Msg("pool added")
	return s.status(ctx, p, 0)
}

// planDirPool checks a directory pool before anything is made: its
// path, its name free, the directory no other home's; p.Path is
// absolute.
func (s *Store) planDirPool(spec storage.Pool) (p storage.Pool, homeID string, err error) {
	name, driver, path := spec.Name, spec.Driver, spec.Path
	if path == "" {
		return p, "", storage.Errorf(storage.ErrInvalid, "pool %q needs a directory: give --path DIR", name)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return p, "", storage.Errorf(storage.ErrInvalid, "invalid path %q: %w", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return p, "", storage.Errorf(storage.ErrInvalid, "invalid path %q: it is not a directory", path)
	}
	if err := s.checkPoolPlace(path, abs); err != nil {
		return p, "", err
	}
	if err := s.Catalog.View(func(tx *catalog.Tx) (err error) {
		if homeID, err = tx.HomeID(); err != nil {
			return err
		}
		_, err = tx.Pool(name)
		if err == nil {
			return storage.Errorf(storage.ErrExists, "pool %q already exists", name)
		}
		return nil
	}); err != nil {
		return p, "", err
	}
	// A directory is one home's pool: another home's (its marker says so),
	// or one holding strata's files without a marker (a pool of a home from
	// before markers), is refused, since each home's doctor would take the
	// other's images for orphans.
	if err := s.checkUnowned(path, abs, homeID); err != nil {
		return p, "", err
	}
	return storage.Pool{Name: name, Driver: driver, Path: abs, Created: time.Now().UTC()}, homeID, nil
}

// addDevicePool adds a pool that is not a directory: its driver checks
// (and completes) the record, the catalog keeps it.
func (s *Store) addDevicePool(ctx context.Context, d storage.PoolAdder, p storage.Pool) (storage.PoolStatus, error) {
	if p.Path != "" {
		return storage.PoolStatus{}, storage.Errorf(storage.ErrInvalid, "pool %q: driver %s takes no --path (its volumes are not files in a directory)", p.Name, p.Driver)
	}
	p.Created = time.Now().UTC()
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		if _, err := tx.Pool(p.Name); err == nil {
			return storage.Errorf(storage.ErrExists, "pool %q already exists", p.Name)
		}
		return nil
	}); err != nil {
		return storage.PoolStatus{}, err
	}
	if err := d.AddPool(ctx, &p); err != nil {
		return storage.PoolStatus{}, err
	}
	claim, err := s.checkNetworkPoolOwner(ctx, d, p)
	if err != nil {
		return storage.PoolStatus{}, err
	}
	if err := s.Catalog.Update(func(tx *catalog.Tx) error {
		if o, ok := d.(storage.PoolOverlapper); ok {
			pools, err := tx.Pools()
			if err != nil {
				return err
			}
			for _, q := range pools {
				if q.Driver == p.Driver {
					if err := o.Overlap(q, p); err != nil {
						return err
					}
				}
			}
		}
		return tx.AddPool(p)
	}); err != nil {
		return storage.PoolStatus{}, err
	}
	claim()
	log.Debug().Str("pool", p.Name).Str("driver", p.Driver).Msg("pool added")
	return s.status(ctx, p, 0)
}

// driverNames are the pool drivers this store serves, sorted.
func (s *Store) driverNames() []string {
	var names []string
	for n := range s.drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkPoolPlace refuses a pool at "/", at the state home, inside it
// (its catalog, locks, backups; the pools folder itself, or inside an
// existing pool) or around it: doctor and deletes work in a pool's
// directory, and a pool there would mix images with strata's own files.
// A new folder directly under HOME/pools is allowed.
func (s *Store) checkPoolPlace(given, abs string) error {
	real := storage.ResolvePath(abs)
	home := storage.ResolvePath(s.Catalog.Home())
	sep := string(filepath.Separator)
	switch {
	case real == sep:
		return storage.Errorf(storage.ErrInvalid, "invalid path %q: the root directory cannot be a pool; give a directory of its own", given)
	case real == home:
		return storage.Errorf(storage.ErrInvalid, "invalid path %q: it is the state home; give a directory of its own (e.g. %s)", given, filepath.Join(home, "pools", "NAME"))
	case strings.HasPrefix(home, real+sep):
		return storage.Errorf(storage.ErrInvalid, "invalid path %q: it holds the state home %q; give a directory of its own", given, home)
	case real == filepath.Join(home, "pools", catalog.DefaultPool):
		return storage.Errorf(storage.ErrExists, "path %q is already pool %q", given, catalog.DefaultPool)
	case strings.HasPrefix(real, home+sep):
		pools := filepath.Join(home, "pools")
		if filepath.Dir(real) != pools {
			return storage.Errorf(storage.ErrInvalid, "invalid path %q: it is inside the state home, where strata keeps its own files; give a directory of its own (e.g. %s)", given, filepath.Join(pools, "NAME"))
		}
	}
	return nil
}

// strataFile: names strata gives its files in a pool.
var strataFile = pattern.New(`^([0-9a-f]{16}\.(img|qcow2|iso)|\.strata-points)$`)

// checkUnowned refuses a directory that is already another home's pool.
func (s *Store) checkUnowned(given, abs, homeID string) error {
	m, ok, err := catalog.ReadMarker(abs)
	if err != nil {
		return storage.Errorf(storage.ErrPrecondition, "invalid path %q: %v; remove it if no other strata state home uses the directory", given, err)
	}
	if ok {
		if mine, whose := s.Catalog.Owner(m, homeID); !mine {
			return storage.Errorf(storage.ErrInUse, "invalid path %q: it is a pool of %s; two homes sharing a pool would remove each other's files: give this home a directory of its own (or, if that home no longer uses it, remove %s)", given, whose, filepath.Join(abs, catalog.MarkerFile))
		}
		return nil
	}
	// A directory that cannot be listed (or is not there yet) shows no
	// strata files: creating or claiming it fails later if it matters.
	entries, _ := os.ReadDir(abs)
	for _, e := range entries {
		if strataFile.MatchString(e.Name()) {
			return storage.Errorf(storage.ErrInUse, "invalid path %q: it holds files strata names as its own (%s) but no owner marker: it may be a pool of another strata state home; give this home a directory of its own", given, e.Name())
		}
	}
	return nil
}

// sameDir tells whether two paths name one directory.
func sameDir(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

func (s *Store) status(ctx context.Context, p storage.Pool, volumes int) (storage.PoolStatus, error) {
	d, err := s.Driver(p)
	if err != nil {
		return storage.PoolStatus{}, err
	}
	st, err := d.Status(ctx, p)
	st.Volumes = volumes
	return st, err
}

// Pools lists every pool with its status.
func (s *Store) Pools(ctx context.Context) ([]storage.PoolStatus, error) {
	var pools []storage.Pool
	count := map[string]int{}
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		if pools, err = tx.Pools(); err != nil {
			return err
		}
		vols, err := tx.Volumes()
		for _, v := range vols {
			count[v.Pool]++
		}
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]storage.PoolStatus, 0, len(pools))
	for _, p := range pools {
		st, err := s.status(ctx, p, count[p.Name])
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Pool returns one pool with its status.
func (s *Store) Pool(ctx context.Context, name string) (storage.PoolStatus, error) {
	var p storage.Pool
	n := 0
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		if p, err = tx.Pool(name); err != nil {
			return err
		}
		vols, err := tx.Volumes()
		for _, v := range vols {
			if v.Pool == name {
				n++
			}
		}
		return err
	}); err != nil {
		return storage.PoolStatus{}, err
	}
	return s.status(ctx, p, n)
}

// RemovePool forgets a pool that holds no volumes. Its directory stays.
func (s *Store) RemovePool(ctx context.Context, name string) error {
	if name == catalog.DefaultPool {
		return storage.Errorf(storage.ErrInvalid, "the default pool cannot be removed")
	}
	return s.Catalog.Update(func(tx *catalog.Tx) error {
		isos, err := media.InPool(tx, name)
		if err != nil {
			return err
		}
		if len(isos) > 0 {
			return storage.Errorf(storage.ErrInUse, "pool %q still holds install media %s: delete them first ('strata iso delete')", name, storage.QuoteList(isos))
		}
		if err := checkPoolHolds(tx, name); err != nil {
			return err
		}
		return tx.RemovePool(name)
	})
}

// CreateOptions describes a new volume.
type CreateOptions struct {
	Name   string
	Size   int64
	Format storage.Format
	Pool   string
	Layout image.Layout
}

// CreateVolume makes a new, empty volume in a pool.
func (s *Store) CreateVolume(ctx context.Context, o CreateOptions) (storage.VolumeInfo, error) {
	if err := storage.ValidateName("volume", o.Name); err != nil {
		return storage.VolumeInfo{}, err
	}
	if o.Size <= 0 {
		return storage.VolumeInfo{}, storage.Errorf(storage.ErrInvalid, "volume %q needs a size: give --size, e.g. --size 20G", o.Name)
	}
	if err := o.Layout.Check(o.Size); err != nil {
		return storage.VolumeInfo{}, err
	}
	if o.Pool == "" {
		o.Pool = catalog.DefaultPool
	}
	v := storage.Volume{ID: storage.NewID(), Name: o.Name, Pool: o.Pool, Format: o.Format, Created: time.Now().UTC()}
	if o.Format == storage.FormatQcow2 {
		run.Warm() // qemu-img create starts without Go's first-process check
	}
	if o.Layout.Empty() {
		// An empty image takes microseconds (raw) to a few milliseconds
		// (qemu-img): make it inside the catalog transaction, so the
		// whole create costs one catalog commit.
		made, undo := false, func() { os.Remove(v.Path) }
		err := s.Catalog.Update(func(tx *catalog.Tx) error {
			pool, d, err := s.poolForCreate(tx, o.Name, o.Pool)
			if err != nil {
				return err
			}
			v.Path = d.VolumePath(pool, v.ID, v.Format)
			if made { // a shared catalog runs a transaction again after a conflict
				return addMadeVolume(tx, &v)
			}
			if !runsATool(pool, v.Format) {
				if err := d.Create(ctx, pool, v.Path, v.Format, o.Size); err != nil {
					return err
				}
				made = true
				undo = func() { _ = d.Delete(context.WithoutCancel(ctx), pool, v, true) }
				return addMadeVolume(tx, &v)
			}
			// The image takes a tool's run (milliseconds): the records
			// are checked and put meanwhile, the image's identity added
			// to them once it is made; the commit waits for both.
			added := make(chan error, 1)
			go func(v storage.Volume) { added <- tx.AddVolume(v) }(v)
			err = d.Create(ctx, pool, v.Path, v.Format, o.Size)
			aerr := <-added
			if err != nil {
				return err
			}
			made = true
			undo = func() { _ = d.Delete(context.WithoutCancel(ctx), pool, v, true) }
			if aerr != nil {
				return aerr
			}
			identify(&v)
			return tx.ReplaceVolume(v)
		})
		if err != nil {
			// The transaction failed after the image was made (a refused
			// record, a failed commit, a damaged catalog): no record names
			// the image.
			if made {
				undo()
			}
			return storage.VolumeInfo{}, err
		}
	} else {
		// Laying out a filesystem can take long: outside the lock, then
		// recorded (the image is removed if recording fails).
		var pool storage.Pool
		var d storage.Driver
		if err := s.Catalog.View(func(tx *catalog.Tx) error {
			var err error
			pool, d, err = s.poolForCreate(tx, o.Name, o.Pool)
			return err
		}); err != nil {
			return storage.VolumeInfo{}, err
		}
		v.Path = d.VolumePath(pool, v.ID, v.Format)
		if err := s.makeImage(ctx, d, pool, v, o); err != nil {
			return storage.VolumeInfo{}, err
		}
		v.File = fileID(v.Path)
		if err := s.Catalog.Update(func(tx *catalog.Tx) error { return tx.AddVolume(v) }); err != nil {
			os.Remove(v.Path)
			return storage.VolumeInfo{}, err
		}
	}
	log.Debug().Str("volume", v.Name).Str("format", string(v.Format)).Int64("size", o.Size).Str("path", v.Path).Msg("volume created")
	return s.describe(ctx, v, !o.Layout.Empty())
}

// imagesOf is every path a guest could hold volume v's data under, for
// the in-use check (the path alone when its driver cannot be found).
func (s *Store) imagesOf(v storage.Volume) []inuse.Image {
	what := fmt.Sprintf("volume %q", v.Name)
	locs := []string{v.Path}
	if d, p, err := s.VolumeDriver(v); err == nil {
		locs = d.Locations(p, v)
	}
	imgs := make([]inuse.Image, 0, len(locs))
	for _, l := range locs {
		imgs = append(imgs, inuse.Image{What: what, Path: l})
	}
	return imgs
}

// runsATool tells whether making an image of format f in pool p runs a
// tool (qemu-img, lvcreate, rbd): milliseconds, against microseconds for a
// raw file made in place.
func runsATool(p storage.Pool, f storage.Format) bool {
	return p.Driver != dir.Name || f != storage.FormatRaw
}

// identify records what was made at v.Path, not what the driver
// declares: a block device (an LV) or a file, and its identity. (Asking
// the driver's Features would probe the pool's filesystem on every
// create.)
func identify(v *storage.Volume) {
	if fi, err := os.Stat(v.Path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		v.Device = true
	}
	v.File = fileID(v.Path)
}

// addMadeVolume records a volume whose image is made, with its identity.
func addMadeVolume(tx *catalog.Tx, v *storage.Volume) error {
	identify(v)
	return tx.AddVolume(*v)
}

// fileID is the identity of a new image, recorded with its volume.
func fileID(path string) *storage.FileID {
	if id, err := image.Identify(path); err == nil {
		return &id
	}
	return nil
}

// poolForCreate checks that a new volume's name is free and returns its
// pool and driver, with the pool's directory in place.
func (s *Store) poolForCreate(tx *catalog.Tx, name, poolName string) (storage.Pool, storage.Driver, error) {
	if _, err := tx.Volume(name); err == nil {
		return storage.Pool{}, nil, storage.Errorf(storage.ErrExists, "volume %q already exists: choose another name or delete it first", name)
	}
	pool, err := tx.Pool(poolName)
	if err != nil {
		return pool, nil, err
	}
	d, err := s.Driver(pool)
	if err != nil {
		return pool, nil, err
	}
	if err := storage.MkdirPassable(pool.Path); err != nil {
		return pool, nil, storage.Errorf(storage.ErrPrecondition, "pool %q: cannot create its directory %q: %w", pool.Name, pool.Path, err)
	}
	return pool, d, nil
}

// makeImage creates an image file with a layout. The layout is written with go-diskfs on
// a raw image; for qcow2 the raw image is converted (holes stay holes).
func (s *Store) makeImage(ctx context.Context, d storage.Driver, pool storage.Pool, v storage.Volume, o CreateOptions) error {
	rawPath := v.Path
	if v.Format != storage.FormatRaw {
		rawPath = atomicfile.Path(filepath.Join(pool.Path, v.ID+".img"), "")
		defer os.Remove(rawPath)
	}
	if err := d.Create(ctx, pool, rawPath, storage.FormatRaw, o.Size); err != nil {
		return err
	}
	if err := o.Layout.Apply(rawPath); err != nil {
		os.Remove(rawPath)
		return err
	}
	if v.Format == storage.FormatRaw {
		return nil
	}
	if err := image.Convert(ctx, rawPath, storage.FormatRaw, v.Path, v.Format); err != nil {
		os.Remove(v.Path)
		return err
	}
	// Durable before the record that names it (the raw image was, by
	// the driver's Create and the layout's sync).
	if err := atomicfile.Settle(v.Path); err != nil {
		os.Remove(v.Path)
		return err
	}
	return nil
}

// info adds what the image reports now to a volume record, after checking
// that the image is still the file registered (see verify); the partition
// table is read only if parts is set (a new empty image has none).
func (s *Store) info(ctx context.Context, v storage.Volume, parts bool) (storage.VolumeInfo, error) {
	v, changed, err := s.verify(v)
	if changed {
		s.recordIdentities([]storage.Volume{v})
	}
	if err != nil {
		return storage.VolumeInfo{Volume: v, Partitions: []storage.Partition{}, PartitionTable: "none"}, err
	}
	return s.describe(ctx, v, parts)
}

// verify refuses an image that is no longer the file registered
// (image.VerifyImage) and returns the volume with the identity of the
// image there now, and whether that is new: it has none recorded yet (a
// volume recorded before strata kept it) or strata itself replaced the
// image (a rollback or flatten renames a new file over it).
func (s *Store) verify(v storage.Volume) (storage.Volume, bool, error) {
	if err := image.VerifyImage(v); err != nil {
		return v, false, err
	}
	id, err := image.Identify(v.Path)
	if err != nil || (v.File != nil && *v.File == id) {
		return v, false, nil // a missing image is reported by whoever reads it
	}
	v.File = &id
	return v, true, nil
}

// recordIdentities records the image identities verify found, in one
// transaction; a failure only means they are recorded next time.
func (s *Store) recordIdentities(vols []storage.Volume) {
	if err := s.Catalog.Update(func(tx *catalog.Tx) error {
		for _, v := range vols {
			cur, err := tx.VolumeByID(v.ID)
			if err != nil || cur.Path != v.Path {
				continue // gone or replaced meanwhile
			}
			cur.File = v.File
			if err := tx.ReplaceVolume(cur); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		log.Debug().Err(err).Msg("could not record the identity of volume images")
	}
}

// describe adds what the image reports now to a volume record.
func (s *Store) describe(ctx context.Context, v storage.Volume, parts bool) (storage.VolumeInfo, error) {
	vi := storage.VolumeInfo{Volume: v, Partitions: []storage.Partition{}, PartitionTable: "none"}
	path := v.Path
	if !filepath.IsAbs(path) {
		// Not a file: a network volume (rbd:...) its driver describes.
		if d, p, err := s.VolumeDriver(v); err == nil {
			if desc, ok := d.(storage.Describer); ok {
				vi, err := desc.Describe(ctx, p, v)
				if err == nil && v.Backing != "" {
					b := v.Backing
					vi.RecordedBacking = &b
				}
				return vi, err
			}
		}
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		// A rollback has moved the image aside while it applies a
		// snapshot: the volume is there, under another name for now.
		if _, err := os.Lstat(path + storage.ApplyingSuffix); err == nil {
			path += storage.ApplyingSuffix
		}
	}
	// As recorded: a raw disk whose guest wrote a qcow2 header stays raw.
	info, err := image.InspectAs(path, v.Format)
	if err != nil {
		return vi, fmt.Errorf("volume %q: %w", v.Name, err)
	}
	vi.Format = info.Format
	vi.VirtualSize, vi.AllocatedBytes = info.VirtualSize, info.AllocatedBytes
	if v.Backing != "" {
		b := v.Backing
		vi.RecordedBacking = &b
	}
	if info.BackingFile != "" {
		b := info.BackingFile
		vi.ImageBacking = &b
	}
	if info.DataFile != "" {
		d := info.DataFile
		vi.DataFile = &d
	}
	if !parts {
		return vi, nil
	}
	vi.PartitionTable, vi.Partitions, err = image.Partitions(ctx, path, info)
	if err != nil {
		return vi, fmt.Errorf("volume %q: %w", v.Name, err)
	}
	return vi, nil
}

// Volume returns one volume with what its image reports now.
func (s *Store) Volume(ctx context.Context, name string) (storage.VolumeInfo, error) {
	var v storage.Volume
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		v, err = tx.Volume(name)
		return err
	}); err != nil {
		return storage.VolumeInfo{}, err
	}
	return s.info(ctx, v, true)
}

// Volumes lists every volume with what its image reports now.
func (s *Store) Volumes(ctx context.Context) ([]storage.VolumeInfo, error) {
	var vols []storage.Volume
	if err := s.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		vols, err = tx.Volumes()
		return err
	}); err != nil {
		return nil, err
	}
	// Reading a qcow2 image's partition table runs qemu-img: a few at a
	// time, in order of the names all the same.
	out := make([]storage.VolumeInfo, len(vols))
	changed := make([]bool, len(vols))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			v, c, err := s.verify(v)
			changed[i] = c
			vi := storage.VolumeInfo{Volume: v, Partitions: []storage.Partition{}, PartitionTable: "none"}
			if err == nil {
				vi, err = s.describe(ctx, v, true)
			}
			if err != nil {
				// A missing image must not hide the others: report it in place.
				log.Warn().Err(err).Msg("volume image unreadable; run strata doctor")
			}
			out[i] = vi
		}()
	}
	wg.Wait()
	var record []storage.Volume
	for i, c := range changed {
		if c {
			record = append(record, out[i].Volume)
		}
	}
	if len(record) > 0 {
		s.recordIdentities(record)
	}
	return out, nil
}

// ResizeVolume changes a volume's virtual size. Shrinking needs shrink and
// is refused where it would cut a partition.
func (s *Store) ResizeVolume(ctx context.Context, name string, size int64, shrink bool) (storage.VolumeInfo, error) {
	vi, err := s.Volume(ctx, name)
	if err != nil {
		return vi, err
	}
	// A restore point or golden operation on the volume holds its lock
	// while it copies from or over the image: wait for it, then look again.
	unlock, err := s.lockVolume(vi.Volume)
	if err != nil {
		return vi, err
	}
	defer unlock()
	locked := vi.ID
	if vi, err = s.Volume(ctx, name); err != nil {
		return vi, err
	}
	if vi.ID != locked {
		return vi, storage.Errorf(storage.ErrBusy, "volume %q changed while strata waited for its lock: try again", name)
	}
	if size <= 0 {
		return vi, storage.Errorf(storage.ErrInvalid, "volume %q needs a new size: give --size", name)
	}
	if vi.Device {
		return vi, storage.Errorf(storage.ErrNotSupported, "volume %q is the block device %q: resize it with its own tools (e.g. lvextend)", name, vi.Path)
	}
	if vi.Format != storage.FormatRaw && vi.Format != storage.FormatQcow2 {
		return vi, storage.Errorf(storage.ErrNotSupported, "volume %q is a %s image, which cannot be resized", name, vi.Format)
	}
	if size == vi.VirtualSize {
		return vi, nil
	}
	if err := s.InUse.Check(ctx, fmt.Sprintf("volume %q", name), vi.Path); err != nil {
		return vi, err
	}
	if size < vi.VirtualSize {
		if !shrink {
			return vi, storage.Errorf(storage.ErrInvalid, "volume %q is %d bytes and %d would shrink it, losing data at its end: add --shrink if that is what you want", name, vi.VirtualSize, size)
		}
		var deps []string
		if err := s.Catalog.View(func(tx *catalog.Tx) (err error) { deps, err = tx.Dependants(vi.Path); return err }); err != nil {
			return vi, err
		}
		if len(deps) > 0 {
			return vi, storage.Errorf(storage.ErrInUse, "volume %q is the backing file of %s: shrinking it would cut what they read; delete or flatten them first", name, storage.QuoteList(deps))
		}
		for _, p := range vi.Partitions {
			if end := p.Start + p.Size; end > size {
				return vi, storage.Errorf(storage.ErrPrecondition, "shrinking volume %q to %d bytes would cut partition %d (ends at %d): shrink the partition inside the guest first", name, size, p.Index, end)
			}
		}
		if vi.PartitionTable == "gpt" {
			// GPT keeps a backup of the table in the disk's last 33
			// sectors: any shrink cuts it off and leaves the primary
			// header pointing past the end.
			return vi, storage.Errorf(storage.ErrPrecondition, "volume %q has a GPT partition table, whose backup copy at the end of the disk a shrink would cut off: shrink the partitions inside the guest, move the backup table (e.g. sgdisk -e after the shrink), or copy the data to a smaller volume", name)
		}
	}
	var d storage.Driver = dir.Driver{}
	pool := storage.Pool{Driver: dir.Name, Path: filepath.Dir(vi.Path)} // an in-place import
	if vi.Pool != "" {
		if err := s.Catalog.View(func(tx *catalog.Tx) error { pool, err = tx.Pool(vi.Pool); return err }); err != nil {
			return vi, err
		}
		if d, err = s.Driver(pool); err != nil {
			return vi, err
		}
	}
	if err := d.Resize(ctx, pool, vi.Path, vi.Format, size, shrink); err != nil {
		return vi, err
	}
	log.Debug().Str("volume", name).Int64("size", size).Msg("volume resized")
	return s.info(ctx, vi.Volume, true)
}

// DeleteVolume forgets a volume and removes its image. Imported images are
// kept unless purge is set; block devices are never removed. The catalog
// record goes first, so a crash leaves at worst an orphan file.
func (s *Store) DeleteVolume(ctx context.Context, name string, purge bool) error {
	var v storage.Volume
	if err := s.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.Volume(name); return err }); err != nil {
		return err
	}
	unlock, err := s.lockVolume(v)
	if err != nil {
		return err
	}
	defer unlock()
	// Even a volume whose image is kept: a guest running on it would go on
	// writing a disk that strata no longer knows. Every place a guest could
	// have opened it counts (an LV's /dev/VG/LV is a link, never followed
	// by the check: the device node it names is among the locations).
	if err := s.InUse.CheckAll(ctx, s.imagesOf(v)); err != nil {
		return err
	}
	locked := v.ID
	err = s.Catalog.Update(func(tx *catalog.Tx) (err error) {
		if v, err = s.removeVolume(tx, name, purge); err == nil && v.ID != locked {
			// Deleted and made again while strata waited for the lock:
			// the new one was neither locked nor checked for a writer.
			err = storage.Errorf(storage.ErrBusy, "volume %q changed while strata waited for its lock: try again", name)
		}
		return err
	})
	if err != nil {
		return err
	}
	d, p, err := s.VolumeDriver(v)
	if err != nil {
		return err
	}
	return d.Delete(ctx, p, v, purge)
}

// removeVolume checks that nothing needs a volume and removes its record
// within a transaction; the caller discards the image after the commit.
func (s *Store) removeVolume(tx *catalog.Tx, name string, purge bool) (storage.Volume, error) {
	v, err := tx.Volume(name)
	if err != nil {
		return v, err
	}
	deps, err := tx.Dependants(v.Path)
	if err != nil {
		return v, err
	}
	if len(deps) > 0 {
		return v, storage.Errorf(storage.ErrInUse, "volume %q is the backing file of %s: delete or flatten them first", name, storage.QuoteList(deps))
	}
	guests, err := tx.GuestsUsing(v.ID)
	if err != nil {
		return v, err
	}
	if len(guests) > 0 {
		return v, storage.Errorf(storage.ErrInUse, "volume %q is a disk of guest %s: delete the guest first ('strata guest delete')", name, storage.QuoteList(guests))
	}
	if err := checkVolumeHolds(tx, v); err != nil {
		return v, err
	}
	if v.Device && purge {
		return v, storage.Errorf(storage.ErrNotSupported, "volume %q is the block device %q, which strata never removes: drop --purge, then remove it with its own tools (e.g. lvremove)", name, v.Path)
	}
	return v, tx.RemoveVolume(v)
}

// OpLock is the state home's operation lock: every strata process holds it
// shared while it works; strata doctor --repair takes it exclusive, so it
// never mistakes a running operation's files for leftovers.
type OpLock struct {
	f       *os.File
	release func() // the shared catalog's lock
}

// LockShared takes the operation lock shared, waiting up to the lock
// timeout while doctor --repair works. The kernel drops it at exit.
func (s *Store) LockShared() (*OpLock, error) {
	return s.opLock(unix.LOCK_SH, s.lockTimeout)
}

// LockExclusive takes the operation lock exclusive, waiting up to the lock
// timeout for other strata processes to finish.
func (s *Store) LockExclusive() (*OpLock, error) {
	return s.opLock(unix.LOCK_EX, s.lockTimeout)
}

func (s *Store) opLock(how int, timeout time.Duration) (*OpLock, error) {
	if release, ok, err := catalog.SharedOpLock(s.Catalog.Home(), how == unix.LOCK_EX, timeout); ok {
		if err != nil {
			return nil, err
		}
		return &OpLock{release: release}, nil
	}
	f, err := openLock(s.Catalog.Home(), "strata.lock")
	if err != nil {
		return nil, err
	}
	if err := flockWait(f, how, timeout); err != nil {
		if errors.Is(err, errLockBusy) {
			return nil, storage.Errorf(storage.ErrBusy, "the state home %q is busy (strata doctor --repair, or other strata processes while it waits); try again or raise --lock-timeout", s.Catalog.Home())
		}
		return nil, err
	}
	return &OpLock{f: f}, nil
}

// Release drops the lock.
func (l *OpLock) Release() {
	if l.release != nil {
		l.release()
		return
	}
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN) // the Close below drops it anyway
	l.f.Close()
}
