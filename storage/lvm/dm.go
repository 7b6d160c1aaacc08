package lvm

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage/dm"
)

// Device-mapper, read in-process (storage/dm). Every lvm command reads
// the VG's metadata from its disks and costs a process (0.3 to 1 s under
// emulation, tens of milliseconds on hardware); the kernel already knows
// what a guardrail asks of an active LV: its target (thin or not), its
// size and, for a thin pool, the used and total data and metadata
// blocks. QueryDM asks it with the DM_TABLE_STATUS ioctl, as `dmsetup
// table` and `dmsetup status` do. Only active LVs have a device: for
// others the driver asks lvs as before.

// DMQuery, DMTarget and DMDevice are storage/dm's, under the names this
// package has always given them.
type (
	DMQuery  = dm.Query
	DMTarget = dm.Target
	DMDevice = dm.Device
)

// QueryDM reads a device's table or status from the kernel.
// storage.ErrNotFound: no such device; storage.ErrNotSupported: no
// device-mapper here.
func QueryDM(q DMQuery) (DMDevice, error) { return dm.Status(q) }

// ThinPoolStatus is a thin-pool target's status (the kernel's
// Documentation/admin-guide/device-mapper/thin-provisioning.rst):
// metadata and data blocks used of total, and the pool's mode.
type ThinPoolStatus struct {
	UsedMetadata, TotalMetadata uint64
	UsedData, TotalData         uint64
	// Mode: rw; out_of_data_space (writes fail or queue); ro (metadata
	// read-only: the pool needs repair); Fail or Error.
	Mode string
}

// ParseThinPoolStatus reads a thin-pool target's status parameters:
// "<transaction id> <used>/<total metadata blocks> <used>/<total data
// blocks> <held root> rw|ro|out_of_data_space ...", or "Fail".
func ParseThinPoolStatus(params string) (ThinPoolStatus, error) {
	f := strings.Fields(params)
	if len(f) == 1 && (f[0] == "Fail" || f[0] == "Error") {
		return ThinPoolStatus{Mode: f[0]}, nil
	}
	if len(f) < 5 {
		return ThinPoolStatus{}, fmt.Errorf("thin-pool status %q: too short", params)
	}
	var s ThinPoolStatus
	pair := func(v string, used, total *uint64) error {
		a, b, ok := strings.Cut(v, "/")
		var e1, e2 error
		*used, e1 = strconv.ParseUint(a, 10, 64)
		*total, e2 = strconv.ParseUint(b, 10, 64)
		if !ok || e1 != nil || e2 != nil || *total == 0 {
			return fmt.Errorf("thin-pool status %q: blocks %q", params, v)
		}
		return nil
	}
	if err := pair(f[1], &s.UsedMetadata, &s.TotalMetadata); err != nil {
		return s, err
	}
	if err := pair(f[2], &s.UsedData, &s.TotalData); err != nil {
		return s, err
	}
	s.Mode = f[4]
	return s, nil
}

// DataPercent and MetadataPercent are what lvs reports as data_percent
// and metadata_percent.
func (s ThinPoolStatus) DataPercent() float64 { return percent(s.UsedData, s.TotalData) }

func (s ThinPoolStatus) MetadataPercent() float64 {
	return percent(s.UsedMetadata, s.TotalMetadata)
}

func percent(used, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(used) * 100 / float64(total)
}

// Health is lv_attr's health letter for the pool's mode: 'D' out of
// data space, 'M' metadata read-only, 'F' failed, '-' fine.
func (s ThinPoolStatus) Health() byte {
	switch s.Mode {
	case "out_of_data_space":
		return 'D'
	case "ro":
		return 'M'
	case "Fail", "Error":
		return 'F'
	}
	return '-'
}

// SplitDMName reverses the name LVM gives an LV's device-mapper device:
// VG-LV, or VG-LV-LAYER for a hidden layer (the thin pool's "tpool"),
// each part with its '-' doubled. ok is false for other names.
func SplitDMName(name string) (vg, lv, layer string, ok bool) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(name); i++ {
		switch {
		case name[i] != '-':
			cur.WriteByte(name[i])
		case i+1 < len(name) && name[i+1] == '-':
			cur.WriteByte('-')
			i++
		default:
			parts = append(parts, cur.String())
			cur.Reset()
		}
	}
	parts = append(parts, cur.String())
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], "", true
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "":
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// devOf is the device number of a block device node; ok is false when
// there is none (an inactive LV has no node).
func devOf(path string) (uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return uint64(st.Rdev), true
}

// parseDevNum reads "MAJOR:MINOR" as a table names a device.
func parseDevNum(s string) (uint64, bool) {
	a, b, ok := strings.Cut(s, ":")
	ma, e1 := strconv.ParseUint(a, 10, 32)
	mi, e2 := strconv.ParseUint(b, 10, 32)
	if !ok || e1 != nil || e2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(ma), uint32(mi)), true
}
