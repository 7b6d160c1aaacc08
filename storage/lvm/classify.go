package lvm

import (
	"errors"
	"fmt"
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

// The classes of LVM's messages, first match wins; texts are LVM
// 2.03's (lower-cased), seen in the recordings in testdata/lvm.
var classes = []struct {
	kind   error
	extra  error // wrapped besides the kind (ErrNoSpace)
	phrase []string
	hint   string
}{
	{storage.ErrNotSupported, nil, []string{"target(s) not detected", "/dev/mapper/control", "device-mapper driver"},
		"load the device-mapper modules (dm-mod, dm-snapshot, dm-thin-pool) or use a host that has them"},
	{storage.ErrNotSupported, nil, []string{"not supported", "unsupported"}, ""},
	{storage.ErrBusy, nil, []string{"can't get lock", "giving up waiting for lock", "resource temporarily unavailable"},
		"another lvm command holds the volume group's lock: try again"},
	{storage.ErrPrecondition, ErrNoSpace, []string{"insufficient free space", "insufficient suitable", "no free extents", "not enough free", "out of data space", "thin pool is full", "no space left"},
		"free space in the volume group (vgextend, or remove logical volumes) or extend the thin pool (lvextend)"},
	{storage.ErrExists, nil, []string{"already exists"}, ""},
	{storage.ErrPrecondition, nil, []string{"invalidated snapshot", "snapshot is invalid", "merge failed", "is already merging", "merging snapshot", "is under conversion"},
		""},
	{storage.ErrInUse, nil, []string{"in use", "is open", "open logical volume", "device or resource busy", "still open"},
		"stop what holds it open (a running guest, a mount) and try again"},
	{storage.ErrNotFound, nil, []string{"not found", "failed to find", "doesn't exist", "does not exist", "no such", "cannot process volume group"}, ""},
	{storage.ErrInvalid, nil, []string{"invalid", "is reserved", "not a valid", "too long", "must be", "unrecognised", "unrecognized", "please specify", "cannot be used with", "not larger than", "run `"}, ""},
}

// Classify turns a failed LVM command into a storage error of the right
// kind, saying what failed (what: "create logical volume \"vg/x\"") with
// LVM's own message and, where there is one, what to do. The *run.Error
// (argv, exit code, stderr) stays reachable through errors.As. An error
// that is not a *run.Error (the tool is missing, a context ended) keeps
// its own kind.
func Classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var re *run.Error
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg := message(re.Stderr)
	low := strings.ToLower(re.Stderr)
	for _, c := range classes {
		for _, p := range c.phrase {
			if !strings.Contains(low, p) {
				continue
			}
			cause := error(&lvmError{msg: msg, run: re})
			if c.extra != nil {
				cause = &lvmError{msg: msg, run: re, reason: c.extra}
			}
			if c.hint != "" {
				return storage.Errorf(c.kind, "%s: %w: %s", what, cause, c.hint)
			}
			return storage.Errorf(c.kind, "%s: %w", what, cause)
		}
	}
	cause := &lvmError{msg: msg, run: re}
	if re.ExitCode == exitInvalidCmdLine {
		return storage.Errorf(storage.ErrInvalid, "%s: %w", what, cause)
	}
	// Anything else (exit 5 with a message none of the above knows, a
	// crash) is internal: no kind.
	return &internalError{what: what, cause: cause}
}

type internalError struct {
	what  string
	cause *lvmError
}

func (e *internalError) Error() string { return e.what + ": " + e.cause.Error() }
func (e *internalError) Unwrap() error { return e.cause }

// lvmError is LVM's message for a failure, wrapping the command's error
// (and ErrNoSpace where that is the reason).
type lvmError struct {
	msg    string
	run    *run.Error
	reason error
}

func (e *lvmError) Error() string {
	if e.msg == "" {
		return e.run.Error()
	}
	return "lvm: " + e.msg
}

func (e *lvmError) Unwrap() []error {
	if e.reason != nil {
		return []error{e.reason, e.run}
	}
	return []error{e.run}
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
