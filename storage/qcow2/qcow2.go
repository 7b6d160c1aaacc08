// Package qcow2 is strata's one way to ask qemu-img about a qcow2 image and
// to change its internal snapshots: info (JSON), the snapshot list, check
// and repair, and snapshot create, apply and delete.
//
// Every command that only reads an image runs with -U (force-share,
// image.QemuImgRead): it neither takes nor waits for the image lock that
// QEMU and writing qemu-img commands hold, so a running guest or a point
// being taken never makes a read fail. Commands that change an image run
// through run.Critical (a stop signal waits for them: a qemu-img killed
// midway leaves a damaged image) and take the image's lock as usual; the
// caller keeps strata's own holders out (inuse.Without).
package qcow2

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage/image"
	"github.com/strata-vm/strata/storage/run"
)

// Snapshot is an internal snapshot as qemu-img info lists it.
type Snapshot struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	VMStateSize int64  `json:"vm-state-size"`
}

// Info is what strata reads of qemu-img info --output=json.
type Info struct {
	VirtualSize   int64      `json:"virtual-size"`
	ActualSize    int64      `json:"actual-size"`
	BackingFile   string     `json:"backing-filename,omitempty"`
	BackingFormat string     `json:"backing-filename-format,omitempty"`
	Snapshots     []Snapshot `json:"snapshots,omitempty"`
}

// ReadInfo runs qemu-img info on the qcow2 image at path. A step that must
// not be cut by a stop signal sent to strata's process group (a rollback
// deciding what to undo) passes isolated.
func ReadInfo(ctx context.Context, path string, isolated bool) (Info, error) {
	argv := image.QemuImgRead("info", "--output=json", "-f", "qcow2", path)
	out, err := run.Output(ctx, argv...)
	if isolated {
		out, err = run.OutputIsolated(ctx, argv...)
	}
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(out, &info); err != nil {
		return Info{}, fmt.Errorf("qemu-img info %q: %w", path, err)
	}
	return info, nil
}

// Snapshots lists the names of the internal snapshots of the image at
// path, oldest first.
func Snapshots(ctx context.Context, path string) ([]string, error) {
	info, err := ReadInfo(ctx, path, false)
	if err != nil {
		return nil, err
	}
	return info.SnapshotNames(), nil
}

// SnapshotNames are the names of info's internal snapshots, oldest first.
func (info Info) SnapshotNames() []string {
	names := make([]string, len(info.Snapshots))
	for i, s := range info.Snapshots {
		names[i] = s.Name
	}
	return names
}

// HasSnapshot tells whether the image at path holds the internal snapshot
// name (isolated as for ReadInfo).
func HasSnapshot(ctx context.Context, path, name string, isolated bool) (bool, error) {
	info, err := ReadInfo(ctx, path, isolated)
	if err != nil {
		return false, err
	}
	return slices.Contains(info.SnapshotNames(), name), nil
}

// Check runs qemu-img check (read only) on the image at path: nil for a
// clean image, else the run error with what qemu-img reported.
func Check(ctx context.Context, path string) error {
	return run.Run(ctx, nil, nil, image.QemuImgRead("check", "-q", "-f", "qcow2", path)...)
}

// Repair checks the image at path and, if it is not clean, repairs it
// (qemu-img check -r all: leaked clusters, and reference counts or copied
// flags that a write would trust). repaired tells whether it had to. The
// caller holds the image (no guest has it open).
func Repair(ctx context.Context, path string) (repaired bool, err error) {
	if Check(ctx, path) == nil {
		return false, nil
	}
	log.Warn().Str("image", path).Msg("qemu-img check reports errors (an interrupted qemu-img left them): repairing them with qemu-img check -r all")
	if err := run.Critical(ctx, "qemu-img", "check", "-q", "-r", "all", "-f", "qcow2", path); err != nil {
		return true, fmt.Errorf("repair %q: %w", path, err)
	}
	return true, nil
}

// CreateSnapshot takes the internal snapshot name of the image at path.
func CreateSnapshot(ctx context.Context, path, name string) error {
	return run.Critical(ctx, "qemu-img", "snapshot", "-q", "-c", name, path)
}

// ApplySnapshot reverts the image at path to its internal snapshot name.
func ApplySnapshot(ctx context.Context, path, name string) error {
	return run.Critical(ctx, "qemu-img", "snapshot", "-q", "-a", name, path)
}

// DeleteSnapshot deletes the internal snapshot name of the image at path.
func DeleteSnapshot(ctx context.Context, path, name string) error {
	return run.Critical(ctx, "qemu-img", "snapshot", "-q", "-d", name, path)
}

// Create makes a new qcow2 image at path of size bytes, or, with backing
// set, an overlay of backing (whose format is given explicitly, so qemu
// never probes it: a raw image could otherwise be read as whatever its
// first bytes look like; size 0 takes the backing's).
func Create(ctx context.Context, path string, size int64, backing, backingFormat string) error {
	argv := []string{"qemu-img", "create", "-q", "-f", "qcow2"}
	if backing != "" {
		argv = append(argv, "-b", backing, "-F", backingFormat)
	}
	argv = append(argv, path)
	if backing == "" || size > 0 {
		argv = append(argv, fmt.Sprint(size))
	}
	return run.Run(ctx, nil, nil, argv...)
}

// SetBacking records backing (of format backingFormat) as the image's
// backing file without touching its data (qemu-img rebase -u): for an
// image moved to another directory, whose relative backing name would
// break.
func SetBacking(ctx context.Context, path, backing, backingFormat string) error {
	return run.Run(ctx, nil, nil, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", backing, "-F", backingFormat, path)
}
