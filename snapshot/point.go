package snapshot

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// Kinds of restore point.
const (
	KindSingle      = "single"
	KindPre         = "pre"
	KindPost        = "post"
	KindPreRollback = "pre-rollback"
)

// States of a point record. Only ready points are listed as usable; the
// others belong to an operation in progress or interrupted.
const (
	stateCreating = "creating"
	stateReady    = "ready"
	stateDeleting = "deleting"
)

// Point is a restore point.
type Point struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	// Target is the target's display name ("guest:NAME", "volume:NAME"):
	// List and Show fill it in from the catalog by TargetKey, so that it
	// follows renames. New records still store it, as taken, for older
	// strata versions sharing the catalog; nothing here reads it back.
	Target      string            `json:"target"`
	TargetKey   catalog.TargetKey `json:"target_key"`
	Created     time.Time         `json:"created"`
	Kind        string            `json:"kind"`
	Method      string            `json:"method"` // the disks' method, or "mixed"
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	Pinned      bool              `json:"pinned"`
	PreID       *int              `json:"pre_id"`
	Bytes       *int64            `json:"bytes"`
	State       string            `json:"state"`
	UID         string            `json:"uid"`
	// Consistency says what the disks hold: "offline" (the guest did not
	// run: as it left them), "crash" (a running guest, paused: every write
	// it issued before the pause), "filesystem" (its filesystems frozen by
	// its guest agent), "memory" (with its RAM and device state).
	Consistency string `json:"consistency,omitempty"`
	// Live: taken while the guest ran; PauseMS is how long it was paused.
	Live    bool     `json:"live,omitempty"`
	PauseMS *float64 `json:"pause_ms,omitempty"`
	// LivePaused: the guest was paused (by its admin) when the point was
	// taken; undoing an interrupted point leaves it paused.
	LivePaused bool `json:"live_paused,omitempty"`
	// Memory: the guest's RAM and device state, saved with the disks
	// (consistency "memory"); rollback --memory resumes the guest from it.
	Memory *MemoryState `json:"memory,omitempty"`
	Disks  []DiskPoint  `json:"disks"`
	// Guest is the guest record as it was (definition included); nil for a
	// volume target.
	Guest *storage.Guest `json:"guest,omitempty"`
}

// DiskPoint is one disk's part of a restore point.
type DiskPoint struct {
	VolumeID string         `json:"volume_id"`
	Volume   string         `json:"volume"`
	Format   storage.Format `json:"format"`
	// PointRef is the driver's record of the captured state: its method,
	// Ref (for the dir driver the qcow2 internal snapshot's name or the
	// path of the reflinked/copied image), Bytes and Moved (the point is
	// the live image itself, moved to Ref by the rollback that replaced
	// it).
	storage.PointRef
	// DataPercent: how full a point of fixed size is (LVM classic
	// snapshots; storage.PointUsager), as List reads it now; Invalid: it
	// overflowed and cannot be rolled back to.
	DataPercent *float64 `json:"data_percent,omitempty"`
	Invalid     bool     `json:"invalid,omitempty"`
}

// key is the catalog key of a point: ordered by target, then number.
func key(targetKey catalog.TargetKey, id int) string {
	return fmt.Sprintf("%s/%010d", targetKey, id)
}

// Target is what restore points are taken of.
type Target struct {
	Key  catalog.TargetKey // stable across renames
	Name string            // as named when the target was resolved
}

// Kind is what the target is (catalog.KindGuest, KindVolume, KindGolden).
func (t Target) Kind() catalog.TargetKind { return t.Key.Kind() }

// String is the target's display name: "guest:NAME", "volume:NAME",
// "golden:NAME"; a target without a name (one the catalog no longer has,
// see targetOf) is shown by its key.
func (t Target) String() string {
	if t.Name == "" {
		return t.Key.String()
	}
	return string(t.Key.Kind()) + ":" + t.Name
}

// Arg is how the target is written on a strata snapshot command line.
func (t Target) Arg() string {
	return TargetRef{Name: t.Name, Volume: t.Kind() == catalog.KindVolume}.Arg()
}

// Arg is how the target is written on a strata snapshot command line:
// "--volume NAME" for a volume, so that a hint run as printed never acts on
// a guest of the same name.
func (r TargetRef) Arg() string {
	if r.Volume {
		return "--volume " + r.Name
	}
	return r.Name
}

// ParsePointRef reads a POINT argument: a number or a point name.
func ParsePointRef(s string) (num int, name string, err error) {
	if s == "" {
		return 0, "", storage.Errorf(storage.ErrInvalid, "give a restore point: its number or its name")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, "", storage.Errorf(storage.ErrInvalid, "invalid restore point %q: numbers start at 1", s)
		}
		return n, "", nil
	}
	if err := storage.ValidateName("restore point", s); err != nil {
		return 0, "", err
	}
	return 0, s, nil
}

// ParseTags reads KEY=VALUE tags.
func ParseTags(in []string) (map[string]string, error) {
	tags := map[string]string{}
	for _, t := range in {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, storage.Errorf(storage.ErrInvalid, "invalid tag %q: write KEY=VALUE", t)
		}
		if err := storage.ValidateName("tag key", k); err != nil {
			return nil, err
		}
		tags[k] = v
	}
	return tags, nil
}

// Printable returns the point as strata prints it: the guest record without
// its definition, which may hold a console password.
func (p Point) Printable() Point {
	if p.Guest != nil {
		g := *p.Guest
		g.Definition = ""
		p.Guest = &g
	}
	return p
}
