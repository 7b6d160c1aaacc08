package rbd_test

import (
	"os"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/drivertest"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	storagetest.StopCeph()
	if helperDir != "" {
		os.RemoveAll(helperDir)
	}
	os.Exit(code)
}

// crashSteps are the STRATA_CRASH_AT steps inside the rbd driver: the
// image renamed aside and the snapshot rolled back into it, a clone
// flattened.
var crashSteps = []string{"rollback:rbd-moved", "rollback:rbd-applied", "flatten:rbd-flattened"}

// testPool is an rbd pool on the test binary's single-node cluster: a
// namespace of its own in the test pool.
func testPool(t *testing.T) storage.Pool {
	c := storagetest.CephCluster(t)
	return storage.Pool{Name: "rbd-" + t.Name(), Driver: rbd.Name, Created: time.Now().UTC(),
		RBD: &storage.RBDPool{Pool: c.Pool, Namespace: c.Namespace(t), CephConf: c.Conf}}
}

// TestRBDDriverConformance runs the driver conformance suite against a
// real single-node Ceph cluster (mon + memstore OSD).
func TestRBDDriverConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Config{Driver: rbd.Driver{}, CrashSteps: crashSteps,
		Pool: func(t *testing.T) storage.Pool { return testPool(t) }})
}

// TestRBDDriverConformanceHelper runs the suite with the hot paths in
// the strata-rbd helper (no fallback to the tools): the crash steps kill
// a child that has a helper running the rollback.
func TestRBDDriverConformanceHelper(t *testing.T) {
	drivertest.Run(t, drivertest.Config{Driver: rbd.Driver{Ops: helperOps(t)}, CrashSteps: crashSteps,
		Pool: func(t *testing.T) storage.Pool { return testPool(t) }})
}
