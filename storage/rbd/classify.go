package rbd

import (
	"errors"
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
	return run.Classify(err, what, rules, message)
}

// rbd's and ceph's failures by errno, first match wins; an errno none
// of them names is internal: no kind.
var rules = []run.Rule{
	{Codes: []int{errNOENT}, Kind: storage.ErrNotFound},
	{Codes: []int{errEXIST}, Kind: storage.ErrExists},
	{Codes: []int{errINVAL, errRANGE, errFBIG, errXDEV}, Kind: storage.ErrInvalid},
	{Codes: []int{errBUSY}, Phrases: []string{"watchers"}, Kind: storage.ErrInUse,
		Hint: "a client has the image open (a running guest?): stop it and try again"},
	{Codes: []int{errBUSY}, Phrases: []string{"child"}, Kind: storage.ErrInUse,
		Hint: "clones depend on it: flatten or delete them first"},
	{Codes: []int{errBUSY}, Phrases: []string{"protected"}, Kind: storage.ErrInUse,
		Hint: "the snapshot is protected (a golden image's): unprotect it first"},
	{Codes: []int{errBUSY}, Kind: storage.ErrInUse},
	{Codes: []int{errNOTEMPTY}, Kind: storage.ErrPrecondition},
	{Codes: []int{errNOSPC, errDQUOT}, Kind: storage.ErrPrecondition, Reason: ErrNoSpace,
		Hint: "free space in the cluster or raise the pool's quota (ceph osd pool set-quota)"},
	{Codes: []int{errROFS}, Kind: storage.ErrPrecondition},
	{Codes: []int{errNOSYS, errOPNOTSUPP}, Kind: storage.ErrNotSupported},
	{Codes: []int{errTIMEDOUT, errCONNREF, errSHUTDOWN}, Kind: storage.ErrBusy,
		Hint: "the ceph cluster does not answer: check that its monitors run and that the pool's ceph.conf (mon_host) names them"},
	{Codes: []int{errPERM, errACCES}, Kind: storage.ErrPrecondition,
		Hint: "the cluster refused the client: check the pool's --id and the keyring its ceph.conf names"},
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
