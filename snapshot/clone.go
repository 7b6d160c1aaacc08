package snapshot

// Clones.
//
// A clone is a new guest (or volume) made from a golden image. A linked
// clone's disks are qcow2 overlays whose backing file is the golden's
// image (absolute path, backing format recorded with -F): O(1) whatever
// the golden's size, and the golden cannot be deleted while it is linked.
// A full clone (--full) is an independent copy: FICLONE where the
// filesystem shares extents (O(1), no chain), else a sparse copy. Every
// clone gets a new name, a new UUID and a new MAC on every NIC; its disks
// are volumes like any other, with their own restore points.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/registry"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/image"
)

// CloneOptions describe new clones of a golden image.
type CloneOptions struct {
	Golden string
	// Name is the new guest's (or volume's) name; with Count, the prefix
	// of Name-1 ... Name-Count.
	Name  string
	Count int
	Full  bool
	Pool  string // where the clones' disks go; default: the golden's pool
}

// CloneInfo is a clone as made and as listed by golden show.
type CloneInfo struct {
	Name   string      `json:"name"`
	Kind   string      `json:"kind"` // guest or volume
	Golden string      `json:"golden"`
	UUID   string      `json:"uuid,omitempty"`
	MACs   []string    `json:"macs"`
	Disks  []CloneDisk `json:"disks"`
}

// CloneDisk is one disk of a clone.
type CloneDisk struct {
	Volume  string         `json:"volume"`
	Path    string         `json:"path"`
	Format  storage.Format `json:"format"`
	Backing *string        `json:"backing"`
	// Linked: the disk still reads from the golden's image.
	Linked bool   `json:"linked"`
	Method string `json:"method"` // linked, reflink or copy (as made)
}

// CloneNames returns the names of the clones o makes.
func (o CloneOptions) CloneNames() []string {
	if o.Count == 0 {
		return []string{o.Name}
	}
	names := make([]string, o.Count)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", o.Name, i+1)
	}
	return names
}

// cloneDiskName is the volume name of disk k (0-based) of a guest clone.
func cloneDiskName(guest string, k int) string { return fmt.Sprintf("%s-disk%d", guest, k+1) }

// clonePlan is one clone to make.
type clonePlan struct {
	info  CloneInfo
	guest *storage.Guest
	vols  []storage.Volume
	plans []storage.ClonePlan // per disk, as the pool's driver chose
	links []cloneLink
	// drivers and pools are, per disk, the pool the clone's volume goes
	// to and its driver, as planned (the catalog is not read again).
	drivers []storage.Driver
	pools   []storage.Pool
}

// Clone makes new guests (or volumes) from a golden image. It is all or
// nothing: every image is journaled before the first is made, and every
// guest and volume is recorded in one final transaction; on failure or
// after a crash, nothing half-made is ever listed.
func (m *Manager) Clone(ctx context.Context, o CloneOptions) ([]CloneInfo, error) {
	if o.Count < 0 || o.Count > 1000 {
		return nil, storage.Errorf(storage.ErrInvalid, "invalid --count %d: give 1 to 1000", o.Count)
	}
	var out []CloneInfo
	names := o.CloneNames()
	var dests []storage.Pool
	plan := func(tx *catalog.Tx, g goldenRecord) (err error) {
		for _, n := range names {
			if err := storage.ValidateName(g.Kind, n); err != nil {
				return err
			}
			if g.Kind == GoldenGuest {
				if err := storage.ValidateName("volume", cloneDiskName(n, len(g.Disks)-1)); err != nil {
					return storage.Errorf(storage.ErrInvalid, "guest name %q is too long for its disks' names (%s): choose a shorter one", n, cloneDiskName(n, len(g.Disks)-1))
				}
			}
		}
		dests, err = clonePools(tx, g, o, names)
		return err
	}
	err := m.withGolden(ctx, o.Golden, plan, func(g goldenRecord) error {
		plans, err := m.planClones(ctx, g, o, names, dests)
		if err != nil {
			return err
		}
		if quickClone(plans) {
			out, err = m.makeQuickClone(ctx, g, plans)
		} else {
			out, err = m.makeClones(ctx, g, plans)
		}
		return err
	})
	return out, err
}

// planClones plans the clones named names of g, whose disks go to dests
// (per disk, as clonePools found them): each disk's method as its pool's
// driver chooses it, the space full copies need (checkCloneSpace), then
// every clone's records (layoutClones).
func (m *Manager) planClones(ctx context.Context, g goldenRecord, o CloneOptions, names []string, dests []storage.Pool) ([]clonePlan, error) {
	drivers := make([]storage.Driver, len(g.Disks))
	methods := make([]storage.ClonePlan, len(g.Disks))
	for k, d := range g.Disks {
		drv, err := m.st.Driver(dests[k])
		if err != nil {
			return nil, err
		}
		drivers[k] = drv
		if err := storage.MkdirPassable(dests[k].Path); err != nil {
			return nil, storage.Errorf(storage.ErrPrecondition, "pool %q: cannot create its directory %q: %w", dests[k].Name, dests[k].Path, err)
		}
		if methods[k], err = drv.PlanClone(ctx, storage.Image{Path: d.Path, Format: d.Format}, dests[k], o.Full); err != nil {
			return nil, err
		}
	}
	if err := m.checkCloneSpace(ctx, g, len(names), dests, methods); err != nil {
		return nil, err
	}
	volumePath := func(k int, id string, f storage.Format) string { return drivers[k].VolumePath(dests[k], id, f) }
	plans := layoutClones(g, names, dests, methods, m.Now(), volumePath)
	for i := range plans {
		plans[i].drivers, plans[i].pools = drivers, dests
	}
	return plans, nil
}

// clonePools refuses names already taken and returns, per disk of g, the
// pool its clones' disks go to: o's, else the golden image's own.
func clonePools(tx *catalog.Tx, g goldenRecord, o CloneOptions, names []string) ([]storage.Pool, error) {
	if err := namesFree(tx, g, names); err != nil {
		return nil, err
	}
	pools := make([]storage.Pool, len(g.Disks))
	for k, d := range g.Disks {
		name := o.Pool
		if name == "" {
			name = d.Pool
		}
		p, err := tx.Pool(name)
		if err != nil {
			return nil, err
		}
		pools[k] = p
	}
	return pools, nil
}

// checkCloneSpace refuses count clones whose full copies do not fit in
// their pools (all of them at once, before anything is written).
func (m *Manager) checkCloneSpace(ctx context.Context, g goldenRecord, count int, dests []storage.Pool, methods []storage.ClonePlan) error {
	need := map[string]int64{} // bytes full copies need, per pool
	var order []storage.Pool
	for k, pl := range methods {
		if pl.Need <= 0 {
			continue
		}
		if _, ok := need[dests[k].Name]; !ok {
			order = append(order, dests[k])
		}
		need[dests[k].Name] += pl.Need * int64(count)
	}
	for _, p := range order {
		if err := m.spaceFor(ctx, p, need[p.Name], func(free int64) error {
			return storage.Errorf(storage.ErrPrecondition, "not enough space for %d full clone(s) of golden image %q: they need %s and %q has %s free; make linked clones (drop --full), use a reflink pool (XFS reflink=1, btrfs) or free space",
				count, g.Name, storage.FormatSize(need[p.Name]), p.Path, storage.FormatSize(free))
		}); err != nil {
			return err
		}
	}
	return nil
}

// layoutClones makes the records of the clones named names of g: for
// each, its guest (for a guest golden), one new volume per disk of g in
// dests[k] made by methods[k] (at volumePath), and its links to g. Every
// guest and volume gets a new ID.
func layoutClones(g goldenRecord, names []string, dests []storage.Pool, methods []storage.ClonePlan, now time.Time, volumePath func(k int, id string, f storage.Format) string) []clonePlan {
	var plans []clonePlan
	for _, n := range names {
		pl := clonePlan{info: CloneInfo{Name: n, Kind: g.Kind, Golden: g.Name, MACs: []string{}}}
		if g.Kind == GoldenGuest {
			pl.guest = &storage.Guest{ID: storage.NewID(), Name: n, Created: now}
		}
		for k := range g.Disks {
			vname := n
			if g.Kind == GoldenGuest {
				vname = cloneDiskName(n, k)
			}
			format := methods[k].Format
			v := storage.Volume{ID: storage.NewID(), Name: vname, Pool: dests[k].Name, Format: format, Created: now}
			v.Path = volumePath(k, v.ID, format)
			v.Backing = methods[k].Backing
			pl.vols = append(pl.vols, v)
			pl.plans = append(pl.plans, methods[k])
			l := cloneLink{Golden: g.ID, VolumeID: v.ID, Disk: k, Method: methods[k].Method}
			if pl.guest != nil {
				pl.guest.Disks = append(pl.guest.Disks, v.ID)
				l.GuestID = pl.guest.ID
			}
			pl.links = append(pl.links, l)
		}
		plans = append(plans, pl)
	}
	return plans
}

// namesFree refuses names already taken, by a guest or a volume.
func namesFree(tx *catalog.Tx, g goldenRecord, names []string) error {
	for _, n := range names {
		if g.Kind == GoldenGuest {
			if _, err := tx.Guest(n); err == nil {
				return storage.Errorf(storage.ErrExists, "guest %q already exists: choose another name or delete it first", n)
			}
			for k := range g.Disks {
				if _, err := tx.Volume(cloneDiskName(n, k)); err == nil {
					return storage.Errorf(storage.ErrExists, "volume %q already exists, and clone %q needs the name for its disk %d: choose another name", cloneDiskName(n, k), n, k+1)
				}
			}
		} else if _, err := tx.Volume(n); err == nil {
			return storage.Errorf(storage.ErrExists, "volume %q already exists: choose another name or delete it first", n)
		}
	}
	return nil
}

// makeClones journals every image the plans make, makes them, then
// records everything at once (recordClones); on failure it undoes the
// images and the journal (undoClones).
func (m *Manager) makeClones(ctx context.Context, g goldenRecord, plans []clonePlan) ([]CloneInfo, error) {
	j := cloneJournal{Op: "clone", Started: m.Now()}
	for _, pl := range plans {
		for _, v := range pl.vols {
			j.Paths, j.Pools = append(j.Paths, v.Path), append(j.Pools, v.Pool)
		}
	}
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.Put(bCloneJournal, g.ID, j) }); err != nil {
		return nil, err
	}
	crashpoint("clone:journaled")
	if err := m.makeCloneImages(ctx, g, plans); err != nil {
		return nil, m.undoClones(ctx, g, j, err)
	}
	if err := m.st.Catalog.Update(func(tx *catalog.Tx) error { return recordClones(tx, g, plans) }); err != nil {
		return nil, m.undoClones(ctx, g, j, err)
	}
	crashpoint("clone:recorded")
	return cloneInfos(g, plans), nil
}

// quickClone tells whether plans are one clone whose every image is a
// qcow2 overlay in a directory pool: made in milliseconds, so it is made
// inside the transaction that records it (makeQuickClone), as volume
// create makes a volume, and what a crash leaves behind is an orphan file
// that doctor finds (no journal is needed to find it).
func quickClone(plans []clonePlan) bool {
	if len(plans) != 1 {
		return false
	}
	for k, pl := range plans[0].plans {
		if !pl.Linked || plans[0].pools[k].Driver != dir.Name {
			return false
		}
	}
	return true
}

// makeQuickClone makes and records a quickClone in one transaction: one
// catalog commit instead of makeClones' two (journal, then records).
func (m *Manager) makeQuickClone(ctx context.Context, g goldenRecord, plans []clonePlan) ([]CloneInfo, error) {
	made, tried := false, false
	err := m.st.Catalog.Update(func(tx *catalog.Tx) error {
		if made { // a shared catalog runs a transaction again after a conflict
			return recordClones(tx, g, plans)
		}
		// The records (a guest's definition rewritten and checked) are
		// made while qemu-img makes the images; the commit waits for
		// both.
		recorded := make(chan error, 1)
		go func() { recorded <- recordClones(tx, g, plans) }()
		tried = true
		err := m.makeCloneImages(ctx, g, plans)
		rerr := <-recorded
		made = err == nil
		if err != nil {
			return err
		}
		return rerr
	})
	if err != nil && tried {
		// By the drivers and pools planned, as the images were made:
		// the catalog is not read again (it may be what failed, busy
		// past the lock timeout).
		pl := plans[0]
		for k, v := range pl.vols {
			if uerr := pl.drivers[k].RemoveImages(context.WithoutCancel(ctx), pl.pools[k], []string{v.Path}); uerr != nil {
				log.Error().Err(uerr).Str("path", v.Path).Msg("could not remove an image of a failed clone; strata doctor --repair will")
			}
		}
	}
	if err != nil {
		return nil, err
	}
	crashpoint("clone:recorded")
	return cloneInfos(g, plans), nil
}

// cloneInfos is what Clone says of the clones of plans, made and recorded.
func cloneInfos(g goldenRecord, plans []clonePlan) []CloneInfo {
	paths := map[string]bool{}
	for _, d := range g.Disks {
		paths[storage.RealPath(d.Path)] = true
	}
	var out []CloneInfo
	for _, pl := range plans {
		for k, v := range pl.vols {
			pl.info.Disks = append(pl.info.Disks, cloneDiskOf(v, pl.links[k].Method, paths))
		}
		out = append(out, pl.info)
		log.Debug().Str("clone", pl.info.Name).Str("golden", g.Name).Str("kind", g.Kind).Msg("clone created")
	}
	return out
}

// undoClones removes what a failed clone made and closes its journal,
// and returns err, the failure. What it cannot undo is left to the next
// command on the golden image or strata doctor --repair (the journal
// stays), and logged.
func (m *Manager) undoClones(ctx context.Context, g goldenRecord, j cloneJournal, err error) error {
	ctx = context.WithoutCancel(ctx)
	uerr := m.removeImages(ctx, j.Paths, j.Pools)
	if uerr == nil {
		uerr = m.st.Catalog.Update(func(tx *catalog.Tx) error { return tx.Delete(bCloneJournal, g.ID) })
	}
	if uerr != nil {
		log.Error().Err(uerr).Msg("could not undo the partial clones; the next command on the golden image or strata doctor --repair will")
	}
	return err
}

// makeCloneImages has each pool's driver make every clone's images, then
// syncs the directories they are in.
func (m *Manager) makeCloneImages(ctx context.Context, g goldenRecord, plans []clonePlan) error {
	n := 0
	dirs := map[string]bool{}
	for i := range plans {
		// Only the fields planned for the images: makeQuickClone fills
		// the others (a guest's UUID and MACs) at the same time.
		pl := &plans[i]
		for k, v := range pl.vols {
			d := g.Disks[k]
			if err := pl.drivers[k].Clone(ctx, pl.pools[k], storage.Image{Path: d.Path, Format: d.Format}, v, pl.plans[k], m.Progress); err != nil {
				return fmt.Errorf("clone %q of golden image %q, disk %d: %w", pl.info.Name, g.Name, k+1, err)
			}
			if filepath.IsAbs(v.Path) { // a file's directory (not an rbd: image)
				dirs[filepath.Dir(v.Path)] = true
			}
			n++
			crashpoint(fmt.Sprintf("clone:disk-%d", n))
		}
	}
	for d := range dirs {
		if err := image.SyncPath(d); err != nil {
			return err
		}
	}
	return nil
}

// recordClones records every clone of plans, its volumes, guest and
// links, and closes the clone journal: the names are checked again (free
// when planned, but the golden's lock does not keep them so), and each
// guest's definition is made (recordCloneGuest) with MACs no guest or
// golden has, nor any other clone of plans.
func recordClones(tx *catalog.Tx, g goldenRecord, plans []clonePlan) error {
	names := make([]string, len(plans))
	for i, pl := range plans {
		names[i] = pl.info.Name
	}
	if err := namesFree(tx, g, names); err != nil {
		return err
	}
	var inUse map[string]bool
	for i := range plans {
		pl := &plans[i]
		for _, v := range pl.vols {
			if err := tx.AddVolume(v); err != nil {
				return err
			}
		}
		if pl.guest != nil {
			if inUse == nil && definitionHasNICs(g.Definition) {
				var err error
				if inUse, err = registry.MACsInUse(tx, ""); err != nil {
					return err
				}
			}
			if err := recordCloneGuest(tx, g, pl, inUse); err != nil {
				return err
			}
		}
		for _, l := range pl.links {
			if err := tx.Put(bGoldenClones, g.ID+"/"+l.VolumeID, l); err != nil {
				return err
			}
		}
	}
	return tx.Delete(bCloneJournal, g.ID)
}

// recordCloneGuest makes the definition of clone pl from g's (new name,
// UUID and MACs, unique among inUse, to which they are added; disks on
// pl's volumes), checks it as a definition of its own, which also finds
// the volumes it names besides its disks (read-only ones) so that none
// can be deleted under the clone, and records the guest.
func recordCloneGuest(tx *catalog.Tx, g goldenRecord, pl *clonePlan, inUse map[string]bool) error {
	r := DefinitionRewrite{Name: pl.info.Name, Golden: g.Name, Volumes: map[string]RewriteDisk{}, Paths: map[string]RewriteDisk{}, InUse: inUse}
	for k, d := range g.Disks {
		nd := RewriteDisk{Volume: pl.vols[k].Name, Format: pl.vols[k].Format}
		r.Volumes[d.Volume], r.Paths[d.SourcePath] = nd, nd
	}
	def, uuid, macs, err := CloneDefinition(g.Definition, r)
	if err != nil {
		return fmt.Errorf("golden image %q: %w", g.Name, err)
	}
	def, _, uses, err := registry.Recheck(tx, *pl.guest, def)
	if err != nil {
		return fmt.Errorf("golden image %q, clone %q: %w", g.Name, pl.info.Name, err)
	}
	pl.guest.Definition, pl.guest.Uses, pl.info.UUID, pl.info.MACs = def, uses, uuid, macs
	return tx.PutGuest(*pl.guest)
}

// DefinitionRewrite says how a golden's definition becomes a clone's.
type DefinitionRewrite struct {
	Name string
	// Golden names the golden image, for the clone's install record
	// (hvm.Guest.MarkClone).
	Golden string
	// Volumes maps the golden's source volume names to the clone's
	// volumes; Paths maps the source images' paths (disks given by path)
	// to them.
	Volumes map[string]RewriteDisk
	Paths   map[string]RewriteDisk
	// InUse holds the MAC addresses already taken (any case); the new ones
	// are added. May be nil when the definition has no NICs.
	InUse map[string]bool
}

// RewriteDisk is the clone's volume that replaces a source disk.
type RewriteDisk struct {
	Volume string
	Format storage.Format // a linked clone of a raw disk is qcow2
}

// CloneDefinition makes a clone's definition from a golden's: the new
// name, a new UUID, a new MAC on every NIC (Xen's OUI, unique among
// InUse) and disks that reference the clone's volumes, in their format;
// everything else is kept. An empty golden definition (a guest that was
// only a name and disks) gives a definition with the name and UUID alone,
// so that every clone has an identity of its own.
func CloneDefinition(def string, r DefinitionRewrite) (yaml, uuid string, macs []string, err error) {
	g := &hvm.Guest{}
	if strings.TrimSpace(def) != "" {
		if g, err = hvm.Unmarshal("the golden image's definition", []byte(def)); err != nil {
			return "", "", nil, err
		}
	}
	g.Name = r.Name
	if g.UUID, err = hvm.NewUUID(); err != nil {
		return "", "", nil, err
	}
	for i := range g.Disks {
		d := &g.Disks[i]
		nd, ok := r.Volumes[d.Volume]
		if !ok || d.Volume == "" {
			if nd, ok = r.Paths[d.Path]; !ok || d.Path == "" {
				continue
			}
		}
		d.Volume, d.Path = nd.Volume, ""
		if d.Format != "" || nd.Format != storage.FormatRaw {
			d.Format = string(nd.Format)
		}
	}
	for i := range g.NICs {
		g.NICs[i].MAC = ""
	}
	g.MarkClone(r.Golden)
	if r.InUse == nil {
		r.InUse = map[string]bool{}
	}
	if err := g.PinMACs(r.InUse); err != nil {
		return "", "", nil, err
	}
	macs = []string{}
	for _, n := range g.NICs {
		macs = append(macs, n.MAC)
	}
	out, err := hvm.Marshal(g)
	if err != nil {
		return "", "", nil, err
	}
	return string(out), g.UUID, macs, nil
}

func definitionHasNICs(def string) bool {
	if strings.TrimSpace(def) == "" {
		return false
	}
	g, err := hvm.Unmarshal("definition", []byte(def))
	return err == nil && len(g.NICs) > 0
}

// identity reads a clone guest's UUID and MACs from its definition.
func identity(def string) (uuid string, macs []string) {
	macs = []string{}
	if strings.TrimSpace(def) == "" {
		return "", macs
	}
	g, err := hvm.Unmarshal("definition", []byte(def))
	if err != nil {
		return "", macs
	}
	for _, n := range g.NICs {
		macs = append(macs, n.MAC)
	}
	return g.UUID, macs
}

// linked reports whether any disk of the clone still reads from its golden.
func (c CloneInfo) linked() bool {
	for _, d := range c.Disks {
		if d.Linked {
			return true
		}
	}
	return false
}
