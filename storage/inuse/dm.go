package inuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/dm"
)

// DeviceMapper finds the users of a device-mapper device (an LV, a thin
// LV, a snapshot, a kpartx map: any dm device) that no process file
// shows: it reads the device's open count from the kernel (DM_DEV_STATUS,
// what `lvs -o lv_device_open` and `dmsetup info` report). The block
// layer counts every open of the device, whoever and wherever the opener
// is: a process in another PID namespace (a QEMU in a container, or
// strata itself in one), a process of another user that hidepid hides,
// a mounted filesystem, a loop device over it, a dm device stacked on
// it. An open beyond strata's own is a holder.
//
// Strata's own opens are subtracted, counted from its file descriptors
// at that moment: the hold (Hold) keeps the device open while the check
// runs, and must not make strata refuse its own work. A descriptor opened
// with O_PATH opens no device and is not counted; descriptors that share
// one open file (dup) count once (kcmp), as the kernel counts them. So
// the source must run alone: in Checker.First, after any source that
// ends processes (the others open the image while they look, which would
// count). An open that lasts milliseconds (udev's blkid after a change,
// lvs scanning) is waited out: a count above strata's own is read again
// 20 and 60 ms after the first look, and only a count that stays is a
// holder.
//
// The dm devices stacked on the device (/sys/dev/block/M:m/holders: a
// kpartx map of a guest's partitions, dm-crypt, a device an admin made
// with dmsetup) are part of its open count and are named. A thick LV's
// own restore points are not among them (classic snapshots stack on the
// LV's hidden -real layer, never on the LV), nor are a thin LV's (thin
// snapshots are devices of their own in the pool), so points never make
// a volume in use. The other opens are reported as one holder strata
// cannot name, unless another source names a holder of the image (then
// that one is reported: a mount (BlockClaim), a loop device
// (LoopDevices), a QEMU (Processes)).
//
// A path that is a symbolic link (/dev/VG/LV, /dev/disk/by-id/...) is
// followed by this source alone, to a block device only: opened once
// with O_PATH (which opens no device) and fstat'ed, so the answer is
// about the device the link led to then, whatever the link says later.
// An image whose Lstat found a regular file, a directory or a character
// device costs nothing: no system call. A block device is checked
// against device-mapper's major number (read from /proc/devices once per
// process, again while it has none): on a host without device-mapper,
// or for a loop or disk device, that is the whole cost.
type DeviceMapper struct {
	// Info reads a device's header (nil: dm.Info, the kernel).
	Info func(dm.Query) (dm.Device, error)
	// Sys is the sysfs root ("": /sys).
	Sys string
	// Major is device-mapper's block major number (0: read from
	// /proc/devices).
	Major uint32
	// Settle is how long apart a count above strata's own is read
	// again (0: 20 ms, doubled once).
	Settle time.Duration
}

// dmUnseen starts the How of the holder DeviceMapper cannot name.
const dmUnseen = "device-mapper counts "

// Holders implements Source.
func (d DeviceMapper) Holders(_ context.Context, imgs []Image) ([][]Holder, error) {
	out := make([][]Holder, len(imgs))
	done := map[uint64][]Holder{}
	for i, img := range imgs {
		dev, ok := blockDev(img)
		if !ok || !d.isDM(dev) {
			continue
		}
		hs, seen := done[dev]
		if !seen {
			var err error
			if hs, err = d.holdersOf(img.Path, dev); err != nil {
				return nil, err
			}
			done[dev] = hs
		}
		out[i] = hs
	}
	return out, nil
}

// blockDev is the device number of the block device at img: from the
// checker's Lstat, or, for a link, from the device it leads to now.
func blockDev(img Image) (uint64, bool) {
	if img.st != nil {
		m := img.st.Mode()
		if m&os.ModeDevice == 0 || m&os.ModeCharDevice != 0 {
			return 0, false
		}
		sys, ok := img.st.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, false
		}
		return uint64(sys.Rdev), true
	}
	if !img.link {
		return 0, false
	}
	fd, err := unix.Open(img.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false // dangling: nothing there to hold
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return st.Rdev, true
}

// dmMajor is device-mapper's major number once read (0: not yet, or no
// device-mapper then).
var dmMajor atomic.Uint32

func (d DeviceMapper) isDM(dev uint64) bool {
	major := d.Major
	if major == 0 {
		if major = dmMajor.Load(); major == 0 {
			major = readDMMajor("/proc/devices")
			dmMajor.Store(major)
		}
	}
	return major != 0 && unix.Major(dev) == major
}

// readDMMajor finds "N device-mapper" among the block devices of
// /proc/devices (0: none, device-mapper is not loaded). Read with plain
// system calls (open, read, close): no poller for a file read once.
func readDMMajor(path string) uint32 {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	var raw []byte
	buf := make([]byte, 4096)
	for len(raw) < 1<<16 {
		n, err := unix.Read(fd, buf)
		if n <= 0 || err != nil {
			break
		}
		raw = append(raw, buf[:n]...)
	}
	block := false
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, ":") {
			block = line == "Block devices:"
			continue
		}
		n, name, ok := strings.Cut(line, " ")
		if block && ok && strings.TrimSpace(name) == "device-mapper" {
			if m, err := strconv.ParseUint(n, 10, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0
}

// holdersOf is who holds dm device dev besides strata.
func (d DeviceMapper) holdersOf(path string, dev uint64) ([]Holder, error) {
	info := d.Info
	if info == nil {
		info = dm.Info
	}
	settle := d.Settle
	if settle <= 0 {
		settle = 20 * time.Millisecond
	}
	var others int
	for try := 0; ; try++ {
		h, err := info(dm.Query{Dev: dev})
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil // removed meanwhile
		}
		if errors.Is(err, storage.ErrNotSupported) {
			// /dev/mapper/control not ours to open (not root): the
			// other sources answer alone.
			log.Debug().Err(err).Str("image", path).Msg("the device-mapper open count cannot be read")
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("look for the users of %q: %w", path, err)
		}
		others = h.OpenCount - ownOpens(dev)
		if others <= 0 {
			return nil, nil
		}
		if try == 2 {
			break
		}
		time.Sleep(settle << try)
	}
	hs := d.stacked(dev)
	if n := others - len(hs); n > 0 {
		opens := "opens"
		if n == 1 {
			opens = "open"
		}
		hs = append(hs, Holder{How: fmt.Sprintf("%s%d %s of the device that strata cannot name (a process in another PID namespace or hidden from strata, a mounted filesystem, a loop device, or another kernel user)", dmUnseen, n, opens)})
	}
	return hs, nil
}

// stacked names the block devices the kernel lists as holders of dev (dm
// or md devices made on top of it), by their device-mapper name where
// they have one.
func (d DeviceMapper) stacked(dev uint64) []Holder {
	sys := d.Sys
	if sys == "" {
		sys = "/sys"
	}
	dir := fmt.Sprintf("%s/dev/block/%d:%d/holders", sys, unix.Major(dev), unix.Minor(dev))
	names, _ := os.ReadDir(dir)
	var out []Holder
	for _, e := range names {
		name := e.Name()
		if raw, err := os.ReadFile(filepath.Join(dir, name, "dm", "name")); err == nil && strings.TrimSpace(string(raw)) != "" {
			name = strings.TrimSpace(string(raw))
		}
		out = append(out, Holder{Toolstack: "device-mapper", Domain: name, How: "stacked on the device (remove it when done: dmsetup remove, kpartx -d, or deactivate it)"})
	}
	return out
}

// ownOpens counts strata's own opens of block device dev: its file
// descriptors on it, one per open file (dup'd descriptors share one, as
// kcmp tells), O_PATH ones aside.
func ownOpens(dev uint64) int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	dfd := int(d.Fd())
	var mine []int
	for _, name := range names {
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, 0) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != dev {
			continue
		}
		fd := atoi(name)
		if fd < 0 || pathOnly(fd) {
			continue
		}
		dup := false
		for _, other := range mine {
			if sameFile(fd, other) {
				dup = true
				break
			}
		}
		if !dup {
			mine = append(mine, fd)
		}
	}
	return len(mine)
}

// pathOnly tells whether fd was opened with O_PATH (no open of the
// device itself).
func pathOnly(fd int) bool {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && flags&unix.O_PATH != 0
}

// sameFile tells whether two of strata's descriptors share one open file
// (kcmp KCMP_FILE); where kcmp is missing they are taken as two opens.
func sameFile(a, b int) bool {
	pid := uintptr(os.Getpid())
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, pid, pid, kcmpFile, uintptr(a), uintptr(b), 0)
	return errno == 0 && r == 0
}

// kcmpFile is KCMP_FILE of linux/kcmp.h.
const kcmpFile = 0
