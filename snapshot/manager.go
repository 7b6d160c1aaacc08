package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-vm/strata/hvm/boot"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/run"
	"github.com/strata-vm/strata/storage/store"
)

// Catalog buckets owned by this package.
const (
	bPoints   = "points"   // "TARGETKEY/NNNNNNNNNN" → Point
	bJournal  = "journal"  // TARGETKEY → journalEntry (an operation under way)
	bPolicies = "policies" // TARGETKEY → Policy
)

// Manager takes, lists, rolls back and prunes restore points.
type Manager struct {
	st          *store.Store
	lockTimeout time.Duration
	// Progress draws long copies; NoProgress by default.
	Progress storage.Progress
	// Now is the clock (tests inject creation times through
	// STRATA_TEST_NOW).
	Now func() time.Time
	// Drivers run guests: a point of a guest one of them runs is taken
	// live through it (nil: a running guest's disks are in use).
	Drivers *boot.Set
	// GuardArgv returns the command that runs Guard for a live point
	// (`strata snapshot __guard GUEST-ID POINT-UID`): started for a
	// point of a guest whose driver has no watcher of its own (guard.go).
	// Nil: no guard.
	GuardArgv func(guestID, point string) []string
}

// New returns a Manager on a store. The store keeps volumes and guests
// with restore points, and pools with golden images, from being deleted by
// itself: the points and goldens are recorded as their holders
// (catalog.Hold; holds.go).
func New(st *store.Store, lockTimeout time.Duration) *Manager {
	return &Manager{st: st, lockTimeout: lockTimeout, Progress: storage.NoProgress{}, Now: clock()}
}

func clock() func() time.Time {
	if s := os.Getenv("STRATA_TEST_NOW"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return func() time.Time { return t.UTC() }
		}
	}
	return func() time.Time { return time.Now().UTC() }
}

func newUID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TargetRef names a target as the user gave it: a guest name, or a volume
// name with Volume set.
type TargetRef struct {
	Name   string
	Volume bool
}

func (r TargetRef) resolve(tx *catalog.Tx) (Target, error) {
	if r.Volume {
		v, err := tx.Volume(r.Name)
		return Target{Key: catalog.VolumeKey(v.ID), Name: v.Name}, err
	}
	g, err := tx.Guest(r.Name)
	return Target{Key: catalog.GuestKey(g.ID), Name: g.Name}, err
}

func (m *Manager) target(r TargetRef) (Target, error) {
	var t Target
	err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { t, err = r.resolve(tx); return err })
	return t, err
}

// withTarget resolves r, takes its lock and the locks of every volume it
// involves (a guest's disks now and in any of its points: a guest and a
// volume-only target on one disk exclude each other), finishes or undoes
// any operation a dead process left on it, and runs fn.
func (m *Manager) withTarget(ctx context.Context, r TargetRef, fn func(Target) error) error {
	return m.withTargetRead(ctx, r, nil, func(t Target, _ bool) error { return fn(t) })
}

// withTargetRead is withTarget that also runs read, under the locks, in
// the catalog read that finds nothing to finish or undo: fn is told
// whether it ran (after a recovery it did not; fn reads the catalog
// itself).
func (m *Manager) withTargetRead(ctx context.Context, r TargetRef, read func(*catalog.Tx, Target) error, fn func(t Target, read bool) error) error {
	t, err := m.target(r)
	if err != nil {
		return err
	}
	// The set is read again once its locks are held (store.LockSet): a
	// guest set that held the guest's lock meanwhile may have given it
	// another disk, which would be written without its lock.
	unlock, err := store.LockSet(m.st.Catalog.Home(), m.lockTimeout, func() ([]store.Lock, error) { return m.lockSet(t) })
	if err != nil {
		return err
	}
	defer unlock()
	var inView func(*catalog.Tx) error
	if read != nil {
		inView = func(tx *catalog.Tx) error { return read(tx, t) }
	}
	ran, err := m.recoverTargetOr(ctx, t, inView)
	if err != nil {
		if ran {
			return err // read's own error
		}
		return fmt.Errorf("finish an interrupted operation on %s: %w", t, err)
	}
	return fn(t, ran)
}

// lockSet is the locks an operation on t takes: t's, and for a guest
// those of its disks now and of every volume its points hold, each
// naming its own volume in a "busy" error.
func (m *Manager) lockSet(t Target) ([]store.Lock, error) {
	locks := []store.Lock{{Key: t.Key.String(), What: t.String()}}
	if t.Kind() != catalog.KindGuest {
		return locks, nil
	}
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		g, err := tx.GuestByID(t.Key.ID())
		if err != nil {
			return err
		}
		held, err := volumesOfPoints(tx, t.Key)
		for _, id := range append(slices.Clone(g.Disks), held...) {
			what := fmt.Sprintf("volume %s (a disk of %s)", id, t)
			if v, verr := tx.VolumeByID(id); verr == nil {
				what = fmt.Sprintf("volume %q (a disk of %s)", v.Name, t)
			}
			locks = append(locks, store.Lock{Key: catalog.VolumeKey(id).String(), What: what})
		}
		return err
	})
	return locks, err
}

// CreateOptions describe a new restore point.
type CreateOptions struct {
	Name        string
	Description string
	Tags        map[string]string
	Kind        string // single (default), pre, post
	PreID       int    // for a post point
	Method      string // override; "" chooses per volume
	// also adds volumes (by ID) to the guest's current disks: a
	// pre-rollback point covers every disk the rollback will write.
	also []string
	// plan is the point planned in the catalog read that found nothing
	// to recover on the target (nil: create reads the catalog itself).
	plan *pointPlan
	// replaced lists the volumes (by ID) whose live image a rollback
	// replaces right after this pre-rollback point: a full-copy point of
	// one is the live image itself, moved into the point when the
	// restored image takes its name (DiskPoint.Moved).
	replaced map[string]bool
	// onReady runs inside the transaction that records the point ready.
	onReady func(tx *catalog.Tx, p Point) error
	// inUseChecked: the caller (a rollback) holds these disks already
	// (ctx carries the hold).
	inUseChecked bool
	LiveOptions
}

// LiveOptions choose how a point of a running guest is taken.
type LiveOptions struct {
	// MaxPause bounds the pause (0: DefaultMaxPause, < 0: none).
	MaxPause time.Duration
	// Quiesce asks the guest agent to freeze the guest's filesystems
	// during the pause.
	Quiesce bool
	// Memory saves the running guest's RAM and device state with the
	// point (memory.go).
	Memory bool
}

// Create takes a restore point of a target.
func (m *Manager) Create(ctx context.Context, r TargetRef, o CreateOptions) (Point, error) {
	if o.Name != "" {
		if err := storage.ValidateName("restore point", o.Name); err != nil {
			return Point{}, err
		}
		if isNumber(o.Name) {
			return Point{}, storage.Errorf(storage.ErrInvalid, "invalid restore point name %q: a number would be read as a point's id", o.Name)
		}
	}
	if o.Method != "" {
		if _, _, err := m.st.PointDriver(o.Method); err != nil {
			return Point{}, err
		}
	}
	if o.Memory && o.Quiesce {
		// The saved RAM would hold the freeze: a guest resumed from it
		// would find its filesystems frozen, with nobody to thaw them.
		return Point{}, storage.Errorf(storage.ErrInvalid, "--memory and --quiesce exclude each other: a memory point resumes the guest exactly as it was, and with --quiesce that is with its filesystems frozen; leave --quiesce out (a memory point is consistent anyway)")
	}
	var p Point
	var pl pointPlan
	plan := func(tx *catalog.Tx, t Target) error { return m.planInto(tx, t, o, &pl) }
	err := m.withTargetRead(ctx, r, plan, func(t Target, planned bool) (err error) {
		if planned {
			o.plan = &pl
		}
		p, err = m.create(ctx, t, o, nil)
		return err
	})
	return p, err
}

func isNumber(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// volumesOf returns the target's volumes now (and the guest record). A
// guest with a writable disk that is not a volume (a host path or device)
// is refused: a restore point must capture all of its disks.
func volumesOf(tx *catalog.Tx, t Target) ([]storage.Volume, *storage.Guest, error) {
	if t.Kind() == catalog.KindVolume {
		v, err := tx.VolumeByID(t.Key.ID())
		return []storage.Volume{v}, nil, err
	}
	g, err := tx.GuestByID(t.Key.ID())
	if err != nil {
		return nil, nil, err
	}
	if g.Definition != "" {
		def, err := hvm.Unmarshal("guest "+g.Name, []byte(g.Definition))
		if err != nil {
			return nil, nil, err
		}
		for _, d := range def.Disks {
			kind, src := d.Source()
			if (kind == hvm.SourcePath || kind == hvm.SourceDevice) && !d.CDROM && !d.ReadOnly() {
				return nil, nil, storage.Errorf(storage.ErrPrecondition, "guest %q: disk %s is the host %s %q, not a strata volume, so a restore point could not capture it: register it with 'strata volume import %s' and point the disk at the volume ('strata guest set %s disks.N.volume=NAME disks.N.%s='), or import the guest with --adopt-disks", g.Name, d.Vdev, kind, src, src, g.Name, kind)
			}
		}
	}
	var vols []storage.Volume
	for _, id := range g.Disks {
		v, err := tx.VolumeByID(id)
		if err != nil {
			return nil, nil, storage.Errorf(storage.ErrPrecondition, "guest %q lists a disk (volume id %s) that no longer exists: fix the guest's disks", g.Name, id)
		}
		vols = append(vols, v)
	}
	return vols, &g, nil
}

// planInto plans a point of t as o describes it, with its disks'
// drivers, from the catalog read tx.
func (m *Manager) planInto(tx *catalog.Tx, t Target, o CreateOptions, pl *pointPlan) (err error) {
	if o.Kind == "" {
		o.Kind = KindSingle
	}
	if *pl, err = planPoint(tx, t, o, m.Now(), newUID()); err != nil {
		return err
	}
	return m.driversOf(tx, pl)
}

// create takes a point with the target's lock held. extra runs inside the
// transaction that records the point as being created (rollback journals
// itself there, so the two can never be separated by a crash).
//
// The point is planned from the catalog first (planPoint), then each step
// is one function: how the disks are kept still (capture, or a hold),
// where each driver will put its data (planDisks), the record (state
// creating, checked against the catalog: checkNewPoint), the take, and
// the record made ready.
func (m *Manager) create(ctx context.Context, t Target, o CreateOptions, extra func(tx *catalog.Tx, p Point) error) (Point, error) {
	if o.Kind == "" {
		o.Kind = KindSingle
	}
	var pl pointPlan
	if o.plan != nil {
		pl = *o.plan
	} else if err := m.st.Catalog.View(func(tx *catalog.Tx) error { return m.planInto(tx, t, o, &pl) }); err != nil {
		return Point{}, err
	}
	p := &pl.point
	live, err := m.capture(ctx, t, o, p, pl.vols)
	defer live.close()
	if err != nil {
		return Point{}, err
	}
	if err := m.planDisks(ctx, o, &pl); err != nil {
		return Point{}, err
	}
	if live != nil {
		// Started before the point is recorded, over once it is
		// recorded ready or undone: a strata that dies in between
		// leaves neither a paused guest nor a half point (guard.go).
		g, err := m.startGuard(t, live, *p)
		if err != nil {
			return Point{}, fmt.Errorf("restore point of %s: %w", t, err)
		}
		defer g.Done()
	}
	record := func() error {
		return m.st.Catalog.Update(func(tx *catalog.Tx) error { return recordPoint(tx, t, o, p, extra) })
	}
	if !o.inUseChecked && live == nil {
		var release func()
		if ctx, release, err = m.holdWhileRecording(ctx, t, pl.images(), p, record); err != nil {
			return Point{}, err
		}
		defer release()
	} else if err := record(); err != nil {
		return Point{}, err
	}
	crashpoint("create:recorded")
	if live != nil {
		err = m.takeLivePoint(ctx, t, live, p, pl.vols, o)
	} else {
		err = m.takeDisks(ctx, t, &pl)
	}
	if err != nil {
		return Point{}, err
	}
	p.State = stateReady
	p.Bytes = sumBytes(p.Disks)
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error {
		if o.onReady != nil {
			if err := o.onReady(tx, *p); err != nil {
				return err
			}
		}
		return putPoint(tx, *p)
	}); err != nil {
		return Point{}, err
	}
	ev := log.Debug().Str("target", t.String()).Int("point", p.ID).Str("method", p.Method).Str("kind", p.Kind)
	if p.PauseMS != nil {
		ev = ev.Float64("pause_ms", *p.PauseMS)
	}
	ev.Msg("restore point created")
	return *p, nil
}

// holdWhileRecording takes the hold on the disks of a stopped target (the
// in-use check, then the locks that keep writers out) while record
// commits point p as creating: the check and the durable commit are the
// two slow steps before the take and need nothing of each other. Both
// must succeed before anything is taken, so the rule stays the same: a
// point is recorded before its data exists, and a strata killed after
// the commit leaves a creating point the next command undoes (waiting
// for a writer it may have met, recoverPoint). A hold refused (the
// disks are in use) deletes the record again, never touching the disks.
func (m *Manager) holdWhileRecording(ctx context.Context, t Target, imgs []inuse.Image, p *Point, record func() error) (context.Context, func(), error) {
	run.Warm() // the take's tool starts right after both
	// The check's sources run in goroutines of their own; the commit,
	// the longer of the two, runs at once on this one (a goroutine
	// waited its turn behind the check's).
	type hold struct {
		ctx     context.Context
		release func()
		err     error
	}
	held := make(chan hold, 1)
	go func() {
		hctx, release, err := m.st.InUse.HoldAll(ctx, imgs)
		held <- hold{hctx, release, err}
	}()
	rerr := record() // p.ID is set from here on
	if rerr == nil {
		crashpoint("create:recorded-beside-hold")
	}
	h := <-held
	hctx, release, herr := h.ctx, h.release, h.err
	switch {
	case herr != nil && rerr == nil:
		// Under the target's lock nobody saw the record: its number is
		// given back, so a refusal leaves no gap in the numbers.
		if err := m.st.Catalog.Update(func(tx *catalog.Tx) error {
			if err := deletePoint(tx, p.TargetKey, p.ID); err != nil {
				return err
			}
			return tx.GiveBackSeq(seqOf(t), uint64(p.ID))
		}); err != nil {
			// Safe: the point holds no data; the next command on the
			// target (or doctor) undoes the creating record.
			log.Warn().Err(err).Str("target", t.String()).Int("point", p.ID).Msg("cannot remove the record of a point its disks being in use stopped; the next command on it will")
		}
		return ctx, nil, herr
	case herr != nil:
		return ctx, nil, herr // in use says more than a refused record
	case rerr != nil:
		release()
		return ctx, nil, rerr
	}
	return hctx, release, nil
}

// pointPlan is a point to take, planned from the catalog: its record (in
// state creating, disks not yet planned), the volumes it captures, and
// the label its drivers name its data by. driversOf adds each volume's
// driver and pool (in the same transaction), planDisks its planned data
// (the record's Disks).
type pointPlan struct {
	point   Point
	vols    []storage.Volume
	label   string
	drivers []storage.Driver
	pools   []storage.Pool
}

// planPoint plans a point of t: the target's volumes now (and those o
// adds), the guest record, the next number's label, and the record.
func planPoint(tx *catalog.Tx, t Target, o CreateOptions, now time.Time, uid string) (pointPlan, error) {
	vols, guest, err := volumesOf(tx, t)
	if err != nil {
		return pointPlan{}, err
	}
	last, err := tx.LastSeq(seqOf(t)) // the target's last point number
	if err != nil {
		return pointPlan{}, err
	}
	for _, id := range o.also {
		if !slices.ContainsFunc(vols, func(v storage.Volume) bool { return v.ID == id }) {
			v, err := tx.VolumeByID(id)
			if err != nil {
				return pointPlan{}, err
			}
			vols = append(vols, v)
		}
	}
	p := Point{Disks: []DiskPoint{}, Name: o.Name, Target: t.String(), TargetKey: t.Key, Created: now, Kind: o.Kind, Description: o.Description,
		Tags: o.Tags, State: stateCreating, UID: uid, Guest: guest}
	if p.Tags == nil {
		p.Tags = map[string]string{}
	}
	if o.Kind == KindPost {
		pre := o.PreID
		p.PreID = &pre
	}
	return pointPlan{point: p, vols: vols, label: pointLabel(last+1, o)}, nil
}

// capture finds whether t is a guest that runs: such a guest is captured
// through its driver, in one pause (live; quiesced by its agent if o
// asks), and p says so; otherwise no one may be writing the disks (a
// point would be torn, and qemu-img would refuse a qcow2 one): the caller
// holds them. A memory point is planned here too. The returned live
// guest, even with an error, is the caller's to close.
func (m *Manager) capture(ctx context.Context, t Target, o CreateOptions, p *Point, vols []storage.Volume) (*liveGuest, error) {
	var live *liveGuest
	if !o.inUseChecked {
		lctx := ctx
		if o.Memory {
			lctx = forMemory(ctx)
		}
		var err error
		if live, err = m.liveOf(lctx, t); err != nil {
			return nil, err
		}
	}
	if live != nil && o.Quiesce {
		var err error
		if live.agent, err = live.quiesceAgent(ctx); err != nil {
			return live, err
		}
		// Recorded before the freeze: undoing an interrupted point
		// thaws the guest (quiesce.go).
		p.Consistency = boot.ConsistencyFilesystem
	}
	p.Live = live != nil
	p.LivePaused = live != nil && live.paused
	if !p.Live {
		p.Consistency = consistencyOffline
	}
	if o.Memory {
		if err := planMemory(t, live, vols, p); err != nil {
			return live, err
		}
	}
	return live, nil
}

// driversOf finds the driver and pool of each of pl's volumes, in the
// transaction that planned it (one catalog read for the whole plan).
func (m *Manager) driversOf(tx *catalog.Tx, pl *pointPlan) error {
	for _, v := range pl.vols {
		drv, pool, err := m.st.VolumeDriverTx(tx, v)
		if err != nil {
			return err
		}
		pl.drivers, pl.pools = append(pl.drivers, drv), append(pl.pools, pool)
	}
	return nil
}

// images are the paths a guest could open pl's volumes under (see
// Manager.images), from the drivers the plan found.
func (pl *pointPlan) images() []inuse.Image {
	return imagesOf(pl.vols, func(i int) []string { return pl.drivers[i].Locations(pl.pools[i], pl.vols[i]) })
}

// planDisks asks each volume's driver where its point data will be
// (Moved included), before the take is recorded, so that undoing an
// interrupted one knows where its data may be.
func (m *Manager) planDisks(ctx context.Context, o CreateOptions, pl *pointPlan) error {
	p := &pl.point
	methods := map[string]bool{}
	for i, v := range pl.vols {
		drv, pool := pl.drivers[i], pl.pools[i]
		ref, err := drv.PlanPoint(ctx, pool, v, p.UID, storage.PointOptions{Method: o.Method, ReplacingLive: o.replaced[v.ID], Label: pl.label})
		if err != nil {
			return err
		}
		p.Disks = append(p.Disks, DiskPoint{VolumeID: v.ID, Volume: v.Name, Format: v.Format, PointRef: ref})
		methods[ref.Method] = true
	}
	p.Method = methodMixed
	if len(methods) == 1 {
		p.Method = p.Disks[0].Method
	}
	return nil
}

// recordPoint numbers p and records it as being created, once
// checkNewPoint accepts it; extra (if set) runs in the same transaction.
func recordPoint(tx *catalog.Tx, t Target, o CreateOptions, p *Point, extra func(tx *catalog.Tx, p Point) error) error {
	if err := checkNewPoint(tx, t, o); err != nil {
		return err
	}
	n, err := tx.NextSeq(seqOf(t))
	if err != nil {
		return err
	}
	p.ID = int(n)
	if extra != nil {
		if err := extra(tx, *p); err != nil {
			return err
		}
	}
	return putPoint(tx, *p)
}

// checkNewPoint refuses a point o describes that the catalog cannot take:
// a name another point of t has, a post point without a ready pre point
// of t to pair with.
func checkNewPoint(tx *catalog.Tx, t Target, o CreateOptions) error {
	if o.Name != "" {
		q, ok, err := pointByName(tx, t.Key, o.Name)
		if err != nil {
			return err
		}
		if ok {
			return storage.Errorf(storage.ErrExists, "%s already has a restore point named %q (number %d)", t, o.Name, q.ID)
		}
	}
	if o.Kind != KindPost {
		return nil
	}
	pre, ok, err := pointByNumber(tx, t.Key, o.PreID)
	if err != nil {
		return err
	}
	if !ok || pre.State != stateReady {
		return storage.Errorf(storage.ErrNotFound, "%s has no restore point %d to pair a post point with", t, o.PreID)
	}
	if pre.Kind != KindPre {
		return storage.Errorf(storage.ErrInvalid, "restore point %d of %s is of kind %s: a post point pairs with a pre point (snapshot create --pre)", o.PreID, t, pre.Kind)
	}
	return nil
}

// takeLivePoint takes a recorded point of a running guest through its
// driver; on failure it undoes it, unless the point holds the memory of
// a guest that did not come back from it (memory.go): that is never
// undone.
func (m *Manager) takeLivePoint(ctx context.Context, t Target, live *liveGuest, p *Point, vols []storage.Volume, o CreateOptions) error {
	if o.MaxPause == 0 {
		o.MaxPause = DefaultMaxPause
	}
	err := m.takeLive(ctx, live, p, vols, o)
	if err == nil {
		return nil
	}
	if !errors.Is(err, errPointKept) {
		if uerr := m.undoLive(context.WithoutCancel(ctx), t, live, *p); uerr != nil {
			log.Error().Err(uerr).Msg("could not undo the partial restore point; strata doctor --repair will")
		}
	}
	return fmt.Errorf("restore point of %s: %w", t, err)
}

// takeDisks has each disk's driver take a recorded point of disks that
// no one writes; on failure (or a signal) it undoes the point.
func (m *Manager) takeDisks(ctx context.Context, t Target, pl *pointPlan) error {
	p := &pl.point
	for i := range p.Disks {
		var err error
		if ctx.Err() != nil {
			err = interrupted(ctx)
		} else {
			err = pl.drivers[i].TakePoint(ctx, pl.pools[i], pl.vols[i], &p.Disks[i].PointRef, m.Progress)
		}
		if err != nil {
			if uerr := m.undoCreate(context.WithoutCancel(ctx), *p); uerr != nil {
				log.Error().Err(uerr).Msg("could not undo the partial restore point; strata doctor --repair will")
			}
			return fmt.Errorf("restore point of %s, volume %q: %w", t, pl.vols[i].Name, err)
		}
		crashpoint(fmt.Sprintf("create:disk-%d", i+1))
	}
	return nil
}

// seqOf names the sequence of t's point numbers.
func seqOf(t Target) string { return "points/" + t.Key.String() }

// pointLabel is the label of point number n for its drivers to name the
// point's data by (storage.PointOptions.Label): its number, then its name,
// or its kind for a point strata takes by itself ("7-pre-rollback"). The
// caller read n as the target's next number under the target's lock, and
// only a create of the target takes its next number, so n is the number
// the point is recorded with. (A label is for reading only: the drivers
// keep names unique without it.)
func pointLabel(n uint64, o CreateOptions) string {
	label := strconv.FormatUint(n, 10)
	switch {
	case o.Name != "":
		label += "-" + o.Name
	case o.Kind != KindSingle:
		label += "-" + o.Kind
	}
	return label
}

func sumBytes(disks []DiskPoint) *int64 {
	var total int64
	for _, d := range disks {
		if d.Bytes == nil {
			return nil
		}
		total += *d.Bytes
	}
	return &total
}

// undoCreate removes whatever an unfinished point wrote, then its record.
func (m *Manager) undoCreate(ctx context.Context, p Point) error {
	if err := m.removeData(ctx, p); err != nil {
		return err
	}
	return m.st.Catalog.Update(func(tx *catalog.Tx) error { return deletePoint(tx, p.TargetKey, p.ID) })
}

// undoLive undoes a live point that failed while its guest runs.
// A guest that died meanwhile has no monitor: its point is undone as a
// stopped guest's is.
func (m *Manager) undoLive(ctx context.Context, t Target, l *liveGuest, p Point) error {
	// Asked through the connection strata holds (QEMU serves one client
	// on the guest's QMP socket): a monitor that no longer answers is a
	// guest that is gone.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := l.mon.Execute(qctx, "query-status", nil)
	cancel()
	if err != nil {
		return m.undoCreate(ctx, p)
	}
	abandonLive(ctx, l, p, false)
	if err := m.removeLive(ctx, l, p); err != nil {
		return err
	}
	return m.st.Catalog.Update(func(tx *catalog.Tx) error { return deletePoint(tx, p.TargetKey, p.ID) })
}

// removeData deletes every disk's data of a point (idempotent).
func (m *Manager) removeData(ctx context.Context, p Point) error {
	return m.removeDisks(ctx, p, false)
}

// removeFiles deletes the data of a point's disks that are not inside
// their volume (reflink and copy files), not internal snapshots.
func (m *Manager) removeFiles(ctx context.Context, p Point) error {
	return m.removeDisks(ctx, p, true)
}

func (m *Manager) removeDisks(ctx context.Context, p Point, filesOnly bool) error {
	for i, d := range p.Disks {
		drv, pm, err := m.pointDriver(d)
		if err != nil {
			return err
		}
		if filesOnly && pm.InVolume {
			continue
		}
		var v storage.Volume
		var pool storage.Pool // zero for a volume that is gone
		err = m.st.Catalog.View(func(tx *catalog.Tx) (err error) {
			if v, err = tx.VolumeByID(d.VolumeID); err != nil {
				return err
			}
			_, pool, err = m.st.VolumeDriverTx(tx, v)
			return err
		})
		if err != nil {
			if pm.InVolume {
				continue // the volume and the points inside it are gone
			}
			v, pool = storage.Volume{ID: d.VolumeID, Name: d.Volume}, storage.Pool{}
		}
		if err := drv.RemovePoint(ctx, pool, v, d.PointRef); err != nil {
			return fmt.Errorf("remove restore point %d data of volume %q: %w", p.ID, d.Volume, err)
		}
		crashpoint(fmt.Sprintf("delete:disk-%d", i+1))
	}
	return removeMemory(p)
}

func pointsOf(tx *catalog.Tx, targetKey catalog.TargetKey) ([]Point, error) {
	var out []Point
	name := nameOf(tx, targetKey)
	err := tx.Scan(bPoints, targetKey.String()+"/", func(_ string, raw []byte) error {
		var p Point
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		p.Target = name
		out = append(out, p)
		return nil
	})
	return out, err
}

// point returns a ready point of t by number or name.
func (m *Manager) point(t Target, ref string) (Point, error) {
	num, name, err := ParsePointRef(ref)
	if err != nil {
		return Point{}, err
	}
	var p Point
	var ok bool
	err = m.st.Catalog.View(func(tx *catalog.Tx) error {
		var err error
		if num > 0 {
			p, ok, err = pointByNumber(tx, t.Key, num)
		} else {
			p, ok, err = pointByName(tx, t.Key, name)
		}
		return err
	})
	if err != nil {
		return Point{}, err
	}
	if !ok || p.State != stateReady {
		return Point{}, storage.Errorf(storage.ErrNotFound, "%s has no restore point %q: see 'strata snapshot list %s'", t, ref, t.Arg())
	}
	return p, nil
}

// List returns the ready points of one target (r non-nil) or of all, in
// target then number order, with their targets' current names.
func (m *Manager) List(ctx context.Context, r *TargetRef) ([]Point, error) {
	out := []Point{}
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		prefix := ""
		name := map[catalog.TargetKey]string{}
		if r != nil {
			t, err := r.resolve(tx)
			if err != nil {
				return err
			}
			prefix = t.Key.String() + "/"
			name[t.Key] = t.String()
		}
		return tx.Scan(bPoints, prefix, func(_ string, raw []byte) error {
			var p Point
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			if p.State != stateReady {
				return nil
			}
			n, ok := name[p.TargetKey]
			if !ok {
				n = nameOf(tx, p.TargetKey)
				name[p.TargetKey] = n
			}
			p.Target = n // never the stored name, which a rename made stale
			out = append(out, p)
			return nil
		})
	})
	if err == nil {
		m.usage(ctx, out)
	}
	return out, err
}

// usageWarn is how full a point of fixed size may get before List warns.
const usageWarn = 80.0

// usage fills in how full the points of fixed size are (LVM classic
// snapshots), warning of those near overflow or over it.
func (m *Manager) usage(ctx context.Context, points []Point) {
	for i := range points {
		for j := range points[i].Disks {
			d := &points[i].Disks[j]
			drv, _, err := m.pointDriver(*d)
			u, isUsager := drv.(storage.PointUsager)
			if err != nil || !isUsager {
				continue
			}
			pct, invalid, ok, err := u.PointUsage(ctx, d.PointRef)
			if err != nil || !ok {
				continue
			}
			d.DataPercent, d.Invalid = &pct, invalid
			switch {
			case invalid:
				log.Warn().Int("point", points[i].ID).Str("volume", d.Volume).Msg("this restore point overflowed (the guest changed more than its snapshot holds): it cannot be rolled back to; delete it")
			case pct >= usageWarn:
				log.Warn().Int("point", points[i].ID).Str("volume", d.Volume).Float64("data_percent", pct).Msg("this restore point's snapshot is nearly full: once full it becomes invalid; delete older points or give the pool a larger --snapshot-size for new ones")
			}
		}
	}
}

// parsePointTarget reads a catalog key of restore point state (a journal,
// a policy): the key of a guest or a volume, the only targets points are
// taken of.
func parsePointTarget(s string) (catalog.TargetKey, error) {
	k, err := catalog.ParseTargetKey(s)
	if err == nil && k.Kind() != catalog.KindGuest && k.Kind() != catalog.KindVolume {
		err = storage.Errorf(storage.ErrInvalid, "target key %q names a %s: restore points are of guests and volumes (the catalog may be damaged: see 'strata doctor')", s, k.Kind())
	}
	return k, err
}

// targetOf is the target key names, with its current name (it may have
// been renamed since a point was taken): ok is false, and Name empty, when
// the catalog no longer has it.
func targetOf(tx *catalog.Tx, k catalog.TargetKey) (t Target, ok bool) {
	t.Key = k
	switch k.Kind() {
	case catalog.KindVolume:
		if v, err := tx.VolumeByID(k.ID()); err == nil {
			t.Name, ok = v.Name, true
		}
	case catalog.KindGuest:
		if g, err := tx.GuestByID(k.ID()); err == nil {
			t.Name, ok = g.Name, true
		}
	case catalog.KindGolden:
		var g goldenRecord
		if found, err := tx.Get(bGoldens, k.ID(), &g); err == nil && found {
			t.Name, ok = g.Name, true
		}
	}
	return t, ok
}

// nameOf is the display name of the target k names, as named now: what a
// point's Target shows, never the name its record stored when it was
// taken (a rename since made that stale).
func nameOf(tx *catalog.Tx, k catalog.TargetKey) string {
	t, _ := targetOf(tx, k)
	return t.String()
}

// Show returns one point.
func (m *Manager) Show(ctx context.Context, r TargetRef, ref string) (Point, error) {
	t, err := m.target(r)
	if err != nil {
		return Point{}, err
	}
	p, err := m.point(t, ref)
	p.Target = t.String()
	return p, err
}

// SetPinned pins (never pruned, never deleted until unpinned) or unpins.
func (m *Manager) SetPinned(ctx context.Context, r TargetRef, ref string, pinned bool) (Point, error) {
	var p Point
	err := m.withTarget(ctx, r, func(t Target) (err error) {
		if p, err = m.point(t, ref); err != nil {
			return err
		}
		p.Pinned = pinned
		return m.st.Catalog.Update(func(tx *catalog.Tx) error { return putPoint(tx, p) })
	})
	return p, err
}

// Delete removes a restore point and its data. Pinned points are refused.
func (m *Manager) Delete(ctx context.Context, r TargetRef, ref string) error {
	_, err := m.DeleteMany(ctx, r, []string{ref})
	return err
}

// DeleteMany deletes several points of one target, given by number, name
// or range "N-M" (the points numbered N to M that exist; a point named
// "N-M" is that point). All of them are resolved and checked first, under
// the target's lock: one that does not exist or is pinned deletes
// nothing. Then each is deleted as Delete would (journaled one by one); a
// failure stops there and says which were deleted. It returns the numbers
// deleted, in order.
func (m *Manager) DeleteMany(ctx context.Context, r TargetRef, refs []string) ([]int, error) {
	var done []int
	err := m.withTarget(ctx, r, func(t Target) error {
		var points []Point
		seen := map[int]bool{}
		for _, ref := range refs {
			ps, err := m.pointsOfRef(t, ref)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if p.Pinned {
					return storage.Errorf(storage.ErrPrecondition, "restore point %d of %s is pinned: unpin it first ('strata snapshot unpin %s %d'); nothing was deleted", p.ID, t, t.Arg(), p.ID)
				}
				if !seen[p.ID] {
					seen[p.ID] = true
					points = append(points, p)
				}
			}
		}
		slices.SortFunc(points, func(a, b Point) int { return a.ID - b.ID })
		for _, p := range points {
			if err := m.delete(ctx, t, p); err != nil {
				if len(done) > 0 {
					return fmt.Errorf("%w (points %s of %s were deleted before this one)", err, joinInts(done), t)
				}
				return err
			}
			done = append(done, p.ID)
		}
		return nil
	})
	return done, err
}

// pointsOfRef resolves a point reference of DeleteMany: a number, a name,
// or a range N-M of the ready points that exist (at least one).
func (m *Manager) pointsOfRef(t Target, ref string) ([]Point, error) {
	lo, hi, isRange := strings.Cut(ref, "-")
	from, err1 := strconv.Atoi(lo)
	to, err2 := strconv.Atoi(hi)
	if !isRange || err1 != nil || err2 != nil {
		p, err := m.point(t, ref)
		return []Point{p}, err
	}
	if p, err := m.point(t, ref); err == nil {
		return []Point{p}, nil // a point named like a range
	}
	if from <= 0 || to < from {
		return nil, storage.Errorf(storage.ErrInvalid, "invalid range %q: write FIRST-LAST with 1 <= FIRST <= LAST (e.g. 3-7)", ref)
	}
	var out []Point
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		all, err := pointsOf(tx, t.Key)
		for _, p := range all {
			if p.ID >= from && p.ID <= to && p.State == stateReady {
				out = append(out, p)
			}
		}
		return err
	})
	if err == nil && len(out) == 0 {
		err = storage.Errorf(storage.ErrNotFound, "%s has no restore point numbered %d to %d: see 'strata snapshot list %s'", t, from, to, t.Arg())
	}
	return out, err
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func (m *Manager) delete(ctx context.Context, t Target, p Point) error {
	// An internal snapshot of a running guest's image goes through its
	// monitor; otherwise it is removed from the image by qemu-img, not
	// under a guest strata does not run (qemu-img would meet its lock
	// halfway through a prune).
	live, err := m.liveOf(ctx, t)
	if err != nil && !m.hasInVolume(p) {
		live, err = nil, nil // its files are strata's alone
	}
	if err != nil {
		return err
	}
	defer live.close()
	for _, d := range p.Disks {
		if live != nil {
			break
		}
		if !m.inVolume(d) {
			continue
		}
		if v, err := m.volumeByID(d.VolumeID); err == nil {
			if err := m.st.InUse.CheckAll(ctx, m.images([]storage.Volume{v})); err != nil {
				return err
			}
		}
	}
	p.State = stateDeleting
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return putPoint(tx, p) }); err != nil {
		return err
	}
	crashpoint("delete:marked")
	// Marked: a signal now finishes the delete rather than stopping it
	// halfway (no step of it is long).
	ctx = context.WithoutCancel(ctx)
	remove := m.removeData
	if live != nil {
		remove = func(ctx context.Context, p Point) error { return m.removeLive(ctx, live, p) }
	}
	if err := remove(ctx, p); err != nil {
		return err
	}
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return deletePoint(tx, t.Key, p.ID) }); err != nil {
		return err
	}
	log.Debug().Str("target", t.String()).Int("point", p.ID).Msg("restore point deleted")
	return nil
}

// recoverTarget finishes or undoes what a dead process left on t; the
// caller holds t's lock, so nobody else is working on it: first every
// point left creating or deleting (through the guest's monitor if it
// runs), then the rollback its journal records.
func (m *Manager) recoverTarget(ctx context.Context, t Target) error {
	_, err := m.recoverTargetOr(ctx, t, nil)
	return err
}

// recoverTargetOr is recoverTarget that, when there is nothing to finish
// or undo, runs read (if not nil) in the same catalog read and says so
// (ran true, with read's error).
func (m *Manager) recoverTargetOr(ctx context.Context, t Target, read func(*catalog.Tx) error) (ran bool, err error) {
	var j journalEntry
	var hasJournal bool
	var pending []Point
	var readErr error
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) {
		if hasJournal, err = tx.Get(bJournal, t.Key.String(), &j); err != nil {
			return err
		}
		if pending, err = pendingOf(tx, t.Key); err != nil {
			return err
		}
		if read != nil && !hasJournal && len(pending) == 0 {
			ran, readErr = true, read(tx)
		}
		return nil
	}); err != nil {
		return false, err
	}
	if ran {
		return true, readErr
	}
	return false, m.settleTarget(ctx, t, j, hasJournal, pending)
}

// settleTarget finishes or undoes what recoverTarget found.
func (m *Manager) settleTarget(ctx context.Context, t Target, j journalEntry, hasJournal bool, pending []Point) error {
	var live *liveGuest
	if len(pending) > 0 {
		var err error
		if live, err = m.liveOf(ctx, t); err != nil {
			return err
		}
		defer live.close()
	}
	for _, p := range pending {
		settle := m.recoverPoint
		if live != nil {
			settle = func(ctx context.Context, t Target, p Point) error { return m.recoverLivePoint(ctx, t, live, p) }
		}
		if err := settle(ctx, t, p); err != nil {
			return err
		}
	}
	if !hasJournal {
		return nil
	}
	return m.recoverRollback(ctx, t, j)
}

// recoverLivePoint undoes (creating) or finishes (deleting) point p of a
// guest that runs: what the point made is removed through its monitor
// (and a guest a live point left paused runs again). Through live's
// connection: QEMU serves one client on the guest's QMP socket, so
// nothing here may open another.
func (m *Manager) recoverLivePoint(ctx context.Context, t Target, live *liveGuest, p Point) error {
	switch p.State {
	case stateCreating:
		log.Warn().Str("target", t.String()).Int("point", p.ID).Msg("undoing a restore point whose creation was interrupted")
		if p.Live {
			abandonLive(ctx, live, p, true)
		}
		if err := m.removeLive(ctx, live, p); err != nil {
			return err
		}
	case stateDeleting:
		log.Warn().Str("target", t.String()).Int("point", p.ID).Msg("finishing an interrupted delete of a restore point")
		if err := m.removeLive(context.WithoutCancel(ctx), live, p); err != nil {
			return err
		}
	default:
		return nil
	}
	return m.st.Catalog.Update(func(tx *catalog.Tx) error { return deletePoint(tx, p.TargetKey, p.ID) })
}

// recoverPoint undoes (creating) or finishes (deleting) point p of a
// target no guest runs. A qemu-img that outlived its strata may still be
// changing an image: it is let finish before anything is decided.
func (m *Manager) recoverPoint(ctx context.Context, t Target, p Point) error {
	if p.State == stateCreating && p.Memory == nil && m.nothingTaken(ctx, p) {
		// Killed before the take (during the in-use check that runs
		// beside the record, holdWhileRecording): the record names data
		// no disk holds, so it goes at once, without waiting for a
		// writer that check may have met. (A qemu-img of that strata
		// still running would finish an internal snapshot no record
		// names: doctor reports it as an orphan snapshot and --repair
		// removes it.)
		log.Warn().Str("target", t.String()).Int("point", p.ID).Msg("forgetting a restore point whose creation was interrupted before anything was taken")
		return m.st.Catalog.Update(func(tx *catalog.Tx) error { return deletePoint(tx, p.TargetKey, p.ID) })
	}
	for _, d := range p.Disks {
		if !m.inVolume(d) {
			continue
		}
		if v, err := m.volumeByID(d.VolumeID); err == nil {
			if err := m.st.InUse.Wait(ctx, fmt.Sprintf("volume %q", v.Name), v.Path, m.lockTimeout); err != nil {
				return err
			}
		}
	}
	switch p.State {
	case stateCreating:
		// A memory point stopped between the driver's save and the
		// restore is finished, the guest continuing (memory.go).
		if done, err := m.finishSaved(ctx, t, p); done || err != nil {
			return err
		}
		log.Warn().Str("target", t.String()).Int("point", p.ID).Msg("undoing a restore point whose creation was interrupted")
		return m.undoCreate(ctx, p)
	case stateDeleting:
		log.Warn().Str("target", t.String()).Int("point", p.ID).Msg("finishing an interrupted delete of a restore point")
		return m.delete(ctx, t, p)
	}
	return nil
}

// nothingTaken reports that no disk of point p holds any of its data
// (each driver's PointExists, which reads without taking the image's
// locks); a disk that cannot be asked counts as holding data.
func (m *Manager) nothingTaken(ctx context.Context, p Point) bool {
	for _, d := range p.Disks {
		drv, _, err := m.pointDriver(d)
		if err != nil {
			return false
		}
		var v storage.Volume
		var pool storage.Pool
		if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) {
			if v, err = tx.VolumeByID(d.VolumeID); err != nil {
				return err
			}
			_, pool, err = m.st.VolumeDriverTx(tx, v)
			return err
		}); err != nil {
			return false
		}
		if ok, err := drv.PointExists(ctx, pool, v, d.PointRef); err != nil || ok {
			return false
		}
	}
	return true
}

// hasInVolume tells whether a point has data inside a volume (an internal
// snapshot) among its disks.
func (m *Manager) hasInVolume(p Point) bool {
	for _, d := range p.Disks {
		if m.inVolume(d) {
			return true
		}
	}
	return false
}
