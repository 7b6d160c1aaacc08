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
package lvm
