// Package registry keeps HVM guest definitions in the catalog: it turns
// what an admin gives (flags, a YAML file, an xl/xm config, libvirt XML)
// into a validated hvm.Guest with pinned MACs, stores it as the guest's
// definition, edits it, and renders it with volume and media names
// resolved to host paths.
//
// Invariants: a stored definition has passed FillDefaults and Validate;
// every NIC has a MAC, lower case, unique across the catalog; a guest's
// UUID is no other guest's nor (unless frozen from it) a golden image's;
// no two guests have one image writable, however each gives it (volume,
// path or device, symlinks resolved); every volume and medium it names
// exists; the guest record's Disks are the volume IDs of its writable
// disks (what restore points capture). The install record (lint's HAL
// and activation baseline) is taken when Windows is installed — by
// lifecycle's guest install, or RecordInstall for an install outside
// strata — never when the guest is defined.
package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/store"
)

// MediaUsers lists the guests whose definitions use the medium called
// name, by name or by its file's path (media.Manager.Users: an iso cannot
// be deleted while a guest uses it).
func MediaUsers(tx *catalog.Tx, name string) ([]string, error) {
	path := ""
	if p, err := media.Resolve(tx, name); err == nil {
		path = storage.RealPath(p)
	}
	return guestsWhere(tx, func(g *hvm.Guest) bool {
		for _, d := range g.Disks {
			if d.Media == name {
				return true
			}
			if kind, src := d.Source(); path != "" && kind == hvm.SourcePath && storage.RealPath(src) == path {
				return true
			}
		}
		return false
	})
}

// Registry is the guest definitions of a state home.
type Registry struct{ st *store.Store }

// New returns the registry of a store.
func New(st *store.Store) *Registry { return &Registry{st: st} }

// decode reads a stored guest's definition. A guest recorded as only a
// name and disks (before it had a definition) gets a minimal one.
func decode(tx *catalog.Tx, rec storage.Guest) (*hvm.Guest, error) {
	if rec.Definition != "" {
		g, err := hvm.Unmarshal("guest "+rec.Name, []byte(rec.Definition))
		if err != nil {
			return nil, fmt.Errorf("stored definition of guest %q: %w", rec.Name, err)
		}
		return g, nil
	}
	g := &hvm.Guest{APIVersion: hvm.APIVersion, Name: rec.Name}
	for i, id := range rec.Disks {
		v, err := tx.VolumeByID(id)
		if err != nil {
			continue
		}
		g.Disks = append(g.Disks, hvm.Disk{Volume: v.Name, Vdev: DiskVdev(i, false), Format: string(v.Format)})
	}
	return g, nil
}

func guestsWhere(tx *catalog.Tx, match func(*hvm.Guest) bool) ([]string, error) {
	recs, err := tx.Guests()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rec := range recs {
		g, err := decode(tx, rec)
		if err != nil {
			return nil, err
		}
		if match(g) {
			out = append(out, rec.Name)
		}
	}
	return out, nil
}

// DiskVdev names a guest's n-th hard disk (from 0): hda, hdb, hdc, hdd,
// then sda, sdb, ...; with a CD-ROM drive, hdc is the drive's (the classic
// convention) and the disks skip it.
func DiskVdev(n int, withCDROM bool) string {
	ide := []string{"hda", "hdb", "hdc", "hdd"}
	if withCDROM {
		ide = []string{"hda", "hdb", "hdd"}
	}
	if n < len(ide) {
		return ide[n]
	}
	return fmt.Sprintf("sd%c", 'a'+n-len(ide))
}

// Recheck checks def, a definition of guest g stored elsewhere (in a
// restore point, or made for a clone), as define and set check a new one,
// and returns it as it may be recorded now, with the writable disks and
// all volumes it names: under g's name (a rollback does not undo a
// rename), refused if a volume or medium it names is gone, a MAC it gives
// has been taken by another guest, or a disk it writes is another guest's.
func Recheck(tx *catalog.Tx, g storage.Guest, def string) (out string, ids, uses []string, err error) {
	d, err := hvm.Unmarshal("guest "+g.Name, []byte(def))
	if err != nil {
		return "", nil, nil, err
	}
	d.Name = g.Name
	if ids, uses, err = prepare(tx, d, g.Name); err != nil {
		return "", nil, nil, err
	}
	raw, err := hvm.Marshal(d)
	return string(raw), ids, uses, err
}

// MACsInUse is the one rule for which MAC addresses are taken: every MAC
// in the definition of every guest but skip (a guest's own name when it is
// redefined; "" for none), and of every golden image not frozen from skip
// (a clone gets fresh MACs, and no other guest may reuse a golden's while
// it keeps them; its source guest keeps its own). A stored definition that
// cannot be read is an error, not a guest without NICs: a MAC could
// otherwise be given twice. Keys are lower case.
func MACsInUse(tx *catalog.Tx, skip string) (map[string]bool, error) {
	inUse := map[string]bool{}
	add := func(g *hvm.Guest) {
		for _, n := range g.NICs {
			if n.MAC != "" {
				inUse[strings.ToLower(n.MAC)] = true
			}
		}
	}
	recs, err := tx.Guests()
	if err != nil {
		return nil, err
	}
	skipID := ""
	for _, rec := range recs {
		if rec.Name == skip {
			skipID = rec.ID
			continue
		}
		g, err := decode(tx, rec)
		if err != nil {
			return nil, err
		}
		add(g)
	}
	err = tx.GoldenDefinitions(func(gd catalog.GoldenDefinition) error {
		if skipID != "" && gd.SourceKind == "guest" && gd.SourceID == skipID {
			return nil
		}
		g, err := hvm.Unmarshal("golden "+gd.Name, []byte(gd.Definition))
		if err != nil {
			return fmt.Errorf("stored definition of golden image %q: %w", gd.Name, err)
		}
		add(g)
		return nil
	})
	return inUse, err
}

// prepare completes and checks g inside a transaction: defaults, pinned
// unique MACs, the volumes and media it names, validation. It returns the
// volume IDs of the writable disks and of every volume it names.
func prepare(tx *catalog.Tx, g *hvm.Guest, previous string) (ids, uses []string, err error) {
	if err := storage.ValidateName("guest", g.Name); err != nil {
		return nil, nil, err
	}
	oldUUID := previousUUID(tx, previous)
	if err := g.FillDefaults(); err != nil {
		return nil, nil, err
	}
	if !sameUUID(g.UUID, oldUUID) {
		if err := checkUUID(tx, g, previous); err != nil {
			return nil, nil, err
		}
	}
	if err := pinMACs(tx, g, previous); err != nil {
		return nil, nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, nil, err
	}
	// MACs are stored lower-case, as Linux and libvirt print them, so
	// comparisons and the install record agree whatever case was typed.
	for i := range g.NICs {
		g.NICs[i].MAC = strings.ToLower(g.NICs[i].MAC)
	}
	if in := g.Install; in != nil {
		in.MAC = strings.ToLower(in.MAC)
	}
	if err := checkWriters(tx, g, previous); err != nil {
		return nil, nil, err
	}
	// No install record here: Windows fixes its HAL when it is
	// installed, not when the guest is defined (guest install and guest
	// installed take the record).
	return resolveDisks(tx, g, previous)
}

// previousUUID is the UUID of the definition stored as previous, or ""
// when there is none or it cannot be read. That is safe: with "" the new
// UUID is checked against every other guest's (checkUUID), the stricter
// path, and an unreadable definition is being replaced anyway.
func previousUUID(tx *catalog.Tx, previous string) string {
	if previous == "" {
		return ""
	}
	rec, err := tx.Guest(previous)
	if err == nil && rec.Definition != "" {
		var old *hvm.Guest
		if old, err = decode(tx, rec); err == nil {
			return old.UUID
		}
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		log.Debug().Err(err).Str("guest", previous).Msg("previous definition unreadable: the new UUID is checked against every guest")
	}
	return ""
}

// pinMACs refuses a MAC another guest or golden image uses and gives
// every NIC without one a fresh one.
func pinMACs(tx *catalog.Tx, g *hvm.Guest, previous string) error {
	inUse, err := MACsInUse(tx, previous)
	if err != nil {
		return err
	}
	for i, n := range g.NICs {
		if n.MAC != "" && inUse[strings.ToLower(n.MAC)] {
			return storage.Errorf(storage.ErrExists, "guest %q: nics[%d] MAC %s is already used by another guest or a golden image: give another or omit it to get a fresh one", g.Name, i, n.MAC)
		}
	}
	return g.PinMACs(inUse)
}

// resolveDisks checks the volumes and media g's disks name and sets each
// volume disk's format from the volume. It returns the IDs of the
// volumes g writes and of every volume it names.
func resolveDisks(tx *catalog.Tx, g *hvm.Guest, previous string) (ids, uses []string, err error) {
	seen := map[string]bool{}
	for i := range g.Disks {
		d := &g.Disks[i]
		switch kind, name := d.Source(); kind {
		case hvm.SourceVolume:
			v, err := tx.Volume(name)
			if err != nil {
				return nil, nil, fmt.Errorf("guest %q: disk %s: %w", g.Name, d.Vdev, err)
			}
			// The volume's format, detected from its content, is the
			// truth: a qcow2 image opened as raw would be corrupted.
			d.Format = string(v.Format)
			if v.Format == storage.FormatISO {
				d.Format = "raw"
			}
			if !slices.Contains(uses, v.ID) {
				uses = append(uses, v.ID)
			}
			if d.CDROM || d.ReadOnly() || seen[v.ID] {
				continue
			}
			if err := checkOneWriter(tx, g, v, previous); err != nil {
				return nil, nil, err
			}
			seen[v.ID] = true
			ids = append(ids, v.ID)
		case hvm.SourceMedia:
			if _, err := media.Resolve(tx, name); err != nil {
				return nil, nil, fmt.Errorf("guest %q: disk %s: %w", g.Name, d.Vdev, err)
			}
		}
	}
	return ids, uses, nil
}

// checkOneWriter refuses a writable disk on a volume another guest
// writes: two guests writing one disk corrupt it, and a rollback of one
// would overwrite the other's data (checkWriters checked the
// definitions; this the records restore points use).
func checkOneWriter(tx *catalog.Tx, g *hvm.Guest, v storage.Volume, previous string) error {
	writers, err := tx.GuestsWriting(v.ID)
	if err != nil {
		return err
	}
	for _, w := range writers {
		if w != previous {
			return storage.Errorf(storage.ErrInUse, "guest %q: volume %q is already a writable disk of guest %q: give it read-only (access: ro) or use another volume", g.Name, v.Name, w)
		}
	}
	return nil
}

// InstallRecordOf notes the hardware Windows sees when it is installed on
// this definition, and how the record was taken (hvm.InstallBy*); lint
// compares later changes with it.
func InstallRecordOf(g *hvm.Guest, by string) *hvm.Install {
	in := &hvm.Install{By: by, ACPI: hvm.Bool(g.EffectiveACPI()), APIC: hvm.Bool(g.EffectiveAPIC()), VCPUs: hvm.Int(g.EffectiveVCPUs()), Memory: g.Memory}
	if len(g.NICs) > 0 {
		in.MAC = g.NICs[0].MAC
	}
	for _, d := range g.Disks {
		if d.CDROM {
			in.CDROM = d.Vdev
			break
		}
	}
	return in
}

func store1(tx *catalog.Tx, rec storage.Guest, g *hvm.Guest, ids, uses []string) error {
	y, err := hvm.Marshal(g)
	if err != nil {
		return err
	}
	rec.Name, rec.Disks, rec.Uses, rec.Definition = g.Name, ids, uses, string(y)
	return tx.PutGuest(rec)
}

// Define records a new guest.
func (r *Registry) Define(ctx context.Context, g *hvm.Guest) (*hvm.Guest, []lint.Finding, error) {
	err := r.st.Catalog.Update(func(tx *catalog.Tx) error {
		if _, err := tx.Guest(g.Name); err == nil {
			return storage.Errorf(storage.ErrExists, "guest %q already exists: choose another name, or change it with 'strata guest set'", g.Name)
		}
		ids, uses, err := prepare(tx, g, "")
		if err != nil {
			return err
		}
		return store1(tx, storage.Guest{ID: storage.NewID(), Created: nowUTC()}, g, ids, uses)
	})
	if err != nil {
		return nil, nil, err
	}
	log.Debug().Str("guest", g.Name).Msg("guest defined")
	return g, warn(g), nil
}

// warn runs lint and logs what it finds (define, import and set do).
func warn(g *hvm.Guest) []lint.Finding {
	fs := lint.Check(g)
	for _, f := range fs {
		if f.Severity != lint.Info {
			log.Warn().Str("guest", g.Name).Str("id", f.ID).Str("fix", f.Fix).Msg(f.Message)
		}
	}
	return fs
}

// Get returns a guest's definition and record.
func (r *Registry) Get(ctx context.Context, name string) (*hvm.Guest, storage.Guest, error) {
	var g *hvm.Guest
	var rec storage.Guest
	err := r.st.Catalog.View(func(tx *catalog.Tx) (err error) {
		if rec, err = tx.Guest(name); err != nil {
			return err
		}
		g, err = decode(tx, rec)
		return err
	})
	return g, rec, err
}

// Update applies change to a stored definition and stores the result if
// it is valid. A new name must be free.
func (r *Registry) Update(ctx context.Context, name string, change func(g *hvm.Guest) error) (*hvm.Guest, []lint.Finding, error) {
	// A restore point operation on the guest holds its lock: a change in
	// its middle (its disks, say) would be lost to a rollback's record.
	unlock, id, err := r.st.LockGuest(name)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	var g *hvm.Guest
	err = r.st.Catalog.Update(func(tx *catalog.Tx) error {
		rec, err := tx.Guest(name)
		if err != nil {
			return err
		}
		if err := store.SameGuest(rec, id); err != nil {
			return err
		}
		if g, err = decode(tx, rec); err != nil {
			return err
		}
		if err := change(g); err != nil {
			return err
		}
		ids, uses, err := prepare(tx, g, name)
		if err != nil {
			return err
		}
		return store1(tx, rec, g, ids, uses)
	})
	if err != nil {
		return nil, nil, err
	}
	log.Debug().Str("guest", g.Name).Msg("guest changed")
	return g, warn(g), nil
}

// Lint checks a stored guest.
func (r *Registry) Lint(ctx context.Context, name string) ([]lint.Finding, error) {
	g, _, err := r.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return lint.Check(g), nil
}

// Delete forgets a guest, and with withDisks deletes its volumes too (all
// or nothing).
func (r *Registry) Delete(ctx context.Context, name string, withDisks bool) error {
	return r.DeleteThen(ctx, name, withDisks, nil)
}

// DeleteThen deletes as Delete does, running then once nothing strata
// checks can refuse the delete any more, right before it is committed
// (store.DeleteGuestThen).
func (r *Registry) DeleteThen(ctx context.Context, name string, withDisks bool, then func() error) error {
	g, _, err := r.Get(ctx, name)
	if err != nil {
		return err
	}
	var vols []string
	if withDisks {
		for _, d := range g.Disks {
			if d.Volume != "" && !slices.Contains(vols, d.Volume) {
				vols = append(vols, d.Volume)
			}
		}
	}
	return r.st.DeleteGuestThen(ctx, name, vols, then)
}

// InstalledOptions describe a Windows installed outside strata: the
// firmware tables and vCPUs Setup saw, where they differ from the
// definition now (nil: as defined).
type InstalledOptions struct {
	ACPI, APIC *bool
	VCPUs      *int
}

// RecordInstall takes the install record of a guest whose Windows was
// installed outside strata (strata guest install takes its own): the
// HAL-relevant settings (as defined, or as o gives them) and the
// activation-relevant hardware (first MAC, memory, CD-ROM drive) as
// defined now. It replaces an earlier record.
func (r *Registry) RecordInstall(ctx context.Context, name string, o InstalledOptions) (*hvm.Guest, []lint.Finding, error) {
	if o.VCPUs != nil && *o.VCPUs < 1 {
		return nil, nil, storage.Errorf(storage.ErrInvalid, "--vcpus %d is not a number of vCPUs", *o.VCPUs)
	}
	return r.Update(ctx, name, func(g *hvm.Guest) error {
		in := InstallRecordOf(g, hvm.InstallByInstalled)
		if o.ACPI != nil {
			in.ACPI = hvm.Bool(*o.ACPI)
		}
		if o.APIC != nil {
			in.APIC = hvm.Bool(*o.APIC)
		}
		if o.VCPUs != nil {
			in.VCPUs = hvm.Int(*o.VCPUs)
		}
		g.Install = in
		return nil
	})
}
