package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// ISO9660 (ECMA-119) and El Torito layout: volume descriptors are 2048-byte
// sectors from sector 16 on, whatever the logical block size.
const (
	sectorSize      = 2048
	descriptorStart = 16 * sectorSize
	maxDescriptors  = 64 // a real image has 2 to 5; bounds a corrupt one

	vdBoot       = 0
	vdPrimary    = 1
	vdTerminator = 255

	elToritoID = "EL TORITO SPECIFICATION"
)

// Header is what an image's volume descriptors say.
type Header struct {
	Label     string // volume identifier, padding removed
	BlockSize int64  // logical block size in bytes
	Blocks    int64  // volume space size in logical blocks
	// CatalogOffset is the byte offset of the El Torito boot catalog; 0
	// when the image has no boot record.
	CatalogOffset int64
	// UDF: the image carries UDF volume recognition (NSR02/NSR03), as a
	// UDF bridge image does.
	UDF bool
}

// Size is the filesystem's size in bytes.
func (h Header) Size() int64 { return h.Blocks * h.BlockSize }

// ReadHeader reads the volume descriptors of an ISO9660 image. It fails
// with storage.ErrInvalid when r holds no ISO9660 filesystem and with
// storage.ErrNotSupported when it holds a UDF filesystem without the ISO9660
// bridge (strata cannot size those). what names r in messages.
func ReadHeader(r io.ReaderAt, what string) (Header, error) {
	var h Header
	found, udf, ended := false, false, false
	sec := make([]byte, sectorSize)
	for i := 0; i < maxDescriptors; i++ {
		off := int64(descriptorStart + i*sectorSize)
		n, err := r.ReadAt(sec, off)
		if n < len(sec) {
			if i == 0 && (err == nil || errors.Is(err, io.EOF)) {
				return h, storage.Errorf(storage.ErrInvalid, "%q has no ISO9660 filesystem: it is too small (%d bytes) to hold one; use --raw to capture it as it is", what, off+int64(n))
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return h, fmt.Errorf("read the volume descriptors of %q: %w", what, err)
			}
			break
		}
		id := string(sec[1:6])
		if ended && id == "CD001" {
			// after the ISO9660 set's terminator only the UDF volume
			// recognition sequence is looked for
			continue
		}
		switch id {
		case "CD001":
		case "BEA01", "NSR02", "NSR03", "BOOT2", "CDW02":
			udf = udf || strings.HasPrefix(id, "NSR")
			h.UDF = udf
			continue
		case "TEA01":
			i = maxDescriptors
			continue
		default:
			i = maxDescriptors
			continue
		}
		switch sec[0] {
		case vdPrimary:
			if found {
				continue
			}
			found = true
			h.Label = trimLabel(sec[40:72])
			h.Blocks = int64(binary.LittleEndian.Uint32(sec[80:84]))
			h.BlockSize = int64(binary.LittleEndian.Uint16(sec[128:130]))
		case vdBoot:
			if h.CatalogOffset == 0 && string(bytes.TrimRight(sec[7:39], "\x00 ")) == elToritoID {
				h.CatalogOffset = int64(binary.LittleEndian.Uint32(sec[71:75])) * sectorSize
			}
		case vdTerminator:
			ended = true
		}
	}
	switch {
	case !found && udf:
		return h, storage.Errorf(storage.ErrNotSupported, "%q holds a UDF filesystem without an ISO9660 one, which strata cannot size: capture the whole source with --raw", what)
	case !found:
		return h, storage.Errorf(storage.ErrInvalid, "%q has no ISO9660 filesystem (no primary volume descriptor at byte %d): give an ISO image or a drive holding a data disc, or use --raw to capture it as it is", what, descriptorStart)
	case h.BlockSize < 512 || h.BlockSize > 8192 || h.BlockSize&(h.BlockSize-1) != 0:
		return h, storage.Errorf(storage.ErrInvalid, "%q has a corrupt ISO9660 primary volume descriptor (logical block size %d): use --raw to capture it as it is", what, h.BlockSize)
	case h.Size() < descriptorStart+2*sectorSize:
		return h, storage.Errorf(storage.ErrInvalid, "%q has a corrupt ISO9660 primary volume descriptor (volume size %d blocks): use --raw to capture it as it is", what, h.Blocks)
	}
	return h, nil
}

// trimLabel removes the space or NUL padding of an identifier field.
func trimLabel(b []byte) string {
	return strings.TrimRight(string(b), " \x00")
}

// ImageSize is how many bytes of a source make up the image whose header
// is h: the filesystem, extended to cover partitions that a hybrid image
// (xorriso -append_partition, as distributions make for EFI) appends after
// it, as the MBR or the GPT in the system area records them. Extents past
// sourceSize are ignored (a stale or foreign table), never trusted.
func ImageSize(r io.ReaderAt, h Header, sourceSize int64) int64 {
	size := h.Size()
	grow := func(end int64) {
		if end > size && end <= sourceSize {
			size = end
		}
	}
	head := make([]byte, 1024)
	if n, _ := r.ReadAt(head, 0); n < len(head) {
		return size
	}
	if head[510] == 0x55 && head[511] == 0xaa {
		for i := 0; i < 4; i++ {
			e := head[446+16*i : 462+16*i]
			typ := e[4]
			start, count := int64(binary.LittleEndian.Uint32(e[8:12])), int64(binary.LittleEndian.Uint32(e[12:16]))
			if typ == 0 || typ == 0xee || count == 0 {
				continue
			}
			grow((start + count) * 512)
		}
	}
	// A GPT header at LBA 1 records where its backup header lies: the last
	// sector of the image.
	if string(head[512:520]) == "EFI PART" {
		alt := binary.LittleEndian.Uint64(head[512+32 : 512+40])
		if alt < 1<<40 {
			grow(int64(alt+1) * 512)
		}
	}
	return size
}

// BootEntry is one El Torito boot catalog entry.
type BootEntry struct {
	// Platform: bios, efi, ppc, mac or the platform ID as 0xNN.
	Platform string `json:"platform"`
	// Emulation: none, floppy-1.2m, floppy-1.44m, floppy-2.88m or hard-disk.
	Emulation string `json:"emulation"`
	// Bootable is the entry's boot indicator; firmware skips entries
	// without it.
	Bootable    bool   `json:"bootable"`
	LoadSegment uint16 `json:"load_segment"`
	// SectorCount is how many 512-byte sectors the firmware loads.
	SectorCount uint16 `json:"sector_count"`
	// Offset is the boot image's byte offset in the ISO.
	Offset int64 `json:"offset"`
	// File is the boot image's path in the filesystem; "" when it is not
	// a visible file.
	File string `json:"file"`
}

var platforms = map[byte]string{0x00: "bios", 0x01: "ppc", 0x02: "mac", 0xef: "efi"}

var emulations = []string{"none", "floppy-1.2m", "floppy-1.44m", "floppy-2.88m", "hard-disk"}

// ReadBootEntries reads the El Torito boot catalog of an image whose header
// is h: the default entry and every section entry. It returns an empty list
// for an image without a boot record.
func ReadBootEntries(r io.ReaderAt, h Header, what string) ([]BootEntry, error) {
	out := []BootEntry{}
	if h.CatalogOffset == 0 {
		return out, nil
	}
	cat := make([]byte, sectorSize)
	if n, err := r.ReadAt(cat, h.CatalogOffset); n < len(cat) {
		return out, fmt.Errorf("read the El Torito boot catalog of %q at byte %d: %w", what, h.CatalogOffset, err)
	}
	if cat[0] != 1 || cat[30] != 0x55 || cat[31] != 0xaa {
		return out, storage.Errorf(storage.ErrInvalid, "%q has a corrupt El Torito boot catalog at byte %d (no validation entry)", what, h.CatalogOffset)
	}
	entry := func(e []byte, platform byte) BootEntry {
		be := BootEntry{Platform: platforms[platform], Bootable: e[0] == 0x88}
		if be.Platform == "" {
			be.Platform = fmt.Sprintf("0x%02x", platform)
		}
		if m := int(e[1] & 0x0f); m < len(emulations) {
			be.Emulation = emulations[m]
		} else {
			be.Emulation = fmt.Sprintf("0x%02x", m)
		}
		be.LoadSegment = binary.LittleEndian.Uint16(e[2:4])
		be.SectorCount = binary.LittleEndian.Uint16(e[6:8])
		be.Offset = int64(binary.LittleEndian.Uint32(e[8:12])) * sectorSize
		return be
	}
	out = append(out, entry(cat[32:64], cat[1]))
	for p := 64; p+32 <= len(cat); {
		hdr := cat[p : p+32]
		if hdr[0] != 0x90 && hdr[0] != 0x91 {
			break
		}
		platform, count := hdr[1], int(binary.LittleEndian.Uint16(hdr[2:4]))
		p += 32
		for i := 0; i < count && p+32 <= len(cat); i++ {
			out = append(out, entry(cat[p:p+32], platform))
			p += 32
			for p+32 <= len(cat) && cat[p] == 0x44 { // extension entries
				p += 32
			}
		}
		if hdr[0] == 0x91 {
			break
		}
	}
	return out, nil
}
