package lvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// Device-mapper, read in-process. Every lvm command reads the VG's
// metadata from its disks and costs a process (0.3 to 1 s under
// emulation, tens of milliseconds on hardware); the kernel already knows
// what a guardrail asks of an active LV: its target (thin or not), its
// size and, for a thin pool, the used and total data and metadata
// blocks. QueryDM asks it with the DM_TABLE_STATUS ioctl on
// /dev/mapper/control (linux/dm-ioctl.h), as `dmsetup table` and
// `dmsetup status` do. Only active LVs have a device: for others the
// driver asks lvs as before.

// DMQuery names a device-mapper device by its device number (Dev) or,
// when Dev is 0, by its name; Table asks for its table (`dmsetup
// table`) instead of its status (`dmsetup status`).
type DMQuery struct {
	Name  string
	Dev   uint64
	Table bool
}

// DMTarget is one line of a device's table or status.
type DMTarget struct {
	Start, Length uint64 // sectors
	Type          string // linear, thin, thin-pool, snapshot-origin...
	Params        string
}

// DMDevice is a device-mapper device and its targets.
type DMDevice struct {
	Name, UUID string
	Dev        uint64
	Targets    []DMTarget
}

// The parts of linux/dm-ioctl.h QueryDM uses.
const (
	dmHeaderSize   = 312 // sizeof(struct dm_ioctl)
	dmSpecSize     = 40  // sizeof(struct dm_target_spec)
	dmNameLen      = 128
	dmUUIDLen      = 129
	dmTableStatus  = 0xc138fd0c // _IOWR(0xfd, 12, struct dm_ioctl)
	dmStatusTable  = 1 << 4     // DM_STATUS_TABLE_FLAG
	dmBufferFull   = 1 << 8     // DM_BUFFER_FULL_FLAG
	dmNoFlush      = 1 << 11    // DM_NOFLUSH_FLAG
	dmVersionMajor = 4
)

// QueryDM reads a device's table or status from the kernel.
// storage.ErrNotFound: no such device; storage.ErrNotSupported: no
// device-mapper here.
func QueryDM(q DMQuery) (DMDevice, error) {
	if q.Dev == 0 && (q.Name == "" || len(q.Name) >= dmNameLen) {
		return DMDevice{}, storage.Errorf(storage.ErrInvalid, "device-mapper device %q: give a device number or a name", q.Name)
	}
	fd, err := unix.Open("/dev/mapper/control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return DMDevice{}, storage.Errorf(storage.ErrNotSupported, "device-mapper: /dev/mapper/control: %v", err)
	}
	defer unix.Close(fd)
	for size := 16 << 10; size <= 1<<20; size *= 4 {
		buf := make([]byte, size)
		le := binary.LittleEndian
		le.PutUint32(buf[0:], dmVersionMajor)
		le.PutUint32(buf[12:], uint32(size)) // data_size
		le.PutUint32(buf[16:], dmHeaderSize) // data_start
		le.PutUint64(buf[40:], q.Dev)        // dev
		// A thin pool's status commits its metadata first unless told
		// not to; lvs reports without that commit, and so does this.
		flags := uint32(dmNoFlush)
		if q.Table {
			flags = dmStatusTable
		}
		le.PutUint32(buf[28:], flags)
		if q.Dev == 0 {
			copy(buf[48:48+dmNameLen-1], q.Name)
		}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), dmTableStatus, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
			what := q.Name
			if q.Dev != 0 {
				what = fmt.Sprintf("%d:%d", unix.Major(q.Dev), unix.Minor(q.Dev))
			}
			if errno == unix.ENXIO || errno == unix.ENODEV || errno == unix.ENOENT {
				return DMDevice{}, storage.Errorf(storage.ErrNotFound, "device-mapper device %s not found", what)
			}
			return DMDevice{}, fmt.Errorf("device-mapper status of %s: %w", what, errno)
		}
		if le.Uint32(buf[28:])&dmBufferFull != 0 {
			continue
		}
		return parseDMReply(buf)
	}
	return DMDevice{}, errors.New("device-mapper: the status of the device does not fit in 1 MiB")
}

// parseDMReply decodes the dm_ioctl and target specs the kernel wrote.
func parseDMReply(buf []byte) (DMDevice, error) {
	le := binary.LittleEndian
	cstr := func(b []byte) string {
		if i := strings.IndexByte(string(b), 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	d := DMDevice{Dev: le.Uint64(buf[40:]), Name: cstr(buf[48 : 48+dmNameLen]), UUID: cstr(buf[176 : 176+dmUUIDLen])}
	start, count := int(le.Uint32(buf[16:])), int(le.Uint32(buf[20:])) // data_start, target_count
	off := start
	for i := 0; i < count; i++ {
		if off < 0 || off+dmSpecSize > len(buf) {
			return d, fmt.Errorf("device-mapper reply for %q: target %d out of bounds", d.Name, i)
		}
		s := buf[off:]
		d.Targets = append(d.Targets, DMTarget{Start: le.Uint64(s[0:]), Length: le.Uint64(s[8:]), Type: cstr(s[24:40]), Params: cstr(s[dmSpecSize:])})
		// next: from the first spec to the next one (DM_TABLE_STATUS).
		off = start + int(le.Uint32(s[20:]))
	}
	return d, nil
}

// single is a device's only target, of type typ.
func (d DMDevice) single(typ string) (DMTarget, bool) {
	if len(d.Targets) != 1 || d.Targets[0].Type != typ {
		return DMTarget{}, false
	}
	return d.Targets[0], true
}

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
