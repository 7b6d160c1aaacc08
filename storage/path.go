package storage

import "path/filepath"

// RealPath is path with symlinks resolved and cleaned, or cleaned only if
// it cannot be resolved (it does not exist). Paths strata records and
// compares go through it, so that one file has one spelling: a pool or
// state home reached through a symlink, or a backing name written "a/../b",
// must not look like another file.
func RealPath(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return filepath.Clean(path)
}

// ResolvePath is RealPath for a path that may not exist yet: the links of
// its nearest existing parent are resolved.
func ResolvePath(p string) string {
	p = filepath.Clean(p)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p
	}
	return filepath.Join(ResolvePath(parent), filepath.Base(p))
}

// ApplyingSuffix names a qcow2 image moved aside from its live name
// (IMAGE.strata-applying) while a rollback applies one of its snapshots:
// the image is there, not missing, until the rollback moves it back.
const ApplyingSuffix = ".strata-applying"
