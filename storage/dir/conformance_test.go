package dir_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/drivertest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// crashSteps are the STRATA_CRASH_AT steps inside the dir driver: a
// qcow2 image moved aside and applied, a restored copy made and recorded,
// a live image moved into its pre-rollback point, a flattened copy built
// and renamed over the clone.
var crashSteps = []string{
	"rollback:qcow2-moved", "rollback:qcow2-applied",
	"rollback:copy-made", "rollback:copy-recorded", "rollback:copy-moved",
	"flatten:built", "flatten:renamed",
}

// TestDirDriverConformance runs the driver conformance suite on the
// filesystems a dir pool is found on: ext4 (copy points), XFS with
// reflink=1 and btrfs (reflink points), each a real loop device.
func TestDirDriverConformance(t *testing.T) {
	for _, fs := range []string{"ext4", "xfs", "btrfs"} {
		t.Run(fs, func(t *testing.T) {
			drivertest.Run(t, drivertest.Config{Driver: dir.Driver{}, CrashSteps: crashSteps,
				Pool: func(t *testing.T) storage.Pool {
					p := storage.Pool{Name: "conformance", Driver: dir.Name, Path: filepath.Join(storagetest.LoopFS(t, fs, 512<<20), "pool"), Created: time.Now().UTC()}
					if err := storage.MkdirPassable(p.Path); err != nil {
						t.Fatal(err)
					}
					return p
				}})
		})
	}
}
