// Package lvm is strata's command layer over LVM2: it builds the argv of
// lvcreate, lvs, lvrename and the other commands, runs them through
// storage/run (argv, never a shell, LC_ALL=C), reads their reports as JSON
// (`--reportformat json --units b --nosuffix`) and turns their failures
// into storage error kinds. It knows logical volumes, not strata's
// volumes or restore points: the LVM pool driver stands on it and decides
// what to make; this package only says how.
//
// Vocabulary (LVM's own, as in lvm(8)):
//
//   - VG: a volume group; its space is counted in extents (ExtentSize).
//   - LV: a logical volume in a VG. Thick LVs own their extents; thin LVs
//     take blocks from a thin pool (an LV of type thin-pool) on write.
//   - Classic snapshot: a thick copy-on-write LV of a fixed size; when the
//     changes to its origin outgrow it, the kernel invalidates it for good
//     (Attr.Invalid) and it can only be removed.
//   - Thin snapshot: a thin LV sharing its origin's blocks (O(1)); it is
//     made with the activation-skip flag set (Attr.SkipActivation), so it
//     stays inactive until activated with --ignoreactivationskip (-K).
//   - Merge: lvconvert --merge folds a classic snapshot back into its
//     origin and removes the snapshot; when the origin is open the merge
//     waits for its next activation (Merge reports that).
//
// Names: strata's LVs are named by LVName from a kind and strata's stable
// IDs, never from user-chosen names (a rename in strata touches its
// catalog only), in a form that ParseLVName reverses and that never
// collides with LVM's reserved names; every LV strata makes carries
// TagStrata, so strata finds its own LVs and leaves others alone.
//
// Errors: LVM exits 5 for most failures and 3 for a bad command line;
// Classify reads the exit code and LVM's message to choose the kind
// (storage.ErrNotFound, ErrExists, ErrInUse, ErrBusy, ErrPrecondition
// for no space, ErrInvalid, ErrNotSupported); the *run.Error with argv,
// exit code and stderr stays wrapped for errors.As.
//
// Recorded outputs of the real LVM (testdata/lvm at the top of the module,
// with the version that made them) back the host-side tests; the same
// tests' guest half runs against the real LVM in a TCG guest
// (hvm/boot/boottest, LVMSpec), because the host has no device-mapper.
//
// # The pool driver
//
// Driver is the storage.Driver of lvm pools (and storage.PoolAdder: pool
// add checks the VG and thin pool). A pool is a VG (thick: every volume
// a plain LV owning its extents) or a thin pool in a VG (thin: volumes
// are thin LVs), recorded as storage.LVMPool. Volumes are raw block
// devices at /dev/VG/LV (Volume.Device); an LV adopted by `volume import
// /dev/VG/LV` keeps its name and is served with its VG as a pseudo-pool.
//
// LVs the driver makes, all tagged TagStrata (only those are ever
// removed):
//
//	strata.vol.ID             a volume or golden image (VolumePath)
//	strata.point.VOLID.UID    a restore point of volume VOLID
//	strata.tmp.VOLID.restore  a thin rollback's restored LV before it takes the live name
//	strata.aside.VOLID.restore  the live LV renamed aside by a thin rollback
//	                          (when the pre-rollback point is not the live LV itself)
//	strata.aside.VOLID.undo   the restored LV renamed aside by PutBack
//
// A point's PointRef.Ref is "VG/LV", so its data is found with no pool.
//
// Methods and their costs:
//
//   - lvm-thin (thin LVs): a point is a read-only thin snapshot with
//     activation skipped: O(1) in time and space. Rollback is the
//     rename-away: a writable thin snapshot of the point is made under
//     the tmp name and its state recorded; the live LV is renamed to the
//     pre-rollback point (which is therefore the old live LV itself,
//     PointRef.Moved, taken at no cost) or aside; the restored LV takes
//     the live name; what was aside is removed last. O(1). The point
//     stays. Run again after a crash, the restore finds its restored LV
//     by the recorded state under either name. A first run is lvcreate
//     and two lvrename, nothing else; the VG's LVs are listed only when
//     one of them fails for a leftover, or on a run after a crash.
//   - lvm-thick (thick LVs): a point is a read-only classic snapshot of
//     --snapshot-size percent of the volume (default 100, which can
//     never overflow; a smaller one that overflows is reported invalid
//     and refused for rollback). Taking it is O(1) in time but reserves
//     its size in the VG. Classic snapshots belong to their origin LV (a
//     rename-away would take every point with the old LV; lvconvert
//     --merge consumes the point), so a rollback copies the point back
//     over the live LV in place, writing only the 1 MiB blocks that
//     differ: O(size) reads, O(changed) writes, each also copied into
//     every other snapshot of the volume. The pre-rollback point is a
//     snapshot taken first, so a crash mid-copy is finished (copy again)
//     or undone (copy the pre-rollback point back).
//   - golden images and clones: on a thin pool a golden image is a
//     read-only thin snapshot and a clone a writable one (O(1)); neither
//     depends on the other (thin snapshots are independent LVs), so
//     clones are never linked and Flatten has nothing to do. On a thick
//     pool both are copies into new LVs (O(size)).
//
// PointUsage (storage.PointUsager) reports how full a thick point's
// snapshot is and whether it overflowed, for snapshot list.
//
// Guardrails: a thin pool whose data or metadata usage is at or over
// the pool's limits (defaults 85% and 75%), or that is out of data space
// or failed, takes no new volume, point, golden image or clone: checked
// before anything is made. A thick LV, snapshot or copy needs its size
// free in the VG: LVM's lvcreate checks that itself, atomically (two
// strata commands cannot count the same free extents), and its refusal
// (ErrNoSpace) is told as the guardrail's, with the VG's numbers read
// then. The refusal gives the numbers and what to do.
//
// Device-mapper (dm.go): every lvm command is a process that scans the
// VG's metadata (0.3-1 s under TCG). What the guardrails and a point's
// plan need of an active LV the kernel knows: QueryDM reads a device's
// table or status with the DM_TABLE_STATUS ioctl on /dev/mapper/control,
// as dmsetup does. A volume's table says whether it is thin (target
// "thin", naming its pool's device) and its size; the thin-pool target's
// status gives the used and total data and metadata blocks (the
// percentages lvs reports) and its mode (out_of_data_space, ro, Fail).
// So a point is planned with no lvm command and taken with one
// (lvcreate). An inactive LV, or a thin pool with no active device, is
// asked of lvs as before. The ioctls live in storage/dm, which the in-use check
// (storage/inuse, DeviceMapper) shares: it reads an LV's open count, so
// an LV held where no process file shows it (another PID namespace, a
// mount, a loop device, a kpartx map) is in use.
//
// Pools do not overlap (Overlap, storage.PoolOverlapper): one VG's thick
// LVs, or one thin pool, belong to one pool of a home.
//
// Fingerprint: an LV's state is its device-mapper UUID (VG and LV UUIDs:
// kept by a rename, changed by a replacement), its size and the sectors
// written to its device since activation (/sys/dev/block/M:m/stat). A
// write changes it; a reactivation after writes does too, which
// recovery takes as "changed" (it then keeps what it found as a point:
// the safe side). It cannot see a write that happened while strata was
// not looking and was followed by a reactivation that brought the
// counter back to the same value — not a case a guest produces.
package lvm
