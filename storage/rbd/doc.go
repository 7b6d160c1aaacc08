// Package rbd is strata's storage driver for Ceph RBD pools, and the
// command layer under it: it builds the argv of the `rbd` and `ceph`
// command-line tools, runs them through storage/run (argv, never a shell,
// LC_ALL=C), reads their answers as JSON (`--format json`) and turns
// their failures into storage error kinds. No cgo and no Ceph library
// binding: the tools are what Incus and Proxmox drive too, and they keep
// working across Ceph releases.
//
// Vocabulary (Ceph's own, as in rbd(8)):
//
//   - Ceph pool, namespace: where images live; a strata rbd pool is one
//     Ceph pool, or one RBD namespace in it (storage.RBDPool).
//   - Image: an RBD block image (format 2, thin: it takes space as it is
//     written). Made with the features layering, exclusive-lock,
//     object-map, fast-diff and deep-flatten.
//   - Snapshot: a read-only, O(1) state of an image, inside the image
//     (it follows the image through a rename). Protected: it cannot be
//     removed, and images can be cloned from it.
//   - Clone: an image whose unwritten data reads from a protected
//     snapshot of another image (its parent); `rbd children` lists the
//     clones of a snapshot, `rbd flatten` copies the parent's data in and
//     cuts the link.
//   - Watcher: a client that has the image open (a running guest's
//     QEMU); `rbd status` lists them.
//
// How strata's things map onto RBD:
//
//   - A volume is an image named ImagePrefix + the volume's stable ID
//     (strata-0123456789abcdef): ParseImageName maps an image back to its
//     volume, and images without the prefix are never strata's. Its Path
//     is QEMU's rbd filename, rbd:POOL/[NAMESPACE/]IMAGE[:id=USER][:conf=FILE]
//     (Path, ParsePath): qemu-img, qemu-io and QEMU open it as it is, and
//     the renderers turn it into libvirt's and xl's forms. Volumes are raw.
//   - A restore point is a snapshot of the volume's image named
//     PointPrefix + the point's UID (strata-0123456789ab).
//   - A rollback is `rbd snap rollback` with the image renamed aside
//     (IMAGE.strata-applying) while it runs, then renamed back. Every other
//     point stays (they are snapshots of the same image). The cost is one
//     server-side operation per object of the image (no data goes through
//     strata's host; measured here: 0.12 s for 4 MiB, 0.28 s for 512 MiB
//     of data in a 1 GiB image). The alternative, a clone-based swap
//     (rename the image aside, clone the point under the live name) is
//     O(1) but makes every rollback a new image whose points live in
//     other images: the point references, the deletion of a volume and
//     flatten would have to follow a growing tree of images. The rename
//     aside keeps the crash contract: a half rolled-back image is never
//     under the live name, where a guest started by hand would open it,
//     and running the rollback again finishes it. A rollback sets a new
//     restore generation for the image (a random value in the omap of
//     the pool's RADOS object strata_restored, GenerationObject, under
//     the image's name) while it runs, and the image takes its live name
//     again only once it is set: rbd snap rollback keeps the image's ID
//     and modify time, and to a point whose objects the image still has
//     it would keep its whole fingerprint, so the undo of a multi-disk
//     rollback could not tell a restored disk from an untouched one.
//     (Not rbd image-meta: rbd opens the image to read or write it, and
//     the open image's watcher would make a concurrent check see a
//     running guest.) Each rbd call is a process and a connection to the
//     cluster (50-100 ms), so a rollback is counted in rounds of calls
//     (the calls of one round run at once): snapshot's check (the
//     point's snapshot, the watchers, and the journal's fingerprint of
//     the image: an RBD snapshot does not change it,
//     PointMethod.KeepsFingerprint), the pre-rollback point, the rename
//     aside, the watchers again with the state the rollback will leave
//     (the image's ID and modify time, which a rollback keeps, the
//     snapshot's size and objects, and the new generation), the rollback
//     with the generation set, the rename back: six, where the bare rbd
//     snap create + rbd snap rollback is two. A run resumed after a
//     crash checks the names and fingerprints first.
//   - A golden image is an image (a full copy, `rbd cp`, of the volume or
//     of its point: no snapshots come with it) with one protected
//     snapshot, GoldenSnap. A linked clone is an RBD clone of it; a full
//     clone an `rbd cp` of it. The golden cannot be removed while `rbd
//     children` lists clones (storage.ErrInUse naming them). Flatten is
//     `rbd flatten` (deep-flatten: the clone's snapshots are completed
//     too); it rewrites nothing that a crash could leave half done: the
//     parent link is cut only once every object is copied.
//
// Errors: rbd exits with the errno of its failure. Classify maps ENOENT
// to storage.ErrNotFound, EEXIST to ErrExists, EINVAL to ErrInvalid,
// EBUSY (watchers, children, a protected snapshot) to ErrInUse after a
// few retries (Client retries EBUSY up to BusyRetries times: a client
// releasing the exclusive lock is transient), ENOTEMPTY to
// ErrPrecondition, ENOSPC/EDQUOT to ErrPrecondition with ErrNoSpace, a
// cluster that does not answer (ETIMEDOUT, after --client-mount-timeout)
// to ErrBusy. The *run.Error with argv, exit code and stderr stays
// wrapped.
//
// Secrets never go on a command line: the pool's ceph.conf names the
// keyring ([client.USER] keyring = FILE); strata passes only -c and --id.
//
// Usage without a manager daemon: `ceph df` reports nothing without a
// mgr. Free space comes from the pool's quota (ceph osd pool ls detail)
// minus what `rbd du` counts in the pool (or namespace), and from `ceph
// df`'s max_avail when a manager reports it; with neither, the driver
// declares no free space (Features.FreeSpace false).
//
// Recorded outputs of the real rbd (testdata/rbd at the top of the
// module, with the Ceph version that made them) back the unit tests; the
// driver tests run the conformance suite against a single-node cluster
// (storage/storagetest.CephCluster).
package rbd
