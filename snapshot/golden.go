package snapshot

// Golden images.
//
// A golden image is a guest's disks and definition (or one volume) frozen
// at an instant — now, or a restore point — as a read-only template that
// clones are made from. Its images are copies in a pool (reflink where
// the filesystem can, else a sparse copy; qcow2 disks are rewritten by
// qemu-img convert, which drops internal snapshots and any backing chain),
// named by stable IDs, mode 0400, and not volumes: no volume command can
// write or delete them. A golden is deleted only while no linked clone
// (a volume whose recorded backing file is one of its images) depends on
// it.
//
// Crash safety: a golden is recorded in state "creating" (with the paths
// its images will have) before anything is copied, and in state
// "deleting" before its images are removed; a clone journals the paths of
// every image it will make before making any, and records all its guests
// and volumes in one final transaction that also closes the journal. Each
// operation holds the golden's lock file (locks/gold-ID.lock) for its
// whole length, so whoever takes the lock and finds such a state knows its
// process died and undoes (create, clone) or finishes (delete) it. Until
// then, doctor does not count the images of unfinished operations as
// referenced: doctor --repair removes them as orphans.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/image"
)

// Catalog buckets of golden images and clones.
const (
	bGoldens      = catalog.GoldensBucket // golden ID → goldenRecord
	bGoldenNames  = "golden_names"        // name → golden ID
	bGoldenClones = "golden_clones"       // "GOLDENID/VOLUMEID" → cloneLink
	bCloneJournal = "golden_journal"      // golden ID → cloneJournal (a clone under way)
)

// Golden kinds: what its clones are.
const (
	GoldenGuest  = "guest"
	GoldenVolume = "volume"
)

// goldenRecord is a golden image in the catalog. Definition is the source
// guest's YAML definition (it may hold a VNC password, so it is never
// printed).
type goldenRecord struct {
	ID         string       `json:"id"`
	Name       string       `json:"name"`
	Created    time.Time    `json:"created"`
	Kind       string       `json:"kind"`
	Source     GoldenSource `json:"source"`
	FromID     string       `json:"from_id,omitempty"`
	FromName   string       `json:"from_name,omitempty"`
	Disks      []GoldenDisk `json:"disks"`
	Definition string       `json:"definition,omitempty"`
	State      string       `json:"state"`
}

// GoldenSource is what a golden image was frozen from.
type GoldenSource struct {
	Kind      string `json:"kind"` // guest or volume
	Name      string `json:"name"`
	ID        string `json:"id"`
	Point     *int   `json:"point"` // nil: frozen as it was at the time
	PointName string `json:"point_name,omitempty"`
}

// GoldenDisk is one image of a golden.
type GoldenDisk struct {
	// Volume is the source volume's name at freezing time; the source
	// definition's disks reference it.
	Volume      string         `json:"volume"`
	VolumeID    string         `json:"volume_id"`
	SourcePath  string         `json:"source_path"`
	Path        string         `json:"path"`
	Format      storage.Format `json:"format"`
	Pool        string         `json:"pool"`
	VirtualSize int64          `json:"virtual_size"`
	Bytes       int64          `json:"allocated_bytes"`
}

// GoldenInfo is a golden image as listed and shown.
type GoldenInfo struct {
	ID      string       `json:"id"`
	Name    string       `json:"name"`
	Created time.Time    `json:"created"`
	Kind    string       `json:"kind"`
	Source  GoldenSource `json:"source"`
	Disks   []GoldenDisk `json:"disks"`
	// Clones counts the guests (or volumes) cloned from it that exist;
	// LinkedClones those of them that still depend on it.
	Clones       int   `json:"clones"`
	LinkedClones int   `json:"linked_clones"`
	Bytes        int64 `json:"bytes"`
	// From is the golden the source was cloned from (lineage), nil if none.
	From *string `json:"from"`
	// CloneList is filled in by GoldenShow only.
	CloneList []CloneInfo `json:"clone_list,omitempty"`
}

// cloneLink records that a volume was cloned from a golden.
type cloneLink struct {
	Golden   string `json:"golden"`
	VolumeID string `json:"volume_id"`
	GuestID  string `json:"guest_id,omitempty"`
	Disk     int    `json:"disk"`
	Method   string `json:"method"` // linked, reflink or copy
}

// cloneJournal lists the images a clone under way makes.
type cloneJournal struct {
	Op      string    `json:"op"` // clone
	Paths   []string  `json:"paths"`
	Pools   []string  `json:"pools,omitempty"` // Paths[i] is in pool Pools[i]
	Started time.Time `json:"started"`
}

func goldenTarget(g goldenRecord) Target {
	return Target{Key: catalog.GoldenKey(g.ID), Name: g.Name}
}

// goldenRefs tells doctor the images of ready goldens. Images of
// unfinished creates, deletes and clones are left out on purpose: doctor
// --repair holds the state home exclusively, so they are leftovers of a
// dead process and are removed as orphans.
func goldenRefs(tx *catalog.Tx, refs map[string]bool) error {
	return tx.Scan(bGoldens, "", func(_ string, raw []byte) error {
		var g goldenRecord
		if err := json.Unmarshal(raw, &g); err != nil {
			return err
		}
		if g.State == stateReady {
			for _, d := range g.Disks {
				refs[d.Path] = true
			}
		}
		return nil
	})
}

func goldenByName(tx *catalog.Tx, name string) (goldenRecord, error) {
	var id string
	ok, err := tx.Get(bGoldenNames, name, &id)
	if err != nil {
		return goldenRecord{}, err
	}
	var g goldenRecord
	if ok {
		ok, err = tx.Get(bGoldens, id, &g)
	}
	if err != nil {
		return g, err
	}
	if !ok || g.State != stateReady {
		return g, storage.Errorf(storage.ErrNotFound, "golden image %q not found: see 'strata golden list'", name)
	}
	return g, nil
}

func goldens(tx *catalog.Tx) ([]goldenRecord, error) {
	var out []goldenRecord
	err := tx.Scan(bGoldens, "", func(_ string, raw []byte) error {
		var g goldenRecord
		if err := json.Unmarshal(raw, &g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// recoverGoldens finishes or undoes every golden operation a dead process
// left (a golden being created or deleted, a clone under way). Operations
// whose lock is held are running and left alone. Every golden and clone
// command calls it first, and so does doctor.
func (m *Manager) recoverGoldens(ctx context.Context) ([]Finding, error) {
	pending, err := m.pendingGoldens(nil)
	if err != nil {
		return nil, err
	}
	return m.recoverPending(ctx, pending)
}

// recoverPending is recoverGoldens for the pending goldens given.
func (m *Manager) recoverPending(ctx context.Context, pending []goldenRecord) ([]Finding, error) {
	var out []Finding
	for _, g := range pending {
		l, ok := tryLockTarget(m.st.Catalog.Home(), goldenTarget(g))
		if !ok {
			continue
		}
		f, err := m.recoverGolden(ctx, g.ID)
		l.unlock()
		if err != nil {
			return out, err
		}
		out = append(out, f...)
	}
	return out, nil
}

// pendingGoldens lists the goldens with an operation under way or
// interrupted. also, if not nil, runs in the same catalog read.
func (m *Manager) pendingGoldens(also func(*catalog.Tx)) ([]goldenRecord, error) {
	var pending []goldenRecord
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		if also != nil {
			also(tx)
		}
		journaled := map[string]bool{}
		if err := tx.Scan(bCloneJournal, "", func(k string, _ []byte) error { journaled[k] = true; return nil }); err != nil {
			return err
		}
		return tx.Scan(bGoldens, "", func(k string, raw []byte) error {
			var g goldenRecord
			if err := json.Unmarshal(raw, &g); err != nil {
				return err
			}
			if g.State != stateReady || journaled[k] {
				pending = append(pending, g)
			}
			return nil
		})
	})
	return pending, err
}

// interruptedGoldens reports, without changing anything, the golden
// operations a dead process left, each with what it was and what doctor
// --repair will do; it also returns the images of operations running now
// (their lock is held), which are not orphans.
func (m *Manager) interruptedGoldens() ([]Finding, []string, error) {
	pending, err := m.pendingGoldens(nil)
	if err != nil || len(pending) == 0 {
		return nil, nil, err
	}
	var out []Finding
	var running []string
	for _, g := range pending {
		var j cloneJournal
		var hasJ bool
		if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { hasJ, err = tx.Get(bCloneJournal, g.ID, &j); return err }); err != nil {
			return out, running, err
		}
		l, free := tryLockTarget(m.st.Catalog.Home(), goldenTarget(g))
		if !free {
			log.Info().Str("golden", g.Name).Msg("a golden image operation is running: not checked")
			for _, d := range g.Disks {
				running = append(running, d.Path)
			}
			running = append(running, j.Paths...)
			continue
		}
		l.unlock()
		if hasJ {
			out = append(out, Finding{Kind: "interrupted-operation", Target: goldenTarget(g).String(),
				Detail: "a clone from golden image " + g.Name + " was interrupted: 'strata doctor --repair' removes the " + itoa(len(j.Paths)) + " image(s) it was making; the golden image is not changed"})
		}
		switch g.State {
		case stateReady:
		case stateDeleting:
			out = append(out, Finding{Kind: "interrupted-operation", Target: goldenTarget(g).String(),
				Detail: "the delete of golden image " + g.Name + " was interrupted: 'strata doctor --repair' finishes it (removes its images and record)"})
		default:
			out = append(out, Finding{Kind: "interrupted-operation", Target: goldenTarget(g).String(),
				Detail: "the creation of golden image " + g.Name + " (from " + g.Source.Kind + " " + g.Source.Name + ") was interrupted: it was never ready; 'strata doctor --repair' removes its half-made images and its record, then create it again"})
		}
	}
	return out, running, nil
}

// recoverGolden deals with what a dead process left on one golden; the
// caller holds its lock.
func (m *Manager) recoverGolden(ctx context.Context, id string) ([]Finding, error) {
	var g goldenRecord
	var j cloneJournal
	var hasG, hasJ bool
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) {
		if hasG, err = tx.Get(bGoldens, id, &g); err != nil {
			return err
		}
		hasJ, err = tx.Get(bCloneJournal, id, &j)
		return err
	}); err != nil {
		return nil, err
	}
	var out []Finding
	if hasJ {
		log.Warn().Str("golden", g.Name).Int("images", len(j.Paths)).Msg("undoing a clone that was interrupted")
		if err := m.removeImages(ctx, j.Paths, j.Pools); err != nil {
			return out, err
		}
		if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.Delete(bCloneJournal, id) }); err != nil {
			return out, err
		}
		out = append(out, Finding{Kind: "interrupted-operation", Target: goldenTarget(g).String(), Detail: "a clone was interrupted: its half-made images were removed", Repaired: true})
	}
	if hasG && g.State != stateReady {
		what := "creation"
		if g.State == stateDeleting {
			what = "delete"
		}
		log.Warn().Str("golden", g.Name).Str("state", g.State).Msg("finishing an interrupted golden image " + what)
		if err := m.dropGolden(ctx, g); err != nil {
			return out, err
		}
		out = append(out, Finding{Kind: "interrupted-operation", Target: goldenTarget(g).String(), Detail: "the " + what + " of a golden image was interrupted: its images and record were removed", Repaired: true})
	}
	return out, nil
}

// dropGolden removes a golden's images, then its records.
func (m *Manager) dropGolden(ctx context.Context, g goldenRecord) error {
	var paths, pools []string
	for _, d := range g.Disks {
		paths, pools = append(paths, d.Path), append(pools, d.Pool)
	}
	if err := m.removeImages(ctx, paths, pools); err != nil {
		return err
	}
	return m.st.Catalog.Update(func(tx *catalog.Tx) error {
		var id string
		if ok, err := tx.Get(bGoldenNames, g.Name, &id); err != nil {
			return err
		} else if ok && id == g.ID {
			if err := tx.Delete(bGoldenNames, g.Name); err != nil {
				return err
			}
		}
		var links []string
		if err := tx.Scan(bGoldenClones, g.ID+"/", func(k string, _ []byte) error { links = append(links, k); return nil }); err != nil {
			return err
		}
		for _, k := range links {
			if err := tx.Delete(bGoldenClones, k); err != nil {
				return err
			}
		}
		return deleteGolden(tx, g)
	})
}

// removeImages has each pool's driver remove golden images or half-made
// clones (pools[i] is paths[i]'s pool; records from before pools were
// journaled have none: their images are the dir driver's files).
func (m *Manager) removeImages(ctx context.Context, paths, pools []string) error {
	type where struct {
		drv  storage.Driver
		pool storage.Pool
	}
	var order []where
	byPool := map[where][]string{}
	for i, path := range paths {
		v := storage.Volume{Path: path}
		if i < len(pools) {
			v.Pool = pools[i]
		}
		drv, pool, err := m.driverOf(v)
		if err != nil {
			return err
		}
		w := where{drv, pool}
		if _, ok := byPool[w]; !ok {
			order = append(order, w)
		}
		byPool[w] = append(byPool[w], path)
	}
	for _, w := range order {
		if err := w.drv.RemoveImages(ctx, w.pool, byPool[w]); err != nil {
			return err
		}
	}
	return nil
}

// withGolden recovers abandoned operations, resolves a ready golden by
// name, takes its lock and runs fn with the record as it is under the
// lock. plan, if not nil, runs in the catalog read that finds the record
// under the lock (what fn needs from the catalog, without a read of its
// own).
func (m *Manager) withGolden(ctx context.Context, name string, plan func(*catalog.Tx, goldenRecord) error, fn func(g goldenRecord) error) error {
	if err := storage.ValidateName("golden image", name); err != nil {
		return err
	}
	// Goldens to recover and the one named, in one catalog read (a
	// recovery changes the catalog: then it is read again).
	var g goldenRecord
	var found error
	pending, err := m.pendingGoldens(func(tx *catalog.Tx) { g, found = goldenByName(tx, name) })
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		if _, err := m.recoverPending(ctx, pending); err != nil {
			return err
		}
		found = m.st.Catalog.View(func(tx *catalog.Tx) (err error) { g, err = goldenByName(tx, name); return err })
	}
	if found != nil {
		return found
	}
	l, err := lockTarget(m.st.Catalog.Home(), goldenTarget(g), m.lockTimeout)
	if err != nil {
		return err
	}
	defer l.unlock()
	locked := g.ID
	if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) {
		if g, err = goldenByName(tx, name); err != nil || g.ID != locked || plan == nil {
			return err
		}
		return plan(tx, g)
	}); err != nil {
		return err
	}
	if g.ID != locked {
		// Deleted and made again while strata waited: the lock held
		// is not the new one's.
		return storage.Errorf(storage.ErrBusy, "golden image %q changed while strata waited for its lock: try again", name)
	}
	return fn(g)
}

// GoldenOptions describe a new golden image.
type GoldenOptions struct {
	Name   string
	Source TargetRef // a guest, or a volume with Volume set
	Point  string    // a restore point of the source (number or name); "" for now
	Pool   string    // where the images go; default: each source volume's pool
}

// ParseSourceRef reads GUEST[@POINT] (or VOLUME[@POINT]).
func ParseSourceRef(s string) (name, point string, err error) {
	name, point, hasPoint := strings.Cut(s, "@")
	if name == "" {
		return "", "", storage.Errorf(storage.ErrInvalid, "invalid source %q: write NAME or NAME@POINT", s)
	}
	if hasPoint {
		if _, _, err := ParsePointRef(point); err != nil {
			return "", "", err
		}
	}
	return name, point, nil
}

// goldenSourceDisk is one disk to freeze: the volume now or one of its
// points, and the pool its golden image goes to.
type goldenSourceDisk struct {
	vol    storage.Volume
	point  *storage.PointRef // nil: the volume as it is now
	format storage.Format
	pool   storage.Pool
}

func (s goldenSourceDisk) source() storage.FreezeSource {
	return storage.FreezeSource{Volume: s.vol, Format: s.format, Point: s.point}
}

// CreateGolden freezes a guest's disks and definition (or one volume),
// now or at a restore point, as a read-only golden image. The source is
// only read: it keeps its own life, restore points and name.
func (m *Manager) CreateGolden(ctx context.Context, o GoldenOptions) (GoldenInfo, error) {
	if err := storage.ValidateName("golden image", o.Name); err != nil {
		return GoldenInfo{}, err
	}
	if o.Point != "" {
		if _, _, err := ParsePointRef(o.Point); err != nil {
			return GoldenInfo{}, err
		}
	}
	if _, err := m.recoverGoldens(ctx); err != nil {
		return GoldenInfo{}, err
	}
	g := goldenRecord{ID: storage.NewID(), Name: o.Name, Created: m.Now(), State: stateCreating}
	err := m.withTarget(ctx, o.Source, func(t Target) error {
		srcs, err := m.goldenSources(ctx, t, o.Point, &g)
		if err != nil {
			return err
		}
		if err := m.st.Catalog.View(func(tx *catalog.Tx) error { return planGolden(tx, o, srcs, &g) }); err != nil {
			return err
		}
		if err := m.placeGolden(srcs, &g); err != nil {
			return err
		}
		return m.freeze(ctx, g, srcs)
	})
	if err != nil {
		return GoldenInfo{}, err
	}
	return m.GoldenShow(ctx, o.Name)
}

// planGolden checks a golden o describes against the catalog (its name
// free, its pool there) and chooses the pool of each source disk's image
// (o's, else the source volume's, else the default pool), with g's
// lineage.
func planGolden(tx *catalog.Tx, o GoldenOptions, srcs []goldenSourceDisk, g *goldenRecord) error {
	if _, err := goldenByName(tx, o.Name); err == nil {
		return storage.Errorf(storage.ErrExists, "golden image %q already exists: a golden never changes; freeze a new one (e.g. %s-v2) or delete it first", o.Name, o.Name)
	}
	pools := map[string]storage.Pool{}
	all, err := tx.Pools()
	if err != nil {
		return err
	}
	for _, p := range all {
		pools[p.Name] = p
	}
	if o.Pool != "" {
		if _, err := tx.Pool(o.Pool); err != nil {
			return err
		}
	}
	g.FromID, g.FromName = lineage(tx, srcs)
	for i, s := range srcs {
		pool := o.Pool
		if pool == "" {
			pool = s.vol.Pool
		}
		if pool == "" {
			pool = catalog.DefaultPool
		}
		srcs[i].pool = pools[pool]
	}
	return nil
}

// placeGolden asks each pool's driver where g's image of each source
// disk goes (under a new ID), the pool's directory made first.
func (m *Manager) placeGolden(srcs []goldenSourceDisk, g *goldenRecord) error {
	for _, s := range srcs {
		p := s.pool
		drv, err := m.st.Driver(p)
		if err != nil {
			return err
		}
		if err := storage.MkdirPassable(p.Path); err != nil {
			return storage.Errorf(storage.ErrPrecondition, "pool %q: cannot create its directory %q: %w", p.Name, p.Path, err)
		}
		g.Disks = append(g.Disks, GoldenDisk{Volume: s.vol.Name, VolumeID: s.vol.ID, SourcePath: s.vol.Path, Format: s.format, Pool: p.Name,
			Path: drv.VolumePath(p, storage.NewID(), s.format)})
	}
	return nil
}

// goldenSources resolves what to freeze, and fills in g's kind, source
// and definition. The caller holds t's lock.
func (m *Manager) goldenSources(ctx context.Context, t Target, pointRef string, g *goldenRecord) ([]goldenSourceDisk, error) {
	g.Kind = string(t.Kind())
	g.Source = GoldenSource{Kind: string(t.Kind()), Name: t.Name, ID: t.Key.ID()}
	var srcs []goldenSourceDisk
	if pointRef == "" {
		var vols []storage.Volume
		var guest *storage.Guest
		if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { vols, guest, err = volumesOf(tx, t); return err }); err != nil {
			return nil, err
		}
		if guest != nil {
			g.Definition = guest.Definition
		}
		// A disk a guest is writing would be frozen torn.
		if err := m.checkNotInUse(ctx, vols); err != nil {
			return nil, err
		}
		for _, v := range vols {
			srcs = append(srcs, goldenSourceDisk{vol: v, format: v.Format})
		}
	} else {
		p, err := m.point(t, pointRef)
		if err != nil {
			return nil, err
		}
		id := p.ID
		g.Source.Point, g.Source.PointName = &id, p.Name
		if p.Guest != nil {
			g.Definition = p.Guest.Definition
		}
		for _, d := range p.Disks {
			var v storage.Volume
			if err := m.st.Catalog.View(func(tx *catalog.Tx) (err error) { v, err = tx.VolumeByID(d.VolumeID); return err }); err != nil {
				return nil, storage.Errorf(storage.ErrPrecondition, "restore point %d of %s includes volume %q, which no longer exists", p.ID, t, d.Volume)
			}
			v.Name = d.Volume // the name the point's definition uses
			ref := d.PointRef
			srcs = append(srcs, goldenSourceDisk{vol: v, point: &ref, format: d.Format})
		}
	}
	for _, s := range srcs {
		if s.format != storage.FormatRaw && s.format != storage.FormatQcow2 {
			return nil, storage.Errorf(storage.ErrNotSupported, "volume %q is %s: golden images hold raw or qcow2 disks only", s.vol.Name, s.format)
		}
		if err := image.VerifyImage(s.vol); err != nil { // qemu-img convert follows links
			return nil, err
		}
	}
	return srcs, nil
}

// lineage is the golden the source's disks were cloned from, if any.
func lineage(tx *catalog.Tx, srcs []goldenSourceDisk) (id, name string) {
	want := map[string]bool{}
	for _, s := range srcs {
		want[s.vol.ID] = true
	}
	// Lineage is information only (golden show's "from"): a link record
	// that cannot be read leaves it unknown, never the golden unmade.
	err := tx.Scan(bGoldenClones, "", func(_ string, raw []byte) error {
		var l cloneLink
		if json.Unmarshal(raw, &l) == nil && want[l.VolumeID] {
			id = l.Golden
			var g goldenRecord
			if ok, _ := tx.Get(bGoldens, id, &g); ok {
				name = g.Name
			}
			return catalog.ErrStop
		}
		return nil
	})
	if err != nil {
		log.Warn().Err(err).Msg("the golden image's lineage (the golden its source was cloned from) is unknown")
	}
	return id, name
}

// freeze records g as being created (once the copies are known to fit:
// checkFreezeSpace), has each pool's driver copy its source disk into
// its image (freezeDisks), and marks g ready. On failure it undoes the
// golden (undoGolden).
func (m *Manager) freeze(ctx context.Context, g goldenRecord, srcs []goldenSourceDisk) error {
	l, err := lockTarget(m.st.Catalog.Home(), goldenTarget(g), m.lockTimeout)
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := m.checkFreezeSpace(ctx, g, srcs); err != nil {
		return err
	}
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return recordGolden(tx, g) }); err != nil {
		return err
	}
	crashpoint("golden:recorded")
	if err := m.freezeDisks(ctx, &g, srcs); err != nil {
		return m.undoGolden(ctx, g, err)
	}
	g.State = stateReady
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return putGolden(tx, g) }); err != nil {
		return m.undoGolden(ctx, g, err)
	}
	log.Debug().Str("golden", g.Name).Str("source", g.Source.Kind+":"+g.Source.Name).Int("disks", len(g.Disks)).Msg("golden image created")
	return nil
}

// checkFreezeSpace refuses a golden whose copies do not all fit in their
// pools at once: checked before anything is written, not disk by disk.
func (m *Manager) checkFreezeSpace(ctx context.Context, g goldenRecord, srcs []goldenSourceDisk) error {
	need := map[string]int64{}
	var order []storage.Pool
	for _, s := range srcs {
		drv, err := m.st.Driver(s.pool)
		if err != nil {
			return err
		}
		n, err := drv.FreezeCost(ctx, s.source(), s.pool)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		if _, ok := need[s.pool.Name]; !ok {
			order = append(order, s.pool)
		}
		need[s.pool.Name] += n
	}
	for _, p := range order {
		if err := m.spaceFor(ctx, p, need[p.Name], func(free int64) error {
			return storage.Errorf(storage.ErrPrecondition, "not enough space for golden image %q: its disks hold %s and %q has %s free; free space, or put the golden in another pool (--pool)", g.Name, storage.FormatSize(need[p.Name]), p.Path, storage.FormatSize(free))
		}); err != nil {
			return err
		}
	}
	return nil
}

// recordGolden records g as being created, under a name no golden has:
// the name index, not only ready goldens, since another process may be
// freezing a golden of this name right now.
func recordGolden(tx *catalog.Tx, g goldenRecord) error {
	var other string
	if taken, err := tx.Get(bGoldenNames, g.Name, &other); err != nil {
		return err
	} else if taken {
		return storage.Errorf(storage.ErrExists, "golden image %q already exists (or is being created): choose another name", g.Name)
	}
	if err := tx.Put(bGoldenNames, g.Name, g.ID); err != nil {
		return err
	}
	return putGolden(tx, g)
}

// freezeDisks copies every source disk into g's image of it, noting
// each image's sizes in g.
func (m *Manager) freezeDisks(ctx context.Context, g *goldenRecord, srcs []goldenSourceDisk) error {
	for i, s := range srcs {
		d := &g.Disks[i]
		drv, err := m.st.Driver(s.pool)
		if err != nil {
			return err
		}
		if d.VirtualSize, d.Bytes, err = drv.Freeze(ctx, s.pool, s.source(), storage.Image{Path: d.Path, Format: d.Format}, m.Progress); err != nil {
			return fmt.Errorf("golden image %q, volume %q: %w", g.Name, s.vol.Name, err)
		}
		crashpoint(fmt.Sprintf("golden:disk-%d", i+1))
	}
	return nil
}

// undoGolden removes a golden that failed half-made, and returns err, the
// failure. What it cannot undo is left to the next golden command or
// strata doctor --repair (the record stays, not ready), and logged.
func (m *Manager) undoGolden(ctx context.Context, g goldenRecord, err error) error {
	if uerr := m.dropGolden(context.WithoutCancel(ctx), g); uerr != nil {
		log.Error().Err(uerr).Msg("could not undo the partial golden image; the next golden command or strata doctor --repair will")
	}
	return err
}

// GoldenList lists every golden image.
func (m *Manager) GoldenList(ctx context.Context) ([]GoldenInfo, error) {
	if _, err := m.recoverGoldens(ctx); err != nil {
		return nil, err
	}
	out := []GoldenInfo{}
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		gs, err := goldens(tx)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if g.State != stateReady {
				continue
			}
			info, err := goldenInfo(tx, g, false)
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// GoldenShow returns one golden image with its clones.
func (m *Manager) GoldenShow(ctx context.Context, name string) (GoldenInfo, error) {
	if _, err := m.recoverGoldens(ctx); err != nil {
		return GoldenInfo{}, err
	}
	var info GoldenInfo
	err := m.st.Catalog.View(func(tx *catalog.Tx) error {
		g, err := goldenByName(tx, name)
		if err != nil {
			return err
		}
		info, err = goldenInfo(tx, g, true)
		return err
	})
	return info, err
}

func goldenInfo(tx *catalog.Tx, g goldenRecord, withClones bool) (GoldenInfo, error) {
	info := GoldenInfo{ID: g.ID, Name: g.Name, Created: g.Created, Kind: g.Kind, Source: g.Source, Disks: g.Disks}
	for i, d := range info.Disks {
		if st, err := image.InspectAs(d.Path, d.Format); err == nil {
			info.Disks[i].Bytes = st.AllocatedBytes
		}
		info.Bytes += info.Disks[i].Bytes
	}
	if g.FromID != "" {
		from := g.FromName
		var parent goldenRecord
		if ok, _ := tx.Get(bGoldens, g.FromID, &parent); ok {
			from = parent.Name
		}
		info.From = &from
	}
	clones, err := clonesOf(tx, g)
	if err != nil {
		return info, err
	}
	info.Clones = len(clones)
	for _, c := range clones {
		if c.linked() {
			info.LinkedClones++
		}
	}
	if withClones {
		info.CloneList = clones
		if info.CloneList == nil {
			info.CloneList = []CloneInfo{}
		}
	}
	return info, nil
}

// clonesOf lists the existing clones of g, one per guest (or volume for a
// volume golden), with each disk's current dependency on g.
func clonesOf(tx *catalog.Tx, g goldenRecord) ([]CloneInfo, error) {
	paths := map[string]bool{}
	for _, d := range g.Disks {
		paths[storage.RealPath(d.Path)] = true
	}
	var out []CloneInfo
	index := map[catalog.TargetKey]int{}
	err := tx.Scan(bGoldenClones, g.ID+"/", func(_ string, raw []byte) error {
		var l cloneLink
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		v, err := tx.VolumeByID(l.VolumeID)
		if err != nil {
			return nil // deleted since
		}
		key, name, kind := catalog.VolumeKey(v.ID), v.Name, GoldenVolume
		var gu storage.Guest
		if l.GuestID != "" {
			if gu, err = tx.GuestByID(l.GuestID); err == nil {
				key, name, kind = catalog.GuestKey(gu.ID), gu.Name, GoldenGuest
			} // else deleted since: its volume is listed as a volume clone
		}
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, CloneInfo{Name: name, Kind: kind, Golden: g.Name, MACs: []string{}, Disks: []CloneDisk{}})
		}
		if !ok && kind == GoldenGuest {
			out[i].UUID, out[i].MACs = identity(gu.Definition)
		}
		out[i].Disks = append(out[i].Disks, cloneDiskOf(v, l.Method, paths))
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func cloneDiskOf(v storage.Volume, method string, goldenPaths map[string]bool) CloneDisk {
	d := CloneDisk{Volume: v.Name, Path: v.Path, Format: v.Format, Method: method}
	if v.Backing != "" {
		b := v.Backing
		d.Backing = &b
		d.Linked = goldenPaths[storage.RealPath(v.Backing)]
	}
	return d
}

// dependants lists the clones (guests, or volumes of a volume golden)
// that still read from g's images, each with its linked volumes. A volume
// whose record names a golden image as backing but whose image no longer
// has it (a flatten that died before recording) does not count.
func (m *Manager) dependants(ctx context.Context, tx *catalog.Tx, g goldenRecord) ([]string, error) {
	paths := map[string]bool{}
	for _, d := range g.Disks {
		paths[storage.RealPath(d.Path)] = true
	}
	vols, err := tx.Volumes()
	if err != nil {
		return nil, err
	}
	var order []string
	linked := map[string][]string{}
	for _, v := range vols {
		if v.Backing == "" || !paths[storage.RealPath(v.Backing)] {
			continue
		}
		if drv, pool, err := m.st.VolumeDriverTx(tx, v); err == nil {
			if now, err := drv.Backing(ctx, pool, v); err == nil && storage.RealPath(now) != storage.RealPath(v.Backing) {
				continue
			}
		}
		what := fmt.Sprintf("volume %q", v.Name)
		guests, err := tx.GuestsUsing(v.ID)
		if err != nil {
			return nil, err
		}
		if len(guests) > 0 {
			what = fmt.Sprintf("guest %q", guests[0])
		}
		if _, ok := linked[what]; !ok {
			order = append(order, what)
		}
		linked[what] = append(linked[what], v.Name)
	}
	sort.Strings(order)
	out := make([]string, len(order))
	for i, what := range order {
		out[i] = what
		if strings.HasPrefix(what, "guest") {
			out[i] += " (" + strings.Join(linked[what], ", ") + ")"
		}
	}
	return out, nil
}

// DeleteGolden removes a golden image and its images; refused while
// linked clones depend on it (the error lists them).
func (m *Manager) DeleteGolden(ctx context.Context, name string) error {
	return m.withGolden(ctx, name, nil, func(g goldenRecord) error {
		err := m.st.Catalog.Update(func(tx *catalog.Tx) error {
			deps, err := m.dependants(ctx, tx, g)
			if err != nil {
				return err
			}
			if len(deps) > 0 {
				return storage.Errorf(storage.ErrInUse, "golden image %q has %d linked clone(s) depending on it: %s; flatten them ('strata guest flatten', 'strata volume flatten') or delete them first",
					g.Name, len(deps), strings.Join(deps, ", "))
			}
			g.State = stateDeleting
			return putGolden(tx, g)
		})
		if err != nil {
			return err
		}
		crashpoint("golden-delete:marked")
		if err := m.dropGolden(ctx, g); err != nil {
			return err
		}
		log.Debug().Str("golden", g.Name).Msg("golden image deleted")
		return nil
	})
}
