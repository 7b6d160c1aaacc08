// Package media keeps install media: ISO9660 images that guests boot or
// install from. It captures them from optical drives, loop devices or image
// files, builds them from a directory (go-diskfs), registers existing ones,
// and answers what an image holds (label, El Torito boot entries, files).
//
// Trees and extensions: an image has a plain ISO9660 tree (8.3 upper-case
// names) and may add Rock Ridge (POSIX names, modes and symlinks in the
// same tree, what Linux reads) and Joliet (a second tree of UCS-2 names up
// to 64 characters, what Windows reads); El Torito makes it bootable and
// UDF may bridge it. Builds carry Rock Ridge and Joliet unless asked for a
// bare image. go-diskfs writes the ISO9660 and Rock Ridge trees and El
// Torito; strata writes the Joliet tree itself (joliet.go says why) and
// reads every tree itself (isotree.go), so that a tree is checked by a
// reader that does not share the writer's mistakes.
//
// Vocabulary: a medium (plural media; the CLI says "iso") is an ISO image
// registered in the catalog under a name. A medium strata captured or built
// lives in a pool as <id>.iso, named by a stable ID; its name is metadata.
// An imported medium stays where it was found and is only registered.
//
// Invariants:
//
//   - No half image ever carries a final name: images are written to a
//     temporary name in the pool (".strata-tmp-<id>.iso"), synced, renamed,
//     and the directory synced, before the catalog record is added; on any
//     failure the temporary file is removed.
//   - A capture copies exactly the image: the ISO9660 volume space size
//     (volume space size × logical block size), extended only to cover
//     partitions a hybrid image appends after its filesystem, never the
//     padding a drive or loop device adds; --raw copies the whole source.
//   - Every medium's SHA-256 is computed from the bytes written, while they
//     are written, in constant memory.
//   - Unreadable sectors fail a capture unless the caller allows them; then
//     they are zero-filled and their byte offsets recorded on the medium.
//   - Building never changes or deletes the source directory: go-diskfs
//     removes its working directory when it finishes, so it only ever works
//     on a staged copy that strata owns.
//   - A built image's Joliet tree names exactly the files and directories
//     of its Rock Ridge tree (symlinks aside, which Joliet cannot hold); a
//     name Joliet cannot hold (over 64 UCS-2 characters, outside UCS-2,
//     or with * / : ; ? \) fails the build before anything is written.
//   - Reading a tree either lists all of it or fails (storage.ErrInvalid
//     for a corrupt one); it never returns a partial or empty list.
//   - A medium is not deleted while a guest definition uses it (Manager.Users).
package media
