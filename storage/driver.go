package storage

import "context"

// Driver serves the volumes of one kind of pool. A driver knows where a
// volume's file goes and how to make, resize and remove it; the catalog
// bookkeeping is the caller's (storage/store).
type Driver interface {
	// Status probes the pool's filesystem: type, space and capabilities.
	Status(ctx context.Context, p Pool) (PoolStatus, error)
	// VolumePath is where a new volume with this ID and format lives.
	VolumePath(p Pool, id string, f Format) string
	// Create makes an empty volume of size bytes at path; raw images are
	// sparse.
	Create(ctx context.Context, path string, f Format, size int64) error
	// Resize changes the virtual size; shrinking only when shrink is set.
	Resize(ctx context.Context, path string, f Format, size int64, shrink bool) error
}
