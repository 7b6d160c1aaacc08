// Package snapshot keeps restore points: snapshots of all of a guest's
// disks and its definition at one instant (or of one volume), which can be
// rolled back to at any time, in any order, with nothing lost.
//
// Vocabulary:
//
//   - Target: what a restore point is of — a guest (all its disks plus its
//     catalog record) or a single volume. Targets are keyed by stable ID, so
//     renaming a guest or volume touches the catalog only.
//   - Restore point: numbered per target (1, 2, 3 ...), optionally named;
//     kind single, pre, post (linked to its pre) or pre-rollback (taken
//     automatically before every rollback, so a rollback can be undone).
//   - Method: how one disk is captured, chosen by the driver of the
//     volume's pool (storage.Driver.PlanPoint) and recorded with the point
//     (DiskPoint.PointRef); the dir driver's are qcow2-internal (qemu-img
//     snapshot; no backing chain grows), reflink (FICLONE; O(1)) and copy
//     (sparse full copy). This package never chooses or runs a method
//     itself: it asks the driver how (storage.PointMethod tells what a
//     method does: inside the volume, replaces the live volume on restore,
//     live mechanism), and never which driver it talks to.
//
// Every operation is a plan, then its execution: the plan reads the
// catalog and applies its rules without touching a file, a driver or a
// tool (planPoint, planRollback, planRecoveredRollback, clonePools and
// layoutClones, planGolden, planFlatten, doctor's planRecovery and
// planScan); the execution does the disk work the plan calls for, through
// the drivers.
//
// What is the same for every driver stays here: the catalog records, the
// journal, the locks, retention, all of a guest's disks or none, the
// pre-rollback point, golden and clone records; the disk work (points,
// golden images, clones, flatten) is the pool driver's (storage.Driver,
// whose doc states what each step must do on a crash).
//
// Invariants: every multi-step change is journaled in the catalog before it
// touches a disk; operations on one target hold that target's lock file
// for their whole length, so whoever takes the lock and finds a journaled
// operation knows its process died and finishes (rollback, delete) or
// undoes (create) it. Artefacts are named by a random point UID, never
// reused. Rolling back never deletes a point: all points, older and newer,
// survive, and the state before the rollback becomes a pre-rollback point.
// Every point record is written with its holds (catalog.Hold) on its
// target guest and its volumes, every golden record with its holds on its
// pools, in the same transaction: the store refuses to delete what is
// held by itself, without this package (holds.go).
package snapshot
