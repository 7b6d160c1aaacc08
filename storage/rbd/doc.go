// Package rbd is strata's storage driver for Ceph RBD pools, and the
// command layer under it: it builds the argv of the `rbd` and `ceph`
// command-line tools, runs them through storage/run (argv, never a shell,
// LC_ALL=C), reads their answers as JSON (`--format json`) and turns
// their failures into storage error kinds. No cgo and no Ceph library in
// the strata binary: the tools are what Incus and Proxmox drive too, and
// they keep working across Ceph releases; the hot paths' calls may go to
// strata's helper program instead (below).
//
// The helper (Ops, Helper, cmd/strata-rbd). A rollback is six rounds of
// tool processes, each connecting to the cluster anew (50-100 ms): the
// calls of the rollback's and the point create's hot paths (Ops: snap
// create, snap rollback, rename, snapshot list, exists, watchers, the
// restore generation's omap get and set, and the fingerprint's reads)
// (and doctor's one listing of each pool, List) have a second
// implementation, Helper, which hands them to strata-rbd:
// a separate program that loads librados and librbd at run time
// (storage/rbd/librados, purego, no cgo) and keeps one connection per
// cluster. strata itself never loads them, and stays static (a program
// that imports purego is dynamically linked and starts about 0.65 ms
// slower).
//
//   - Where: only HelperName in the directory of the running strata
//     executable (os.Executable), never $PATH; refused (CheckHelper)
//     unless a regular file owned by root or the effective user that
//     neither group nor others may write.
//   - When: started at most once per strata process, on the first Ops
//     call (DefaultOps); it dies with strata (Pdeathsig SIGKILL, and it
//     exits when its stdin closes) and runs in a process group of its
//     own (a terminal's Ctrl-C to strata does not stop a change under
//     way). A strata killed mid-rollback kills it too: the journal
//     finishes or undoes the rollback as after a killed rbd.
//   - Fallback: when the helper is missing, refused, exits, cannot load
//     the libraries, or cannot connect to a cluster (but not when the
//     cluster does not answer: the tools would wait as long again), the
//     calls go to the tools, and why is logged once at debug level.
//     STRATA_RBD_CLIENT (ClientEnv) forces a path: cli (the tools),
//     helper (no fallback: calls fail with a failed precondition saying
//     why), auto or unset (the helper when it works).
//   - Protocol: JSON lines. The helper greets first with {"id":0,
//     "ready":true,"version":1} (or an error, and exits); then each line
//     on its stdin is a HelperRequest ({"id":N,"op":"snap_rollback",
//     "conf":...,"client":...,"pool":...,"namespace":...,"image":...,
//     "snap":...}) and each line on its stdout a HelperResponse with the
//     same id ({"id":N} on success, with the op's result; {"id":N,
//     "errno":E,"error":"..."} on failure, "connect":true when the
//     failure was connecting). Requests may overlap: the helper serves
//     each in a goroutine and answers when it is done (the driver asks
//     independent questions at once, as it runs tools at once). Errors
//     are classified as the tools' exit codes are (Classify, by errno),
//     EBUSY retried as for the tools; a change is waited for even when
//     the context ends (as run.Critical does).
//   - Secrets: none passes. The pool's ceph.conf and client ID go in
//     each request; librados reads the keyring the conf names, as rbd
//     does.
//   - Reads open images read-only (no watch), and Watchers leaves out
//     the helper's own client instance: strata never counts itself as a
//     client of an image it is changing.
//   - The fingerprint is a hash of the tools' text (rbd info's
//     modify_timestamp, printed with ctime(3); rbd diff's JSON): the
//     helper produces that text to the byte (the C library's ctime_r,
//     rbd's JSON layout), so that a fingerprint recorded on one path
//     compares equal on the other.
//   - Off the hot paths (create, resize, delete, clone, flatten, copy,
//     usage, pool checks, point removal) the tools stay.
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
//     snap create + rbd snap rollback is two (with the helper: six
//     rounds of calls on one connection, and one process start). A run
//     resumed after a crash checks the names and fingerprints first.
//   - A golden image is an image (a full copy, `rbd cp`, of the volume or
//     of its point: no snapshots come with it) with one protected
//     snapshot, GoldenSnap. A linked clone is an RBD clone of it; a full
//     clone an `rbd cp` of it. The golden cannot be removed while `rbd
//     children` lists clones (storage.ErrInUse naming them). Flatten is
//     `rbd flatten` (deep-flatten: the clone's snapshots are completed
//     too); it rewrites nothing that a crash could leave half done: the
//     parent link is cut only once every object is copied.
//
// Orphans (storage.OrphanFinder): doctor lists each rbd pool once (Ops
// List) for images named as strata names them (StrataImage: ImagePrefix
// and a 16-hex-digit ID, or that name set aside by a rollback) that no
// record names: left by a create killed between rbd create and its
// record, or a delete that could not remove the image. --repair removes
// them only from a pool this home owns: pool add marks the pool (or
// namespace) with the home's owner marker (the omap key OwnerKey of the
// RADOS object OwnerObject, the JSON a dir pool's marker file holds),
// and refuses one another home's marker names, or one holding strata's
// images but no marker; doctor marks a pool with no marker once it
// holds no orphan. An image a client has open, or holding a snapshot a
// restore point record names, is never removed.
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
