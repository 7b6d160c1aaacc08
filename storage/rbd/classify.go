package rbd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

// ErrNoSpace is a failure for want of space in the cluster or the pool's
// quota; Classify returns it as storage.ErrPrecondition.
var ErrNoSpace = errors.New("not enough space")

// The errnos rbd and ceph exit with (Linux values).
const (
	errPERM      = 1
	errNOENT     = 2
	errIO        = 5
	errACCES     = 13
	errBUSY      = 16
	errEXIST     = 17
	errXDEV      = 18
	errINVAL     = 22
	errFBIG      = 27
	errNOSPC     = 28
	errROFS      = 30
	errRANGE     = 34
	errNOSYS     = 38
	errNOTEMPTY  = 39
	errOPNOTSUPP = 95
	errSHUTDOWN  = 108
	errTIMEDOUT  = 110
	errCONNREF   = 111
	errDQUOT     = 122
)

// Classify turns a failed rbd or ceph command into a storage error of
// the right kind, from its exit code (the errno), saying what failed with
// the tool's own message and, where there is one, what to do. The
// *run.Error stays reachable through errors.As. An error that is not a
// *run.Error (a missing tool, a context that ended) keeps its own kind.
func Classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var re *run.Error
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w", what, err)
	}
	cause := &cephError{msg: message(re.Stderr), run: re}
	kind, hint := kindOf(re.ExitCode, strings.ToLower(re.Stderr))
	if kind == errNoSpaceKind {
		cause.reason = ErrNoSpace
		kind = storage.ErrPrecondition
	}
	if kind == nil {
		return &internalError{what: what, cause: cause}
	}
	if hint != "" {
		return storage.Errorf(kind, "%s: %w: %s", what, cause, hint)
	}
	return storage.Errorf(kind, "%s: %w", what, cause)
}

var errNoSpaceKind = errors.New("no space")

func kindOf(code int, stderr string) (kind error, hint string) {
	switch code {
	case errNOENT:
		return storage.ErrNotFound, ""
	case errEXIST:
		return storage.ErrExists, ""
	case errINVAL, errRANGE, errFBIG, errXDEV:
		return storage.ErrInvalid, ""
	case errBUSY:
		switch {
		case strings.Contains(stderr, "watchers"):
			return storage.ErrInUse, "a client has the image open (a running guest?): stop it and try again"
		case strings.Contains(stderr, "child"):
			return storage.ErrInUse, "clones depend on it: flatten or delete them first"
		case strings.Contains(stderr, "protected"):
			return storage.ErrInUse, "the snapshot is protected (a golden image's): unprotect it first"
		}
		return storage.ErrInUse, ""
	case errNOTEMPTY:
		return storage.ErrPrecondition, ""
	case errNOSPC, errDQUOT:
		return errNoSpaceKind, "free space in the cluster or raise the pool's quota (ceph osd pool set-quota)"
	case errROFS:
		return storage.ErrPrecondition, ""
	case errNOSYS, errOPNOTSUPP:
		return storage.ErrNotSupported, ""
	case errTIMEDOUT, errCONNREF, errSHUTDOWN:
		return storage.ErrBusy, "the ceph cluster does not answer: check that its monitors run and that the pool's ceph.conf (mon_host) names them"
	case errPERM, errACCES:
		return storage.ErrPrecondition, "the cluster refused the client: check the pool's --id and the keyring its ceph.conf names"
	}
	return nil, ""
}

type internalError struct {
	what  string
	cause *cephError
}

func (e *internalError) Error() string { return e.what + ": " + e.cause.Error() }
func (e *internalError) Unwrap() error { return e.cause }

// cephError is the tool's message for a failure, wrapping the command's
// error (and ErrNoSpace where that is the reason).
type cephError struct {
	msg    string
	run    *run.Error
	reason error
}

func (e *cephError) Error() string {
	if e.msg == "" {
		return e.run.Error()
	}
	return e.msg
}

func (e *cephError) Unwrap() []error {
	if e.reason != nil {
		return []error{e.reason, e.run}
	}
	return []error{e.run}
}

// message is the tool's stderr as one line: the "rbd: ..." lines, or
// the last line when there is none, without librbd's timestamped debug
// lines and progress output.
func message(stderr string) string {
	if strings.Contains(stderr, "*** Caught signal") {
		// librbd aborted: its first line says why, the rest is a dump.
		first, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
		return "the tool crashed: " + strings.TrimSpace(first)
	}
	var keep []string
	var last string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		// Progress ("Removing image: 0% complete...failed.") and librbd's
		// log lines ("2026-11-30T14:25:01.271+0000 7f25... -1 librbd: ...").
		if strings.Contains(l, "% complete") {
			continue
		}
		if len(l) > 4 && l[4] == '-' && strings.Contains(l, "+0000 ") {
			if i := strings.Index(l, " -1 "); i >= 0 {
				last = strings.TrimSpace(l[i+4:])
			}
			continue
		}
		if strings.HasPrefix(l, "rbd: ") || strings.HasPrefix(l, "Error ") {
			keep = append(keep, l)
			continue
		}
		last = l
	}
	if len(keep) == 0 && last != "" {
		keep = []string{last}
	}
	return strings.Join(keep, "; ")
}
