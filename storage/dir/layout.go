package dir

import (
	"path/filepath"

	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/pattern"
)

// The on-disk layout of the package doc, as names a program can match:
// doctor reads a pool directory (and an imported volume's folder) through
// these, and reports or removes only files they call strata's.
var (
	// IDImageName: a volume, golden or clone image or an ISO named by its
	// ID (ID.img, ID.qcow2, ID.iso); strata names files so only inside
	// pool directories.
	IDImageName = pattern.New(`^[0-9a-f]{16}\.(img|qcow2|iso)$`)
	// ProbeDirName: a capability probe's scratch directory (Probe).
	ProbeDirName = pattern.New(`^\.strata-probe-.+$`)
	// RollbackName: a restored copy about to replace IMAGE
	// (IMAGE.strata-rollback-UID, or the older IMAGE.strata-rollback).
	RollbackName = pattern.New(`^.+\.strata-rollback(-[0-9a-f]{12})?$`)
	// PointDataName: a reflink or copy point's file in PointsDir:
	// VOLID-UID.EXT.
	PointDataName = pattern.New(`^[0-9a-f]{16}-[0-9a-f]{12}(\.[^.]+)?$`)
)

// probePrefix begins a ProbeDirName.
const probePrefix = ".strata-probe-"

// StrataName tells whether a directory entry (name, and whether it is a
// directory) is one the layout gives strata's files, in a pool directory
// if pool is set (elsewhere, in an imported volume's folder, an ID-named
// image is the admin's). Point data is in PointsDir (PointDataName).
func StrataName(name string, isDir, pool bool) bool {
	if _, ok := atomicfile.Target(name); ok {
		return true // a temporary file, or an iso build's staging directory
	}
	switch {
	case ProbeDirName.MatchString(name):
		return isDir
	case isDir:
		return false
	case RollbackName.MatchString(name):
		return true
	case pool && IDImageName.MatchString(name):
		return true
	}
	return false
}

// PointVolumeID is the ID of the volume whose point data is at path (a
// file in PointsDir), or "" if path is not point data.
func PointVolumeID(path string) string {
	base := filepath.Base(path)
	if filepath.Base(filepath.Dir(path)) != PointsDir || !PointDataName.MatchString(base) {
		return ""
	}
	return base[:16]
}
