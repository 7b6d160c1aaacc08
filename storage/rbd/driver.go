package rbd

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
)

// Name is the driver's name in pool records.
const Name = "rbd"

// Method names the catalog records (unique across drivers).
const (
	// MethodSnapshot: a restore point is an RBD snapshot of the image.
	MethodSnapshot = "rbd-snapshot"
	// CloneRBD: a linked clone is an RBD clone of the golden's
	// protected snapshot; CloneCopy: a full clone is an `rbd cp` of it.
	CloneRBD  = "rbd-clone"
	CloneCopy = "rbd-copy"
)

// Driver is the rbd pool driver (storage.Driver, storage.PoolAdder).
// The zero value runs the real tools.
type Driver struct {
	// Client runs the calls off the hot paths (nil: the tools through
	// storage/run), and the hot ones too when Ops is nil (tests that
	// replay recorded outputs).
	Client *Client
	// Ops runs the hot paths' calls; nil: DefaultOps (the strata-rbd
	// helper beside the executable, or the tools), or Client when set.
	Ops Ops
}

var (
	_ storage.Driver    = Driver{}
	_ storage.PoolAdder = Driver{}
	_ storage.Describer = Driver{}
)

// ops is what runs the hot paths' calls.
func (d Driver) ops() Ops {
	if d.Ops != nil {
		return d.Ops
	}
	if d.Client != nil {
		return d.Client
	}
	return DefaultOps()
}

func (d Driver) c() *Client {
	if d.Client != nil {
		return d.Client
	}
	return &Client{}
}

var pointMethods = []storage.PointMethod{{
	Name: MethodSnapshot, Formats: []storage.Format{storage.FormatRaw},
	// A snapshot is O(1); a rollback is one server-side operation per
	// object of the image (see the package doc).
	O1Take: true, O1Restore: false,
	// The snapshot is inside the image: it goes with it.
	InVolume: true,
	Live:     storage.LiveClone,
	// rbd snap create changes neither the image's info (ID, size,
	// modify_timestamp) nor its object map (rbd diff) nor its metadata.
	KeepsFingerprint: true,
}}

// PointMethods implements storage.Driver.
func (Driver) PointMethods() []storage.PointMethod { return pointMethods }

// AddPool implements storage.PoolAdder: the Ceph pool must exist and be
// an RBD pool (rbd pool init), and the namespace, if one is given, must
// exist in it (rbd namespace create); the ceph.conf must be readable.
func (d Driver) AddPool(ctx context.Context, p *storage.Pool) error {
	if p.RBD == nil || p.RBD.Pool == "" {
		return storage.Errorf(storage.ErrInvalid, "pool %q: driver rbd needs the ceph pool: give --pool CEPHPOOL", p.Name)
	}
	r := p.RBD
	for _, f := range []struct{ what, v string }{{"--pool", r.Pool}, {"--namespace", r.Namespace}, {"--id", r.ID}} {
		if err := ValidSpecName(f.v); err != nil {
			return storage.Errorf(storage.ErrInvalid, "pool %q: invalid %s %q: %w", p.Name, f.what, f.v, err)
		}
	}
	r.ID = strings.TrimPrefix(r.ID, "client.")
	if r.CephConf != "" {
		abs, err := filepath.Abs(r.CephConf)
		if err != nil {
			return storage.Errorf(storage.ErrInvalid, "pool %q: invalid --ceph-conf %q: %w", p.Name, r.CephConf, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return storage.Errorf(storage.ErrNotFound, "pool %q: cannot read the ceph.conf %q: %w", p.Name, r.CephConf, err)
		}
		r.CephConf = abs
	}
	s, err := PoolConn(*p)
	if err != nil {
		return err
	}
	pools, err := d.c().Pools(ctx, s.Conn)
	if err != nil {
		return fmt.Errorf("pool %q: %w", p.Name, err)
	}
	var found *CephPool
	for i := range pools {
		if pools[i].Name == s.Pool {
			found = &pools[i]
		}
	}
	if found == nil {
		return storage.Errorf(storage.ErrNotFound, "pool %q: the cluster has no ceph pool %q: create it (ceph osd pool create %s; rbd pool init %s) or name another with --pool", p.Name, s.Pool, s.Pool, s.Pool)
	}
	if _, ok := found.Applications["rbd"]; !ok {
		return storage.Errorf(storage.ErrPrecondition, "pool %q: ceph pool %q is not an rbd pool: run 'rbd pool init %s' first", p.Name, s.Pool, s.Pool)
	}
	if _, err := d.c().List(ctx, s); err != nil {
		if errors.Is(err, storage.ErrNotFound) && s.Namespace != "" {
			return storage.Errorf(storage.ErrNotFound, "pool %q: ceph pool %q has no namespace %q: create it (rbd namespace create %s)", p.Name, s.Pool, s.Namespace, s.PoolSpec())
		}
		return fmt.Errorf("pool %q: %w", p.Name, err)
	}
	return nil
}

// space is what a pool's cluster tells of its space; known is false when
// nothing does (no quota and no manager reporting).
type space struct {
	total, free int64
	known       bool
}

var spaces sync.Map // pool spec → space, for Features within one process

// space reads the pool's quota (ceph osd pool ls detail), what its
// images use (rbd du: with fast-diff, from the object maps), and ceph
// df's max_avail when a manager reports one. ceph df answers zeros
// without a manager (and may not answer at all): it gets a few seconds.
func (d Driver) space(ctx context.Context, p storage.Pool) (space, error) {
	s, err := PoolConn(p)
	if err != nil {
		return space{}, err
	}
	var sp space
	pools, err := d.c().Pools(ctx, s.Conn)
	if err != nil {
		return sp, err
	}
	for _, cp := range pools {
		if cp.Name == s.Pool && cp.QuotaBytes > 0 {
			used, err := d.used(ctx, s)
			if err != nil {
				return sp, err
			}
			sp = space{total: cp.QuotaBytes, free: max(cp.QuotaBytes-used, 0), known: true}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if df, err := d.c().DF(dctx, s.Conn); err == nil && df.Stats.Total > 0 {
		for _, dp := range df.Pools {
			if dp.Name != s.Pool {
				continue
			}
			if !sp.known || dp.Stats.MaxAvail < sp.free {
				sp.free = dp.Stats.MaxAvail
			}
			if !sp.known {
				sp.total = df.Stats.Total
			}
			sp.known = true
		}
	}
	spaces.Store(s.PoolSpec(), sp)
	return sp, nil
}

// used is what the images of the pool (or namespace) hold, snapshots
// included.
func (d Driver) used(ctx context.Context, s Spec) (int64, error) {
	s.Image = ""
	du, err := d.c().DU(ctx, s)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, u := range du {
		n += u.Used
	}
	return n, nil
}

// Status implements storage.Driver: the quota (or the cluster's size)
// and what is free of it, and the number of images.
func (d Driver) Status(ctx context.Context, p storage.Pool) (storage.PoolStatus, error) {
	st := storage.PoolStatus{Pool: p, Filesystem: "ceph-rbd"}
	s, err := PoolConn(p)
	if err != nil {
		return st, err
	}
	sp, err := d.space(ctx, p)
	if err != nil {
		// The pool is there; what it holds could not be counted (rbd du
		// fails on a damaged image): report the pool, with no space.
		log.Warn().Str("pool", p.Name).Err(err).Msg("cannot count the pool's usage: reporting no space")
	}
	if sp.known {
		st.TotalBytes, st.FreeBytes = uint64(sp.total), uint64(sp.free)
	}
	if ps, err := d.c().PoolStats(ctx, s); err == nil {
		st.Volumes = int(ps.Images)
	}
	st.Capabilities = storage.Capabilities{Sparse: true, O1Snapshots: true}
	return st, nil
}

// Features implements storage.Driver.
func (d Driver) Features(ctx context.Context, p storage.Pool) (storage.Features, error) {
	f := storage.Features{Points: pointMethods, LinkedClones: true}
	s, err := PoolConn(p)
	if err != nil {
		return f, err
	}
	sp, ok := spaces.Load(s.PoolSpec())
	if !ok {
		if sp, err = d.space(ctx, p); err != nil {
			return f, err
		}
	}
	f.FreeSpace = sp.(space).known
	return f, nil
}

// FreeBytes implements storage.Driver; with nothing reporting the
// cluster's space it is unlimited (Features.FreeSpace says so), and the
// cluster refuses what does not fit (ENOSPC, EDQUOT).
func (d Driver) FreeBytes(ctx context.Context, p storage.Pool) (int64, error) {
	sp, err := d.space(ctx, p)
	if err != nil {
		return 0, err
	}
	if !sp.known {
		return math.MaxInt64, nil
	}
	return sp.free, nil
}

// VolumePath implements storage.Driver: QEMU's rbd filename of the image
// ImageName(id) (every volume is raw: f is not in the name).
func (Driver) VolumePath(p storage.Pool, id string, _ storage.Format) string {
	s, err := PoolConn(p)
	if err != nil {
		return ""
	}
	return Path(s.WithImage(ImageName(id)))
}

func rawOnly(f storage.Format) error {
	if f != storage.FormatRaw {
		return storage.Errorf(storage.ErrNotSupported, "rbd volumes are raw images (an RBD image is the disk itself): %s is not supported; use --format raw", f)
	}
	return nil
}

// Create implements storage.Driver: a thin image of size bytes.
func (d Driver) Create(ctx context.Context, _ storage.Pool, path string, f storage.Format, size int64) error {
	if err := rawOnly(f); err != nil {
		return err
	}
	s, err := ParsePath(path)
	if err != nil {
		return err
	}
	return d.c().Create(ctx, s, size)
}

// Resize implements storage.Driver.
func (d Driver) Resize(ctx context.Context, _ storage.Pool, path string, f storage.Format, size int64, shrink bool) error {
	if err := rawOnly(f); err != nil {
		return err
	}
	s, err := ParsePath(path)
	if err != nil {
		return err
	}
	return d.c().Resize(ctx, s, size, shrink)
}

// Backing implements storage.Driver: a clone's parent image, as the path
// its golden image has.
func (d Driver) Backing(ctx context.Context, _ storage.Pool, v storage.Volume) (string, error) {
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
	return Path(Spec{Conn: s.Conn, Pool: img.Parent.Pool, Namespace: img.Parent.Namespace, Image: img.Parent.Image}), nil
}

// Delete implements storage.Driver: the image's snapshots (its restore
// points) and the image, under its live name and the name it has while
// rolled back. An image strata did not make (imported) is left unless
// purge is set.
func (d Driver) Delete(ctx context.Context, _ storage.Pool, v storage.Volume, purge bool) error {
	if v.Imported && !purge {
		return nil
	}
	s, err := ParsePath(v.Path)
	if err != nil {
		return err
	}
	for _, img := range []Spec{s, s.WithImage(s.Image + ApplyingSuffix)} {
		if err := d.removeImage(ctx, img); err != nil {
			return err
		}
	}
	if err := d.c().ForgetGeneration(ctx, s); err != nil {
		// A key of a few bytes left in the pool's strata_restored
		// object, under a name no image will have again.
		log.Warn().Err(err).Str("image", s.String()).Msg("the removed image's restore generation stays")
	}
	return nil
}

// removeImage removes an image with its snapshots (unprotected first;
// a protected snapshot with clones refuses: in use); absent is success.
func (d Driver) removeImage(ctx context.Context, s Spec) error {
	snaps, err := d.c().Snapshots(ctx, s)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if sn.Protected {
			kids, err := d.c().Children(ctx, s, sn.Name)
			if err != nil {
				return err
			}
			if len(kids) > 0 {
				return storage.Errorf(storage.ErrInUse, "rbd image %q has linked clones (%s): delete or flatten them first", s.String(), childList(kids))
			}
			if err := d.c().SnapUnprotect(ctx, s, sn.Name); err != nil && !errors.Is(err, storage.ErrInvalid) {
				return err // EINVAL: it was not protected (any more)
			}
		}
	}
	for _, sn := range snaps {
		if err := d.c().SnapRemove(ctx, s, sn.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	if err := d.c().Remove(ctx, s); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

func childList(kids []Child) string {
	var names []string
	for _, k := range kids {
		spec := Spec{Pool: k.Pool, Namespace: k.Namespace, Image: k.Image}
		names = append(names, spec.String())
	}
	return storage.QuoteList(names)
}

// Fingerprint implements storage.Driver. An RBD image has no inode or
// mtime that every write changes: the fingerprint is the image's ID (a
// rename keeps it, a replacement changes it) in Ino, its size, and in
// Mtime a hash of its modify_timestamp, of the objects that hold data
// (the object map, read by rbd diff --whole-object) and of its restore
// generation (GenerationObject: no client opens the image to read it). A write that allocates an object, or comes
// after librbd's mtime interval (60 s by default), changes it; an
// overwrite within allocated objects inside the interval does not:
// recovery can miss such a guest write. (A content hash would catch it
// at the cost of reading the whole image.) A rollback always changes it:
// rbd snap rollback keeps the ID and modify_timestamp, and to a point
// with the same objects it would keep the rest too, so every rollback
// sets a new generation (see RestorePoint). Without it, the undo of a
// multi-disk rollback would take a restored disk for one never touched.
func (d Driver) Fingerprint(_ storage.Pool, v storage.Volume) (storage.Fingerprint, bool, error) {
	s, err := ParsePath(v.Path)
	if err != nil {
		return storage.Fingerprint{}, false, err
	}
	return d.fingerprint(context.Background(), s)
}

func (d Driver) fingerprint(ctx context.Context, s Spec) (storage.Fingerprint, bool, error) {
	var (
		st  State
		gen string
	)
	err := together(
		func() (err error) { st, err = d.ops().State(ctx, s, ""); return err },
		func() (err error) { gen, err = d.ops().Generation(ctx, s); return err })
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Fingerprint{}, false, nil
	}
	if err != nil {
		return storage.Fingerprint{}, false, err
	}
	return FingerprintOf(st, gen), true, nil
}

// FingerprintOf is the fingerprint of an image in state st (rbd info's
// ID, size and modify_timestamp, rbd diff --whole-object's output) with
// restore generation gen.
func FingerprintOf(st State, gen string) storage.Fingerprint {
	id := fnv.New64a()
	id.Write([]byte(st.ID))
	state := fnv.New64a()
	state.Write([]byte(st.Modified))
	state.Write([]byte{0})
	state.Write(st.Diff)
	state.Write([]byte{0})
	state.Write([]byte(gen))
	return storage.Fingerprint{Ino: id.Sum64(), Size: st.Size, Mtime: int64(state.Sum64() >> 1)}
}

// Locations implements storage.Driver: the live image and the name it
// has while a snapshot is rolled back into it.
func (Driver) Locations(_ storage.Pool, v storage.Volume) []string {
	s, err := ParsePath(v.Path)
	if err != nil {
		return []string{v.Path}
	}
	return []string{v.Path, Path(s.WithImage(s.Image + ApplyingSuffix))}
}

// notOpen refuses a change to an image a client has open: librbd would
// hand the change to the client holding the exclusive lock, under a
// running guest.
func (d Driver) notOpen(ctx context.Context, s Spec, what string) error {
	w, err := d.ops().Watchers(ctx, s)
	if err != nil {
		return err
	}
	if len(w) > 0 {
		return storage.Errorf(storage.ErrInUse, "%s: rbd image %q is open by %d client(s) (%s; a running guest?): stop it first", what, s.String(), len(w), w[0])
	}
	return nil
}

// Describe implements storage.Describer: the image's size, what it holds
// (rbd du: from the object map), its parent (a linked clone's golden).
// An image renamed aside by a rollback under way is described there.
func (d Driver) Describe(ctx context.Context, _ storage.Pool, v storage.Volume) (storage.VolumeInfo, error) {
	vi := storage.VolumeInfo{Volume: v, Partitions: []storage.Partition{}, PartitionTable: "none"}
	s, err := ParsePath(v.Path)
	if err != nil {
		return vi, err
	}
	img, err := d.c().Info(ctx, s)
	if errors.Is(err, storage.ErrNotFound) {
		s = s.WithImage(s.Image + ApplyingSuffix)
		img, err = d.c().Info(ctx, s)
	}
	if err != nil {
		return vi, fmt.Errorf("volume %q: %w", v.Name, err)
	}
	vi.Format = storage.FormatRaw
	vi.VirtualSize = img.Size
	if vi.AllocatedBytes, err = d.imageUsed(ctx, s, ""); err != nil {
		return vi, fmt.Errorf("volume %q: %w", v.Name, err)
	}
	if img.Parent != nil {
		b := Path(Spec{Conn: s.Conn, Pool: img.Parent.Pool, Namespace: img.Parent.Namespace, Image: img.Parent.Image})
		vi.ImageBacking = &b
	}
	return vi, nil
}
