package image

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"github.com/sirupsen/logrus"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

func init() {
	// go-diskfs logs through logrus; strata's output is its own.
	logrus.SetOutput(io.Discard)
}

// Partitions reads the partition table of a raw image or device, or of a
// qcow2 image through its first MiB (extracted with qemu-img dd). kind is
// "gpt", "mbr" or "none".
func Partitions(ctx context.Context, path string, info Info) (kind string, parts []storage.Partition, err error) {
	var r partitionReader
	switch info.Format {
	case storage.FormatRaw:
		f, err := OpenImage(path, os.O_RDONLY)
		if err != nil {
			return "", nil, openError(path, err)
		}
		defer f.Close()
		r = f
	case storage.FormatQcow2:
		head, err := qcow2Head(ctx, path, 1<<20)
		if err != nil {
			return "", nil, err
		}
		r = &headFile{head: head, size: info.VirtualSize}
	default:
		return "none", []storage.Partition{}, nil
	}
	table, err := partition.Read(r, 512, 512)
	if err != nil {
		return "none", []storage.Partition{}, nil
	}
	parts = []storage.Partition{}
	for _, p := range table.GetPartitions() {
		sp := storage.Partition{Index: p.GetIndex(), Start: p.GetStart(), Size: p.GetSize()}
		switch q := p.(type) {
		case *gpt.Partition:
			if q.Type == gpt.Unused {
				continue
			}
			sp.Type, sp.Name = string(q.Type), q.Name
		case *mbr.Partition:
			if q.Type == mbr.Empty {
				continue
			}
			sp.Type = fmt.Sprintf("0x%02x", byte(q.Type))
		}
		parts = append(parts, sp)
	}
	return table.Type(), parts, nil
}

type partitionReader interface {
	fs.File
	io.ReaderAt
	io.Seeker
}

// qcow2Head returns the first n guest bytes of a qcow2 image.
func qcow2Head(ctx context.Context, path string, n int) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "strata-head-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "head")
	argv := QemuImgRead("dd", "-f", "qcow2", "-O", "raw", "bs=65536", fmt.Sprintf("count=%d", n/65536), "if="+path, "of="+out)
	if err := run.Run(ctx, nil, nil, argv...); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// headFile is a read-only disk whose first bytes are known and whose rest
// reads as zeros: enough for partition.Read, which reads the primary table.
type headFile struct {
	head []byte
	size int64
	pos  int64
}

func (h *headFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= h.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := h.size - off; int64(n) > rest {
		n = int(rest)
	}
	clear(p[:n])
	if off < int64(len(h.head)) {
		copy(p[:n], h.head[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *headFile) Read(p []byte) (int, error) {
	n, err := h.ReadAt(p, h.pos)
	h.pos += int64(n)
	return n, err
}

func (h *headFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		h.pos = off
	case io.SeekCurrent:
		h.pos += off
	case io.SeekEnd:
		h.pos = h.size + off
	}
	return h.pos, nil
}

func (h *headFile) Close() error               { return nil }
func (h *headFile) Stat() (fs.FileInfo, error) { return headInfo{h.size}, nil }

type headInfo struct{ size int64 }

func (i headInfo) Name() string       { return "head" }
func (i headInfo) Size() int64        { return i.size }
func (i headInfo) Mode() fs.FileMode  { return 0o400 }
func (i headInfo) ModTime() time.Time { return time.Time{} }
func (i headInfo) IsDir() bool        { return false }
func (i headInfo) Sys() any           { return nil }

// Layout describes a partition table and filesystem to lay on a new disk.
type Layout struct {
	Table string // "", "gpt" or "mbr"
	FS    string // "" or "fat32"
	Label string // filesystem label
}

// ParseLayout checks the --partition and --fs flags.
func ParseLayout(table, fsType, label string) (Layout, error) {
	l := Layout{Table: strings.ToLower(table), FS: strings.ToLower(fsType), Label: label}
	switch l.Table {
	case "", "gpt", "mbr":
	default:
		return l, storage.Errorf(storage.ErrInvalid, "invalid partition table %q: use gpt or mbr", table)
	}
	switch l.FS {
	case "", "fat32":
	default:
		return l, storage.Errorf(storage.ErrInvalid, "invalid filesystem %q: strata can lay out fat32", fsType)
	}
	if l.Label != "" && l.FS == "" && l.Table != "gpt" {
		return l, storage.Errorf(storage.ErrInvalid, "--label %q names a filesystem (or a GPT partition): add --fs fat32 or --partition gpt", label)
	}
	if len(l.Label) > 11 {
		return l, storage.Errorf(storage.ErrInvalid, "invalid label %q: a FAT label is at most 11 characters", label)
	}
	return l, nil
}

// extent is where the layout's one partition (or the filesystem on the
// whole disk) lies on a disk of size bytes.
func (l Layout) extent(size int64) (start, length int64, err error) {
	sectors := size / 512
	switch l.Table {
	case "gpt":
		// The backup GPT takes the last 33 sectors.
		end := sectors - 34
		end -= (end + 1) % 2048 // end on a 1 MiB boundary
		if end <= firstSector {
			return 0, 0, storage.Errorf(storage.ErrInvalid, "a disk of %s is too small for a GPT partition", storage.FormatSize(size))
		}
		return firstSector * 512, (end - firstSector + 1) * 512, nil
	case "mbr":
		n := sectors - firstSector
		if n <= 0 || n > 0xffffffff {
			return 0, 0, storage.Errorf(storage.ErrInvalid, "a disk of %s does not fit an MBR partition (1 MiB to 2 TiB): use --partition gpt", storage.FormatSize(size))
		}
		n -= n % 2048
		return firstSector * 512, n * 512, nil
	}
	return 0, size, nil
}

// Check refuses, before any file is made, a layout that a disk of size
// bytes cannot hold: FAT32 needs at least 65,525 clusters (Windows and
// Linux decide the FAT type by the count), and the FAT32 writer used here
// sizes a FAT with 16 bits of sectors.
func (l Layout) Check(size int64) error {
	_, length, err := l.extent(size)
	if err != nil || l.FS != "fat32" {
		return err
	}
	// The geometry go-diskfs's fat32.Create chooses (mkfs.fat's table).
	cluster := int64(512)
	switch {
	case length > 32<<30:
		cluster = 32 << 10
	case length > 16<<30:
		cluster = 16 << 10
	case length > 8<<30:
		cluster = 8 << 10
	case length > 260<<20:
		cluster = 4 << 10
	}
	total := length / 512
	perFat := (4*(total-32) + (cluster + 8) - 1) / (cluster + 8)
	clusters := (total - 32 - 2*perFat) / (cluster / 512)
	if clusters < 65525 {
		return storage.Errorf(storage.ErrInvalid, "a FAT32 filesystem needs at least 65,525 clusters and %s gives %d: give --size 40M or more", storage.FormatSize(size), clusters)
	}
	if perFat > 0xffff {
		return storage.Errorf(storage.ErrInvalid, "a FAT32 filesystem of %s is larger than strata can lay out (about 256 GiB): use a smaller --size, or format the disk inside the guest", storage.FormatSize(size))
	}
	return nil
}

// Empty reports whether the layout asks for nothing.
func (l Layout) Empty() bool { return l.Table == "" && l.FS == "" }

// firstSector is where the one partition starts: 1 MiB, aligned for every
// modern disk and what Windows and Linux partitioners use.
const firstSector = 2048

// Apply lays out an existing raw image: one partition spanning the disk
// (type Microsoft basic data for GPT, FAT32 LBA for MBR, since the use is a
// data disk for a guest) and, when asked, a FAT32 filesystem on it (or on
// the whole disk without a table). It uses go-diskfs's partition and fat32
// packages directly: the diskfs package would pull every filesystem it
// knows into strata's start-up.
func (l Layout) Apply(path string) error {
	if l.Empty() {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %q for layout: %w", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	b := file.New(f, false)
	w, err := b.Writable()
	if err != nil {
		return err
	}
	start, fsSize, err := l.extent(size)
	if err != nil {
		return err
	}
	switch l.Table {
	case "gpt":
		name := l.Label
		if name == "" {
			name = "data"
		}
		t := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
			Partitions: []*gpt.Partition{{Index: 1, Start: firstSector, End: uint64((start+fsSize)/512 - 1), Type: gpt.MicrosoftBasicData, Name: name}}}
		err = t.Write(w, size)
	case "mbr":
		t := &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512,
			Partitions: []*mbr.Partition{{Index: 1, Type: mbr.Fat32LBA, Start: firstSector, Size: uint32(fsSize / 512)}}}
		err = t.Write(w, size)
	}
	if err != nil {
		return fmt.Errorf("write partition table: %w", err)
	}
	if l.FS == "fat32" {
		label := l.Label
		if label == "" {
			label = "DATA"
		}
		if _, err := fat32.Create(b, fsSize, start, 512, label, false); err != nil {
			return fmt.Errorf("create FAT32 filesystem: %w", err)
		}
	}
	return f.Sync()
}
