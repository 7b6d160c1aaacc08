package lvm

import (
	"errors"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// ErrNoSpace is a failure for want of space: free extents in the VG, or
// data or metadata in a thin pool. Classify returns it as
// storage.ErrPrecondition, and errors.Is(err, ErrNoSpace) tells it apart.
var ErrNoSpace = errors.New("not enough space")

// LVM's exit codes (tools/errors.h): 3 is a bad command line, 5 almost
// every other failure.
const (
	exitInvalidCmdLine = 3
	exitFailed         = 5
)

// LVM's failures by message, first match wins; texts are LVM 2.03's
// (lower-cased), seen in the recordings in testdata/lvm. A bad command
// line with a message none of them knows is invalid; anything else
// (exit 5 with a new message, a crash) is internal: no kind.
var rules = []run.Rule{
	{Kind: storage.ErrNotSupported, Phrases: []string{"target(s) not detected", "/dev/mapper/control", "device-mapper driver"},
		Hint: "load the device-mapper modules (dm-mod, dm-snapshot, dm-thin-pool) or use a host that has them"},
	{Kind: storage.ErrNotSupported, Phrases: []string{"not supported", "unsupported"}},
	{Kind: storage.ErrBusy, Phrases: []string{"can't get lock", "giving up waiting for lock", "resource temporarily unavailable"},
		Hint: "another lvm command holds the volume group's lock: try again"},
	{Kind: storage.ErrPrecondition, Reason: ErrNoSpace, Phrases: []string{"insufficient free space", "insufficient suitable", "no free extents", "not enough free", "out of data space", "thin pool is full", "no space left"},
		Hint: "free space in the volume group (vgextend, or remove logical volumes) or extend the thin pool (lvextend)"},
	{Kind: storage.ErrExists, Phrases: []string{"already exists"}},
	{Kind: storage.ErrPrecondition, Phrases: []string{"invalidated snapshot", "snapshot is invalid", "merge failed", "is already merging", "merging snapshot", "is under conversion"}},
	{Kind: storage.ErrInUse, Phrases: []string{"in use", "is open", "open logical volume", "device or resource busy", "still open"},
		Hint: "stop what holds it open (a running guest, a mount) and try again"},
	{Kind: storage.ErrNotFound, Phrases: []string{"not found", "failed to find", "doesn't exist", "does not exist", "no such", "cannot process volume group"}},
	{Kind: storage.ErrInvalid, Phrases: []string{"invalid", "is reserved", "not a valid", "too long", "must be", "unrecognised", "unrecognized", "please specify", "cannot be used with", "not larger than", "run `"}},
	{Kind: storage.ErrInvalid, Codes: []int{exitInvalidCmdLine}},
}

// Classify turns a failed LVM command into a storage error of the right
// kind, saying what failed (what: "create logical volume \"vg/x\"") with
// LVM's own message and, where there is one, what to do. The *run.Error
// (argv, exit code, stderr) stays reachable through errors.As. An error
// that is not a *run.Error (the tool is missing, a context ended) keeps
// its own kind.
func Classify(err error, what string) error {
	return run.Classify(err, what, rules, lvmMessage)
}

// lvmMessage is LVM's message, marked as LVM's.
func lvmMessage(stderr string) string {
	if m := message(stderr); m != "" {
		return "lvm: " + m
	}
	return ""
}

// message is LVM's stderr as one line: its lines trimmed, joined with
// "; ", without the warnings LVM adds to every change when metadata
// backups are off, and without the usage hint of a bad command line.
func message(stderr string) string {
	var keep, warnings []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", strings.HasPrefix(l, "Run `"):
		case strings.HasPrefix(l, "WARNING:"):
			warnings = append(warnings, l)
		default:
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		keep = warnings
	}
	return strings.Join(keep, "; ")
}
