package storage

import (
	"context"
	"os"
	"runtime"
	"syscall"
)

// Driver serves the volumes of one kind of pool and owns all of their disk
// work: volumes, restore point data, golden images and clones. Callers
// (storage/store, snapshot) keep the catalog, the journal, the locks and
// the rules; they choose from what a driver declares (Features,
// PointMethod) and never from a driver's or filesystem's name.
//
// A driver value is stateless: every method is told the pool it acts in
// (the pool's record: its path, or its VG and thin pool, or its cluster).
// The point data of a volume whose record is gone is removed with the
// zero Pool, from the PointRef alone. Volumes are addressed by their
// Path, which for a block device is the device (/dev/VG/LV) and for a
// network volume a URI: nothing here assumes a file. Method names
// (PointMethod.Name) are unique across drivers: the catalog records them
// and the store finds a point's driver by them.
//
// # Crash contract
//
// strata may die (SIGKILL, power cut) at any instant, inside any driver
// step. A driver therefore:
//
//   - plans before it writes: every artefact a step may leave is named by
//     a plan (PlanPoint's PointRef, VolumePath, a golden image's or a
//     clone's Image) that the caller records in the catalog, in the same
//     transaction as its intent, before the step starts; recovery needs
//     only that record and the driver;
//   - makes every undo idempotent: RemovePoint, PutBack, Delete and
//     RemoveImages of what is absent succeed, and running one again after
//     a crash in the middle converges;
//   - makes every restore resumable: RestorePoint run again with the same
//     arguments after a crash finishes what the first run began (it finds
//     its own intermediate state, e.g. an image moved aside or a restored
//     copy under a temporary name, by names derived from the volume);
//   - replaces the live volume only by a rename (or an equivalent atomic
//     switch: lvrename, rbd rename) of a complete new one, and deletes the
//     old one only after the new one is in place (or keeps it as the
//     pre-rollback point: Moved);
//   - reports the state it leaves a volume in (RestoreStep.Record,
//     Fingerprint) before the volume takes its live name, so recovery
//     tells strata's own work from a guest's writes;
//   - calls Crashpoint at each step a crash test must reach (the names
//     are part of the test contract: STRATA_CRASH_AT; the conformance
//     suite, storage/drivertest, crashes at every one it traces).
//
// # Rollback by rename-away (block devices)
//
// A method whose restore puts a new volume under the live name declares
// ReplacesLive. The caller then plans the pre-rollback point with
// PointOptions.ReplacingLive, and the driver may plan it Moved: TakePoint
// moves the live volume to the point's Ref (an LV renamed aside), and
// RestorePoint (told RestoreStep.MoveTo) makes the restored volume (a
// writable thin snapshot of the point) and gives it the live name. An
// undo is PutBack (rename back); removing a Moved point whose live volume
// is missing puts it back instead. Nothing is ever removed before its
// replacement is in place.
type Driver interface {
	VolumeDriver
	PointDriver
	ImageDriver
}

// PoolAdder is a driver whose pools are not directories (LVM, RBD): it
// checks a new pool's record against the host (the volume group, the
// thin pool, the Ceph pool exist and are usable) and may complete it,
// before the catalog keeps it. A failed AddPool changes nothing.
type PoolAdder interface {
	AddPool(ctx context.Context, p *Pool) error
}

// PoolOverlapper is a PoolAdder whose pools can overlap on the host under
// different names (two lvm pools on one volume group): pool add refuses
// a new pool p when Overlap(q, p) fails for a pool q of the same driver
// that the catalog has (ErrExists, naming q), in the transaction that
// records p.
type PoolOverlapper interface {
	Overlap(existing, p Pool) error
}

// OrphanFinder is a driver whose pools hold images that are no files in
// a directory (RBD): doctor asks it for the images strata made there
// that no record names (a create killed between making the image and
// the commit that records it), and removes them only from pools whose
// owner marker names this home (as a dir pool's marker file does:
// catalog.Marker, as JSON).
type OrphanFinder interface {
	// Orphans lists, in one listing of pool p, the images there the
	// driver names as strata's that are none of known (volume paths and
	// their other locations, golden images' paths), as paths.
	Orphans(ctx context.Context, p Pool, known []string) ([]string, error)
	// RemoveOrphan removes one with its snapshots; refused (ErrInUse)
	// while a client has it open, (ErrPrecondition) while it has a
	// snapshot named in keep (a restore point record's).
	RemoveOrphan(ctx context.Context, p Pool, path string, keep map[string]bool) error
	// PoolOwner reads the owner marker of pool p (ok false: none);
	// ClaimPool writes one where there is none.
	PoolOwner(ctx context.Context, p Pool) (marker []byte, ok bool, err error)
	ClaimPool(ctx context.Context, p Pool, marker []byte) error
}

// PointUsager is a driver whose points have a fixed size the changes to
// their volume can outgrow (LVM classic snapshots): PointUsage reports
// how full one is (percent) and whether it overflowed (invalid: nothing
// usable is left); ok is false for a point without such a size.
type PointUsager interface {
	PointUsage(ctx context.Context, ref PointRef) (percent float64, invalid, ok bool, err error)
}

// Describer is a driver whose volumes are not files or block devices
// (RBD images): it reports a volume's sizes and backing itself, where
// callers would read a file's.
type Describer interface {
	Describe(ctx context.Context, p Pool, v Volume) (VolumeInfo, error)
}

// VolumeDriver makes, sizes, locates and removes volumes.
type VolumeDriver interface {
	// Status probes the pool: its space and (filesystem) capabilities.
	Status(ctx context.Context, p Pool) (PoolStatus, error)
	// Features declares what the driver does for pool p, as data.
	Features(ctx context.Context, p Pool) (Features, error)
	// FreeBytes is the space new data can take in pool p now (the
	// guardrail callers check before a copy, with their own message).
	FreeBytes(ctx context.Context, p Pool) (int64, error)
	// VolumePath is where a new volume (or golden image) with this ID and
	// format lives: a pure plan, recorded before the volume is made.
	VolumePath(p Pool, id string, f Format) string
	// Create makes an empty volume of size bytes at path (planned with
	// VolumePath) in pool p; raw images are sparse. When Create returns
	// the volume is durable, its data and its name (the caller records it
	// in the catalog next: a power cut must not leave a record naming a
	// missing or empty image). A failed Create leaves nothing.
	Create(ctx context.Context, p Pool, path string, f Format, size int64) error
	// Resize changes the virtual size of the volume at path in pool p;
	// shrinking only when shrink is set.
	Resize(ctx context.Context, p Pool, path string, f Format, size int64, shrink bool) error
	// Backing is what the volume's data reads from now ("" nothing): a
	// linked clone's golden until it is flattened.
	Backing(ctx context.Context, p Pool, v Volume) (string, error)
	// Delete removes a volume's data after its record is gone (imported
	// data only when purge is set; block devices strata did not make
	// never). Absent data is success.
	Delete(ctx context.Context, p Pool, v Volume, purge bool) error
	// Fingerprint tells the state of the live volume (ok false: nothing
	// under its live name, e.g. moved aside mid-restore). Two equal
	// fingerprints mean nobody wrote the volume in between.
	Fingerprint(p Pool, v Volume) (fp Fingerprint, ok bool, err error)
	// Locations are every path a guest could open the volume's data under
	// while a driver step runs (the live path first): in-use checks and
	// holds cover them all.
	Locations(p Pool, v Volume) []string
}

// PointDriver keeps the restore point data of single volumes. A point's
// data is found from its PointRef alone (plus the volume), which the
// caller records before TakePoint runs.
type PointDriver interface {
	// PointMethods describes every method this driver may record (names
	// unique across all drivers: the catalog keeps them).
	PointMethods() []PointMethod
	// PlanPoint chooses the method for a new point of v (o.Method: a
	// user's override, checked) and names its data from uid. Pure but for
	// probing the pool; nothing is written.
	PlanPoint(ctx context.Context, p Pool, v Volume, uid string, o PointOptions) (PointRef, error)
	// TakePoint captures v's state into ref (a Moved ref: by moving the
	// live data there). Bytes may be filled in. On error or crash the
	// caller undoes it with RemovePoint.
	TakePoint(ctx context.Context, p Pool, v Volume, ref *PointRef, prog Progress) error
	// CheckRestore refuses, before anything is written, a restore of ref
	// that cannot succeed (space for a copy) or would lose data (a copy
	// of a qcow2 image put back over its internal snapshots).
	CheckRestore(ctx context.Context, p Pool, v Volume, ref PointRef) error
	// RestorePoint makes v's live data what ref holds; resumable (see the
	// crash contract). ref itself stays usable.
	RestorePoint(ctx context.Context, p Pool, v Volume, ref PointRef, s RestoreStep) error
	// PutBack makes a Moved point's data the live volume again by a move
	// (undo of a rollback); absent point data is success.
	PutBack(ctx context.Context, p Pool, v Volume, ref PointRef) error
	// RemovePoint deletes a point's data; absent is success. A Moved
	// point whose live volume is missing is put back, never removed.
	RemovePoint(ctx context.Context, p Pool, v Volume, ref PointRef) error
	// PointExists tells whether a point's data is there.
	PointExists(ctx context.Context, p Pool, v Volume, ref PointRef) (bool, error)
	// SamePoint tells whether two points of one volume hold the same
	// bytes (false when the driver cannot tell cheaply).
	SamePoint(ctx context.Context, p Pool, v Volume, a, b PointRef) (bool, error)
	// LivePoint is how a point of v is taken while a guest runs on it;
	// the hypervisor does the capture in one pause of the guest.
	LivePoint(ctx context.Context, p Pool, v Volume, ref PointRef, o LiveOptions) (LivePoint, error)
	// CleanRestores removes what interrupted restores of v left that no
	// restore will use (called by recovery once it is done, under the
	// volume's locks).
	CleanRestores(p Pool, v Volume)
}

// ImageDriver freezes golden images and makes clones of them.
type ImageDriver interface {
	// FreezeCost is how many bytes pool p must have free for a golden
	// image of src (0: O(1) or no up-front check possible). The golden
	// image's pool's driver freezes it (reading src through its path).
	FreezeCost(ctx context.Context, src FreezeSource, p Pool) (int64, error)
	// Freeze writes a read-only golden image of src at dst.Path in pool p
	// (planned with VolumePath and recorded first); on error it may leave
	// a partial image, which the caller removes (RemoveImages).
	// It returns the image's virtual and allocated sizes.
	Freeze(ctx context.Context, p Pool, src FreezeSource, dst Image, prog Progress) (virtual, allocated int64, err error)
	// PlanClone chooses how a clone of golden goes into pool p: linked
	// (depends on golden) or full, and the clone's format and bytes
	// needed (per clone).
	PlanClone(ctx context.Context, golden Image, p Pool, full bool) (ClonePlan, error)
	// Clone makes the clone's data at dst.Path as planned; on error it
	// may leave a partial image, which the caller removes (RemoveImages).
	Clone(ctx context.Context, p Pool, golden Image, dst Volume, plan ClonePlan, prog Progress) error
	// RemoveImages removes golden images or half-made clones by path;
	// absent is success.
	RemoveImages(ctx context.Context, p Pool, paths []string) error
	// Flatten makes v independent of its backing (golden) image, with
	// every point's data in points completed too; backing is what v read
	// from ("" when there was nothing to flatten). A crash leaves v as it
	// was or flattened, never half.
	Flatten(ctx context.Context, p Pool, v Volume, points []PointRef, prog Progress) (backing string, err error)
}

// Features is what a driver does for a pool, as data.
type Features struct {
	// Points: the point methods the pool offers for each format.
	Points []PointMethod `json:"points"`
	// LinkedClones: a clone can depend on its golden (O(1) to make);
	// FullCloneO1: a full clone costs O(1) (shared extents).
	LinkedClones bool `json:"linked_clones"`
	FullCloneO1  bool `json:"full_clone_o1"`
	// FreeSpace: FreeBytes reports the space a copy can use (guardrail).
	FreeSpace bool `json:"free_space"`
	// BlockDevices: volumes are block devices (else files).
	BlockDevices bool `json:"block_devices"`
}

// PointMethod describes one way of keeping a volume's restore points.
type PointMethod struct {
	Name string `json:"name"`
	// Formats the method applies to.
	Formats []Format `json:"formats"`
	// O1Take, O1Restore: taking / restoring costs O(1) (else O(data)).
	O1Take    bool `json:"o1_take"`
	O1Restore bool `json:"o1_restore"`
	// InVolume: the point lives inside the volume's own data (gone with
	// it; a running guest's hypervisor removes it, LiveRemove).
	InVolume bool `json:"in_volume"`
	// ReplacesLive: a restore puts a new volume under the live name, so
	// the pre-rollback point can take the old one by a move (Moved).
	ReplacesLive bool `json:"replaces_live"`
	// KeepsFingerprint: taking a point leaves the volume's Fingerprint
	// as it was (an RBD snapshot writes none of the image's data, size,
	// mtime or object map), so a caller may read the fingerprint before
	// the take, alongside other work (it costs a round trip to a
	// cluster), and keep it as the state the point holds.
	KeepsFingerprint bool `json:"-"`
	// Live is how a running guest's hypervisor captures it.
	Live LiveMechanism `json:"live"`
}

// LiveMechanism is how a hypervisor captures a point of a running guest's
// disk in one pause.
type LiveMechanism string

const (
	// LiveInternal: the hypervisor snapshots inside the image (qcow2).
	LiveInternal LiveMechanism = "internal"
	// LiveClone: the driver clones the data in O(1) while paused.
	LiveClone LiveMechanism = "clone"
	// LiveBackup: the hypervisor copies a point-in-time image into a
	// target while the guest runs again.
	LiveBackup LiveMechanism = "backup"
)

// LivePoint is what a hypervisor is asked to do for one disk of a live
// point, and what the driver finishes afterwards.
type LivePoint struct {
	Mechanism LiveMechanism
	// Name: LiveInternal's snapshot name.
	Name string
	// Target: LiveBackup's target, made by the driver with the disk's
	// virtual size.
	Target string
	// File: LiveBackup's target open read-write, when the caller asked
	// for it (LiveOptions.PassFile): the hypervisor writes through the
	// descriptor and the file stays strata's alone. Release closes it.
	File *os.File
	// Clone: LiveClone's capture, run while the guest is paused.
	Clone func() error
	// Release, if set, runs once the hypervisor is done, whatever the
	// outcome (e.g. a target it wrote becomes strata's again).
	Release func() error
	// Finish, if set, runs after a successful capture (durability,
	// Bytes).
	Finish func(ctx context.Context, ref *PointRef) error
}

// LiveOptions are what a caller of LivePoint can take.
type LiveOptions struct {
	// PassFile: the caller hands the hypervisor descriptors (QMP add-fd),
	// so a LiveBackup target comes open (LivePoint.File) and is never
	// handed to another user by path and ownership.
	PassFile bool
}

// PointOptions are the choices a caller makes for a new point.
type PointOptions struct {
	// Method overrides the driver's choice (checked against v).
	Method string
	// ReplacingLive: a restore is about to replace v's live data (this is
	// its pre-rollback point): a method that ReplacesLive may plan the
	// point as the live data itself, moved (PointRef.Moved).
	ReplacingLive bool
	// Label, if set, is a readable name for the point's data where the
	// method names it ("12-before-sp3": the point's number, then its name
	// or automatic kind), for the admin who lists it with the image's own
	// tools: the dir driver's qcow2 internal snapshots are tagged
	// strata-LABEL-UID. The driver keeps what is safe in a name of its
	// kind and bounds the length; the UID alone keeps the name unique.
	Label string
}

// PointRef is what the catalog records of one volume's restore point: a
// driver's opaque, serialisable reference, planned before any work.
type PointRef struct {
	Method string `json:"method"`
	// Ref locates the captured state (driver-defined: an internal
	// snapshot's name, a file's path, an LV's name).
	Ref   string `json:"ref"`
	Bytes *int64 `json:"bytes"`
	// Moved: the point is the live data itself, moved to Ref by the
	// rollback that replaced it. Until that rollback moves it, Ref does
	// not exist and the live volume is the point's state.
	Moved bool `json:"moved,omitempty"`
}

// RestoreStep is what a restore is told besides the point.
type RestoreStep struct {
	Progress Progress
	// Record is told the state the restored volume is in before it takes
	// the live name (the journal keeps it).
	Record func(Fingerprint) error
	// MoveTo: the Ref of a Moved pre-rollback point the live volume goes
	// to when the restored one takes its name ("" none).
	MoveTo string
	// Done: the state an interrupted run of this step recorded (nil:
	// none); a restored copy left in that state is used as it is.
	Done *Fingerprint
}

// Fingerprint tells whether a volume's data changed: a rename keeps it,
// a write or a replacement changes it.
type Fingerprint struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
}

// FingerprintOf is the fingerprint of the file (or device node) at path
// without following a symlink; ok is false when there is none.
func FingerprintOf(path string) (fp Fingerprint, ok bool, err error) {
	st, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return fp, false, nil
	}
	if err != nil {
		return fp, false, err
	}
	fp = Fingerprint{Size: st.Size(), Mtime: st.ModTime().UnixNano()}
	if sys, isUnix := st.Sys().(*syscall.Stat_t); isUnix {
		fp.Ino = sys.Ino
	}
	return fp, true, nil
}

// Image is a golden image's (or a clone's source) data.
type Image struct {
	Path   string `json:"path"`
	Format Format `json:"format"`
}

// FreezeSource is what a golden image is frozen from: a volume now, or
// one of its restore points.
type FreezeSource struct {
	Volume Volume
	Format Format
	Point  *PointRef
}

// ClonePlan is how one disk of a clone is made.
type ClonePlan struct {
	// Method is recorded with the clone (the driver's name for it).
	Method string `json:"method"`
	Linked bool   `json:"linked"`
	Format Format `json:"format"`
	// Backing is what a linked clone reads from (recorded as the
	// volume's Backing).
	Backing string `json:"backing,omitempty"`
	// Need: bytes each such clone needs free in the pool.
	Need int64 `json:"need"`
}

// crashAt is the test-only fault injection hook: STRATA_CRASH_AT names a
// step ("create:recorded", "rollback:disk-1", ...) at which strata kills
// itself with SIGKILL, as a power cut or kill -9 would.
var crashAt = os.Getenv("STRATA_CRASH_AT")

// crashTrace (STRATA_CRASH_TRACE, tests only) names a file every step
// passed is appended to: a crash test learns the steps of a path from it.
var crashTrace = os.Getenv("STRATA_CRASH_TRACE")

// stopAt (STRATA_STOP_AT, tests only) names a step at which strata stops
// itself (SIGSTOP) instead: a test acts while it is frozen mid-operation
// (holds the catalog, changes a file), then kills it.
var stopAt = os.Getenv("STRATA_STOP_AT")

// Crashpoint kills the process at step when STRATA_CRASH_AT names it, and
// stops it when STRATA_STOP_AT does.
func Crashpoint(step string) {
	if stopAt != "" && stopAt == step {
		// To this thread: it stops before it runs another instruction of
		// the step (a process-wide SIGSTOP may be taken by another thread
		// while this one goes on for a moment).
		runtime.LockOSThread()
		_ = syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGSTOP)
		runtime.UnlockOSThread()
	}
	if crashTrace != "" {
		if f, err := os.OpenFile(crashTrace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, _ = f.WriteString(step + "\n")
			f.Close()
		}
	}
	if crashAt != "" && crashAt == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// SkipSpaceCheck is a test-only switch (STRATA_TEST_SKIP_SPACE_CHECK=1)
// that lets a copy run into a real ENOSPC.
var SkipSpaceCheck = os.Getenv("STRATA_TEST_SKIP_SPACE_CHECK") == "1"
