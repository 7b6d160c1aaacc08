// Package dm reads device-mapper devices from the kernel, in-process:
// the DM_DEV_STATUS and DM_TABLE_STATUS ioctls on /dev/mapper/control
// (linux/dm-ioctl.h), as dmsetup info, table and status do, without a
// process or LVM's metadata scan. The lvm pool driver reads a volume's
// table and a thin pool's usage with it; the in-use check reads how many
// times a device is open.
//
// Vocabulary (device-mapper's own):
//
//   - Device: a dm device (an LV, a thin LV, a snapshot and its -real
//     and -cow layers, a kpartx map...), named by its device number or
//     its name (LVM's VG-LV, '-' doubled in each part).
//   - Target: one line of its table: a range of sectors, a target type
//     (linear, thin, thin-pool, snapshot-origin...) and its parameters;
//     a status gives the same lines with the target's state instead.
//   - Open count: how many times the device is open now. The block
//     layer asks device-mapper at every open of the device (a file
//     descriptor's open, a mount, a loop device over it, a dm device
//     stacked on it), whoever and wherever the opener is: it is the
//     number `lvs -o lv_device_open` and `dmsetup info` show.
//
// Invariants: a query never changes a device (a thin pool's status is
// asked without committing its metadata, as lvs does); a host with no
// device-mapper answers storage.ErrNotSupported, a device it does not
// know storage.ErrNotFound.
package dm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// Control is device-mapper's control node.
const Control = "/dev/mapper/control"

// Query names a device by its device number (Dev) or, when Dev is 0,
// by its name; Table asks for its table (`dmsetup table`) instead of
// its status (`dmsetup status`).
type Query struct {
	Name  string
	Dev   uint64
	Table bool
}

// Target is one line of a device's table or status.
type Target struct {
	Start, Length uint64 // sectors
	Type          string // linear, thin, thin-pool, snapshot-origin...
	Params        string
}

// Device is a device-mapper device: what every reply's header says, and
// the targets of a table or status reply.
type Device struct {
	Name, UUID string
	Dev        uint64
	// OpenCount is how many times the device is open now (see the
	// package doc).
	OpenCount int
	// Suspended: I/O to the device is held (dmsetup suspend, or a
	// table being swapped).
	Suspended bool
	Targets   []Target
}

// Single is the device's only target if it is of type typ.
func (d Device) Single(typ string) (Target, bool) {
	if len(d.Targets) != 1 || d.Targets[0].Type != typ {
		return Target{}, false
	}
	return d.Targets[0], true
}

// The parts of linux/dm-ioctl.h this package uses: struct dm_ioctl's
// layout (version[3] u32 at 0, data_size 12, data_start 16, target_count
// 20, open_count 24, flags 28, event_nr 32, dev u64 at 40, name 48, uuid
// 176) and struct dm_target_spec's (sector_start 0, length 8, status 16,
// next 20, target_type 24).
const (
	HeaderSize    = 312 // sizeof(struct dm_ioctl)
	specSize      = 40  // sizeof(struct dm_target_spec)
	nameLen       = 128
	uuidLen       = 129
	ioctlDevStat  = 0xc138fd07 // _IOWR(0xfd, DM_DEV_STATUS_CMD 7, struct dm_ioctl)
	ioctlTableSt  = 0xc138fd0c // _IOWR(0xfd, DM_TABLE_STATUS_CMD 12, struct dm_ioctl)
	flagSuspend   = 1 << 1     // DM_SUSPEND_FLAG
	flagStatusTbl = 1 << 4     // DM_STATUS_TABLE_FLAG
	flagBufFull   = 1 << 8     // DM_BUFFER_FULL_FLAG
	flagNoFlush   = 1 << 11    // DM_NOFLUSH_FLAG
	versionMajor  = 4
)

// Status reads a device's table or status (its targets) from the kernel.
func Status(q Query) (Device, error) {
	return ask(q, ioctlTableSt, 16<<10)
}

// Info reads a device's header alone (DM_DEV_STATUS, `dmsetup info`):
// name, UUID, open count, suspended. It costs the kernel no target's
// status (a thin pool's walks its metadata).
func Info(q Query) (Device, error) {
	return ask(q, ioctlDevStat, HeaderSize)
}

func ask(q Query, ioctl uintptr, size int) (Device, error) {
	if q.Dev == 0 && (q.Name == "" || len(q.Name) >= nameLen) {
		return Device{}, storage.Errorf(storage.ErrInvalid, "device-mapper device %q: give a device number or a name", q.Name)
	}
	fd, err := unix.Open(Control, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Device{}, storage.Errorf(storage.ErrNotSupported, "device-mapper: %s: %v", Control, err)
	}
	defer unix.Close(fd)
	for ; size <= 1<<20; size *= 4 {
		buf := request(q, size, ioctl == ioctlTableSt)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctl, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
			what := q.Name
			if q.Dev != 0 {
				what = fmt.Sprintf("%d:%d", unix.Major(q.Dev), unix.Minor(q.Dev))
			}
			if errno == unix.ENXIO || errno == unix.ENODEV || errno == unix.ENOENT {
				return Device{}, storage.Errorf(storage.ErrNotFound, "device-mapper device %s not found", what)
			}
			return Device{}, fmt.Errorf("device-mapper status of %s: %w", what, errno)
		}
		if binary.LittleEndian.Uint32(buf[28:])&flagBufFull != 0 {
			continue
		}
		if ioctl == ioctlDevStat {
			// Its target_count counts the live table's targets, but
			// no target spec follows.
			return ParseHeader(buf)
		}
		return ParseReply(buf)
	}
	return Device{}, errors.New("device-mapper: the status of the device does not fit in 1 MiB")
}

// request is the dm_ioctl of a query in a buffer of size bytes.
func request(q Query, size int, targets bool) []byte {
	buf := make([]byte, max(size, HeaderSize))
	le := binary.LittleEndian
	le.PutUint32(buf[0:], versionMajor)
	le.PutUint32(buf[12:], uint32(len(buf))) // data_size
	le.PutUint32(buf[16:], HeaderSize)       // data_start
	le.PutUint64(buf[40:], q.Dev)
	if targets {
		// A thin pool's status commits its metadata first unless told
		// not to; lvs reports without that commit, and so does this.
		flags := uint32(flagNoFlush)
		if q.Table {
			flags = flagStatusTbl
		}
		le.PutUint32(buf[28:], flags)
	}
	if q.Dev == 0 {
		copy(buf[48:48+nameLen-1], q.Name)
	}
	return buf
}

func cstr(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// ParseHeader decodes the dm_ioctl header of a reply (DM_DEV_STATUS's
// whole reply).
func ParseHeader(buf []byte) (Device, error) {
	if len(buf) < HeaderSize {
		return Device{}, fmt.Errorf("device-mapper reply of %d bytes: shorter than its header", len(buf))
	}
	le := binary.LittleEndian
	return Device{Dev: le.Uint64(buf[40:]), Name: cstr(buf[48 : 48+nameLen]), UUID: cstr(buf[176 : 176+uuidLen]),
		OpenCount: int(int32(le.Uint32(buf[24:]))), Suspended: le.Uint32(buf[28:])&flagSuspend != 0}, nil
}

// ParseReply decodes the header and the target specs the kernel wrote
// into a DM_TABLE_STATUS reply.
func ParseReply(buf []byte) (Device, error) {
	d, err := ParseHeader(buf)
	if err != nil {
		return d, err
	}
	le := binary.LittleEndian
	start, count := int(le.Uint32(buf[16:])), int(le.Uint32(buf[20:])) // data_start, target_count
	off := start
	for i := 0; i < count; i++ {
		if off < 0 || off+specSize > len(buf) {
			return d, fmt.Errorf("device-mapper reply for %q: target %d out of bounds", d.Name, i)
		}
		s := buf[off:]
		d.Targets = append(d.Targets, Target{Start: le.Uint64(s[0:]), Length: le.Uint64(s[8:]), Type: cstr(s[24:40]), Params: cstr(s[specSize:])})
		// next: from the first spec to the next one (DM_TABLE_STATUS).
		off = start + int(le.Uint32(s[20:]))
	}
	return d, nil
}
