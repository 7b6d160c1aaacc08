package snapshot

import (
	"context"
	"fmt"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage"
)

// Point and clone method names as the catalog records them. They are the
// drivers' names (storage.Driver.PointMethods, ClonePlan.Method): this
// package never chooses or runs a method by its name, it asks the driver.
const (
	MethodQcow2   = "qcow2-internal"
	MethodReflink = "reflink"
	MethodCopy    = "copy"
	methodMixed   = "mixed"

	CloneLinked  = "linked"
	CloneReflink = "reflink"
	CloneCopy    = "copy"
)

// pointsDir is where a memory point's state file goes, beside the
// guest's first disk (the dir driver keeps its point copies there too).
const pointsDir = ".strata-points"

// skipSpaceCheck lets a copy run into a real ENOSPC (tests only).
var skipSpaceCheck = storage.SkipSpaceCheck

// fingerprint is the state of a volume a journal records.
type fingerprint = storage.Fingerprint

func crashpoint(step string) { storage.Crashpoint(step) }

// driverOf is the driver serving volume v, and v's pool.
func (m *Manager) driverOf(v storage.Volume) (storage.Driver, storage.Pool, error) {
	return m.st.VolumeDriver(v)
}

// pointDriver is the driver that recorded a disk's point, and how its
// method behaves.
func (m *Manager) pointDriver(d DiskPoint) (storage.Driver, storage.PointMethod, error) {
	return m.st.PointDriver(d.Method)
}

// inVolume tells whether a disk's point lives inside its volume's own
// data (removed with it; through the hypervisor while a guest runs).
func (m *Manager) inVolume(d DiskPoint) bool {
	_, pm, err := m.pointDriver(d)
	return err == nil && pm.InVolume
}

// fingerprint is the state of v's live data (ok false: none under its
// live name).
func (m *Manager) fingerprint(v storage.Volume) (fingerprint, bool, error) {
	drv, p, err := m.driverOf(v)
	if err != nil {
		return fingerprint{}, false, err
	}
	return drv.Fingerprint(p, v)
}

// liveDisk is how the hypervisor captures one disk of a live point: the
// driver's live mechanism for the disk's method, as hvm/boot asks it.
func (m *Manager) liveDisk(ctx context.Context, v storage.Volume, dp DiskPoint, passFile bool) (boot.LiveDisk, storage.LivePoint, error) {
	drv, p, err := m.driverOf(v)
	if err != nil {
		return boot.LiveDisk{}, storage.LivePoint{}, err
	}
	lp, err := drv.LivePoint(ctx, p, v, dp.PointRef, storage.LiveOptions{PassFile: passFile})
	if err != nil {
		return boot.LiveDisk{}, lp, err
	}
	ld := boot.LiveDisk{Path: v.Path, Name: lp.Name, Target: lp.Target, Clone: lp.Clone, File: lp.File}
	switch lp.Mechanism {
	case storage.LiveInternal:
		ld.Method = boot.LiveInternal
	case storage.LiveClone:
		ld.Method = boot.LiveClone
	case storage.LiveBackup:
		ld.Method = boot.LiveBackup
	default:
		return ld, lp, fmt.Errorf("live point: mechanism %q", lp.Mechanism)
	}
	return ld, lp, nil
}

// spaceFor is the guardrail before a copy into pool p: refuse (with the
// caller's message) when the pool's driver reports less than need free.
func (m *Manager) spaceFor(ctx context.Context, p storage.Pool, need int64, refuse func(free int64) error) error {
	if skipSpaceCheck {
		return nil
	}
	drv, err := m.st.Driver(p)
	if err != nil {
		return err
	}
	return storage.EnsureSpace(ctx, drv, p, need, refuse)
}
