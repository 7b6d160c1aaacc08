// Package storage holds strata's storage vocabulary, shared by every other
// package: pools, volumes, formats, capabilities, the error kinds and the
// checks on sizes and names that users type.
//
// Vocabulary (used with these meanings everywhere, no synonyms):
//
//   - Pool: a place where strata keeps volumes, served by a driver ("dir":
//     a directory on a local filesystem). The driver (Driver) owns all disk
//     work on the pool's volumes: creating, resizing and deleting them,
//     their restore point data, golden images, clones and flattening. It
//     declares what it does as data (Features, PointMethod; a dir pool's
//     filesystem also reports Capabilities); callers choose from that,
//     never from the driver's or filesystem's name.
//   - Volume: a virtual disk (a raw or qcow2 image file, an ISO, or a block
//     device) registered in the catalog. A volume created by strata lives in
//     its pool under a file name derived from its stable ID; the volume's
//     name is metadata, so renaming never touches the file. An imported
//     volume stays where it was found and is only registered.
//
// Invariants: a volume's name is unique across the catalog; a volume's path
// is unique; strata never writes zeros to allocate an image (raw images are
// sparse) and never runs external tools through a shell.
package storage
