// Package image knows disk image files and devices: their format (from
// content, never from the name), sizes, partition tables, laying out a new
// partition table and filesystem (go-diskfs), and copying them sparsely.
//
// Invariants: an image whose format is known (declared by the admin or
// recorded by strata) is read as that format, never probed (InspectAs): a
// guest writes what it likes at the start of a raw disk. Images are opened
// without following symbolic links (OpenImage), and a volume's image is
// checked to be the file recorded before strata uses it (VerifyImage).
// qemu-img commands that only read run with -U (QemuImgRead).
package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/strata-vm/strata/storage"
)

// Other formats strata recognises but does not manage; import refuses them
// with a hint to convert.
var foreignMagic = []struct {
	off   int64
	magic []byte
	name  string
}{
	{0, []byte("KDMV"), "vmdk"},
	{0, []byte("# Disk DescriptorFile"), "vmdk"},
	{0, []byte("vhdxfile"), "vhdx"},
	{0, []byte("conectix"), "vpc"},
	{0, []byte("QED\x00"), "qed"},
	{0, []byte("LUKS\xba\xbe"), "luks"},
	{64, []byte{0x7f, 0x10, 0xda, 0xbe}, "vdi"},
}

// Info is what Inspect learns about an image file or block device.
type Info struct {
	Format         storage.Format
	Device         bool   // a block device
	VirtualSize    int64  // bytes the guest sees
	AllocatedBytes int64  // bytes the image occupies on the host
	BackingFile    string // qcow2 only; "" when none
	BackingFormat  string
	// DataFile is a qcow2 image's external data file (where its guest
	// data lives instead of in the image); "" when none.
	DataFile string
}

// Inspect reads the format and sizes of path, the format from its content:
// only for an image nothing else is known about (an import without a
// declared format). It is O(1) in the image's size: it reads headers only.
func Inspect(path string) (Info, error) { return inspect(path, "") }

// InspectAs reads the sizes of an image whose format is known (a volume
// strata recorded). A raw image is never read as anything else: what a
// guest writes at the start of its raw disk (a qcow2 header naming a host
// file as its backing file, say) must not change how the host opens it.
func InspectAs(path string, format storage.Format) (Info, error) { return inspect(path, format) }

func inspect(path string, known storage.Format) (Info, error) {
	if err := checkPseudoFS(path); err != nil {
		return Info{}, err
	}
	// What it is, before opening it: opening a FIFO would block.
	st, err := os.Lstat(path)
	if err == nil && st.Mode()&os.ModeSymlink != 0 {
		if dev, ok := devLink(path); ok {
			st, err = os.Lstat(dev) // a block device's stable name
		}
	}
	if err != nil {
		return Info{}, openError(path, err)
	}
	var info Info
	switch {
	case st.Mode().IsRegular():
		info.AllocatedBytes = st.Sys().(*syscall.Stat_t).Blocks * 512
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		info.Device = true
	case st.Mode()&os.ModeSymlink != 0:
		return Info{}, storage.Errorf(storage.ErrPrecondition, "%q is a symbolic link%s, which strata never follows to an image: give the path of the file itself", path, linkTarget(path))
	default:
		return Info{}, storage.Errorf(storage.ErrInvalid, "%q is neither a regular file nor a block device", path)
	}
	f, err := OpenImage(path, os.O_RDONLY)
	if err != nil {
		return Info{}, openError(path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Info{}, fmt.Errorf("size of %q: %w", path, err)
	}
	if info.Device {
		info.AllocatedBytes = size
	}
	if known != "" && known != storage.FormatQcow2 {
		info.Format, info.VirtualSize = known, size
		return info, nil
	}
	head := make([]byte, 34816)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return Info{}, fmt.Errorf("read %q: %w", path, err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		q, err := parseQcow2Header(f, head, size)
		if err != nil {
			return Info{}, fmt.Errorf("%q: %w", path, err)
		}
		info.Format, info.VirtualSize, info.BackingFile = storage.FormatQcow2, q.size, q.backing
		info.BackingFormat, info.DataFile = q.backingFormat, q.dataFile
		return info, nil
	case known == storage.FormatQcow2:
		return Info{}, storage.Errorf(storage.ErrPrecondition, "%q was recorded as a qcow2 image but no longer has a qcow2 header: restore it from a backup or a restore point", path)
	case len(head) >= 32774 && string(head[32769:32774]) == "CD001":
		info.Format = storage.FormatISO
	default:
		for _, m := range foreignMagic {
			if int64(len(head)) >= m.off+int64(len(m.magic)) && bytes.Equal(head[m.off:m.off+int64(len(m.magic))], m.magic) {
				return Info{}, storage.Errorf(storage.ErrNotSupported, "%q is a %s image, which strata does not manage: convert it with 'qemu-img convert -O qcow2 %s NEW.qcow2' and import that", path, m.name, path)
			}
		}
		info.Format = storage.FormatRaw
	}
	info.VirtualSize = size
	return info, nil
}

func openError(path string, err error) error {
	if isLinkError(err) {
		return storage.Errorf(storage.ErrPrecondition, "%q is reached through a symbolic link%s, which strata never follows to an image: give the path of the file itself", path, linkTarget(path))
	}
	if os.IsNotExist(err) {
		return storage.Errorf(storage.ErrNotFound, "%q does not exist", path)
	}
	if os.IsPermission(err) {
		return storage.Errorf(storage.ErrPrecondition, "cannot read %q: permission denied", path)
	}
	return fmt.Errorf("open %q: %w", path, err)
}

type qcow2Header struct {
	size          int64
	backing       string
	backingFormat string
	dataFile      string
}

// qcow2 header extensions and feature bits strata reads.
const (
	extBackingFormat = 0xE2792ACA
	extDataFile      = 0x44415441
	incompatDataFile = 1 << 2
)

// parseQcow2Header reads the fields strata needs from a qcow2 header
// (QEMU's docs/interop/qcow2.txt): version, size, backing file name and,
// from the header extensions, the backing format and external data file.
// A header whose tables lie past the end of the file (fileSize bytes) is
// refused as damaged: qemu-img would fail on it later, half way through.
func parseQcow2Header(r io.ReaderAt, head []byte, fileSize int64) (qcow2Header, error) {
	if len(head) < 72 {
		return qcow2Header{}, storage.Errorf(storage.ErrPrecondition, "damaged qcow2 image: its header is truncated (%d bytes): restore it from a backup", len(head))
	}
	be := binary.BigEndian
	version := be.Uint32(head[4:])
	if version < 2 {
		return qcow2Header{}, storage.Errorf(storage.ErrNotSupported, "qcow version %d is not supported: convert it with qemu-img convert -O qcow2", version)
	}
	damaged := func(what string, off, n uint64) error {
		return storage.Errorf(storage.ErrPrecondition, "damaged qcow2 image: its %s (%d bytes at offset %d) lies past the end of the file (%d bytes); check it with 'qemu-img check', or restore it from a backup", what, n, off, fileSize)
	}
	past := func(off, n uint64) bool { return off > uint64(fileSize) || n > uint64(fileSize)-off }
	clusterBits := be.Uint32(head[20:])
	if clusterBits < 9 || clusterBits > 21 {
		return qcow2Header{}, storage.Errorf(storage.ErrPrecondition, "damaged qcow2 image: cluster bits %d (valid: 9 to 21); check it with 'qemu-img check'", clusterBits)
	}
	if off, n := be.Uint64(head[40:]), uint64(be.Uint32(head[36:]))*8; n > 0 && past(off, n) {
		return qcow2Header{}, damaged("L1 table", off, n)
	}
	if off, n := be.Uint64(head[48:]), uint64(be.Uint32(head[56:]))<<clusterBits; past(off, n) {
		return qcow2Header{}, damaged("refcount table", off, n)
	}
	if off, n := be.Uint64(head[64:]), be.Uint32(head[60:]); n > 0 && past(off, 1) {
		return qcow2Header{}, damaged("snapshot table", off, 1)
	}
	h := qcow2Header{size: int64(be.Uint64(head[24:]))}
	if off, n := be.Uint64(head[8:]), be.Uint32(head[16:]); off != 0 && n > 0 {
		if n > 1023 {
			return h, storage.Errorf(storage.ErrPrecondition, "damaged qcow2 image: its backing file name is %d bytes long (at most 1023)", n)
		}
		if past(off, uint64(n)) {
			return h, damaged("backing file name", off, uint64(n))
		}
		buf := make([]byte, n)
		if _, err := r.ReadAt(buf, int64(off)); err != nil {
			return h, fmt.Errorf("read backing file name: %w", err)
		}
		h.backing = string(buf)
	}
	// Header extensions follow the header (72 bytes for v2, header_length
	// for v3).
	extOff := 72
	if version >= 3 && len(head) >= 104 {
		extOff = int(be.Uint32(head[100:]))
		if be.Uint64(head[72:])&incompatDataFile != 0 {
			h.dataFile = "(an external data file)" // named by the extension below
		}
	}
	for extOff >= 0 && extOff+8 <= len(head) {
		typ, l := be.Uint32(head[extOff:]), int(be.Uint32(head[extOff+4:]))
		if typ == 0 || l < 0 || extOff+8+l > len(head) {
			break
		}
		switch typ {
		case extBackingFormat:
			h.backingFormat = string(head[extOff+8 : extOff+8+l])
		case extDataFile:
			h.dataFile = string(head[extOff+8 : extOff+8+l])
		}
		extOff += 8 + (l+7)/8*8
	}
	return h, nil
}
