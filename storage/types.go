package storage

import "time"

// Format is the on-disk format of a volume, detected from content.
type Format string

const (
	FormatRaw   Format = "raw"
	FormatQcow2 Format = "qcow2"
	FormatISO   Format = "iso"
)

// ParseFormat checks a format a user asked for when creating a volume.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatRaw, FormatQcow2:
		return Format(s), nil
	}
	return "", Errorf(ErrInvalid, "invalid format %q: use raw or qcow2", s)
}

// Capabilities is what a pool's filesystem can do, measured by probing it
// (never guessed from a type name). Callers choose methods from these.
type Capabilities struct {
	// Reflink: FICLONE works, so a raw image can be copied in O(1).
	Reflink bool `json:"reflink"`
	// Sparse: files can have holes, so a raw image costs nothing until
	// written.
	Sparse bool `json:"sparse"`
	// O1Snapshots: a snapshot of a raw volume costs O(1) (via reflink).
	// qcow2 volumes have O(1) internal snapshots on any pool.
	O1Snapshots bool `json:"o1_snapshots"`
}

// Pool is a place where volumes live.
type Pool struct {
	Name   string `json:"name"`
	Driver string `json:"driver"`
	// Path is a dir pool's directory ("" for pools that are not
	// directories).
	Path string `json:"path"`
	// LVM is an lvm pool's volume group (nil for other drivers).
	LVM *LVMPool `json:"lvm,omitempty"`
	// RBD is an rbd pool's Ceph pool (nil for other drivers).
	RBD     *RBDPool  `json:"rbd,omitempty"`
	Created time.Time `json:"created"`
}

// LVMPool is where an lvm pool's volumes live: a volume group, and a thin
// pool in it for thin volumes (thick LVs when ThinPool is "").
type LVMPool struct {
	VG       string `json:"vg"`
	ThinPool string `json:"thin_pool,omitempty"`
	// SnapshotPercent sizes a thick pool's restore points (classic
	// snapshots) as a percentage of their volume (0: 100, which never
	// overflows).
	SnapshotPercent int `json:"snapshot_percent,omitempty"`
	// DataLimit and MetadataLimit are the thin pool usages (percent)
	// past which strata refuses new volumes, points and clones (0: the
	// defaults, 85 and 75).
	DataLimit     float64 `json:"data_limit_percent,omitempty"`
	MetadataLimit float64 `json:"metadata_limit_percent,omitempty"`
	// ErrorWhenFull: pool add set the thin pool to fail writes at once
	// when its data is full (lvchange --errorwhenfull y).
	ErrorWhenFull bool `json:"error_when_full,omitempty"`
}

// LVMStatus is what an lvm pool's volume group and thin pool report now.
type LVMStatus struct {
	VGSize int64 `json:"vg_size_bytes"`
	VGFree int64 `json:"vg_free_bytes"`
	// Thin pool only: its data size, usages and behaviour when full
	// ("error" or "queue").
	ThinSize        int64   `json:"thin_size_bytes,omitempty"`
	DataPercent     float64 `json:"data_percent,omitempty"`
	MetadataPercent float64 `json:"metadata_percent,omitempty"`
	DataLimit       float64 `json:"data_limit_percent,omitempty"`
	MetadataLimit   float64 `json:"metadata_limit_percent,omitempty"`
	WhenFull        string  `json:"when_full,omitempty"`
}

// RBDPool is where an rbd pool's volumes live: a Ceph pool (and
// namespace), reached with a ceph.conf and a client ID.
type RBDPool struct {
	Pool      string `json:"pool"`
	Namespace string `json:"namespace,omitempty"`
	CephConf  string `json:"ceph_conf,omitempty"`
	ID        string `json:"id,omitempty"`
}

// PoolStatus is a pool with what its filesystem reports now.
type PoolStatus struct {
	Pool
	Filesystem   string       `json:"filesystem"`
	TotalBytes   uint64       `json:"total_bytes"`
	FreeBytes    uint64       `json:"free_bytes"`
	Volumes      int          `json:"volumes"`
	Capabilities Capabilities `json:"capabilities"`
	// LVM: an lvm pool's volume group and thin pool now.
	LVMStatus *LVMStatus `json:"lvm_status,omitempty"`
}

// Volume is the catalog record of a virtual disk.
type Volume struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Pool     string    `json:"pool"`
	Format   Format    `json:"format"`
	Path     string    `json:"path"`
	Imported bool      `json:"imported"`
	Device   bool      `json:"block_device"`
	Created  time.Time `json:"created"`
	// Backing is the backing file recorded when the volume was registered
	// (qcow2 overlays); dependants are found through it.
	Backing string `json:"backing,omitempty"`
	// File is the identity of the image file when strata registered it
	// (or first used it, for volumes recorded before strata kept it):
	// checked before strata reads or writes the image (image.VerifyImage).
	File *FileID `json:"file_id,omitempty"`
}

// FileID identifies an image file: its device, inode and birth time, and
// its owner (a replacement strata makes by a rename keeps the owner, one
// made by someone who can only write the image's directory cannot).
type FileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
	// Birth is the file's birth time (ns since the epoch) where the
	// filesystem keeps one: it tells a new file from a deleted one whose
	// inode number it reuses.
	Birth int64  `json:"birth,omitempty"`
	UID   uint32 `json:"uid"`
}

// Partition is one entry of a volume's partition table.
type Partition struct {
	Index int    `json:"index"`
	Start int64  `json:"start"` // bytes from the start of the disk
	Size  int64  `json:"size"`  // bytes
	Type  string `json:"type"`  // GPT type GUID or MBR type as 0xNN
	Name  string `json:"name,omitempty"`
}

// VolumeInfo is a volume with what its image reports now.
type VolumeInfo struct {
	Volume
	VirtualSize    int64 `json:"virtual_size"`
	AllocatedBytes int64 `json:"allocated_bytes"`
	// RecordedBacking is the golden image (or backing file) the catalog
	// holds this volume to depend on (Volume.Backing), which guards the
	// golden from deletion; ImageBacking is what the image itself names
	// now. They differ only while a flatten is unfinished (the image is
	// independent, the record not yet): doctor --repair settles it.
	RecordedBacking *string `json:"backing"`
	ImageBacking    *string `json:"image_backing"`
	// DataFile is a qcow2 image's external data file, if it has one.
	DataFile       *string     `json:"data_file"`
	PartitionTable string      `json:"partition_table"` // gpt, mbr or none
	Partitions     []Partition `json:"partitions"`
}

// Progress receives the advance of a long copy. Implementations must be
// cheap; NoProgress is the default.
type Progress interface {
	Start(total int64, what string)
	Add(n int64)
	Done()
}

// NoProgress draws nothing.
type NoProgress struct{}

func (NoProgress) Start(int64, string) {}
func (NoProgress) Add(int64)           {}
func (NoProgress) Done()               {}

// Guest is the catalog record of a virtual machine guest: its name, its
// writable disks (volume IDs, in order) and its definition, a YAML
// document in the hvm package's schema (hvm.Marshal / hvm.Unmarshal; YAML
// rather than JSON because it keeps the VNC password, which hvm's JSON
// redacts). The definition is empty for a guest that is only a name and
// disks. A restore point copies the whole record.
type Guest struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Disks []string `json:"disks"`
	// Uses are all the volumes the definition names (Disks and read-only
	// ones): none of them can be deleted while the guest exists.
	Uses       []string  `json:"uses,omitempty"`
	Definition string    `json:"definition,omitempty"`
	Created    time.Time `json:"created"`
}
