// Package inuse answers the one question strata asks before it writes,
// replaces, truncates or removes an image: who holds it?
//
// Vocabulary:
//
//   - Holder: a process or a toolstack's domain that has the image open in
//     a way that forbids changing it under it: QEMU's image locks (the OFD
//     byte-range locks QEMU takes on every image it opens; qemu-img takes
//     them too), a process with the image open for writing, a kernel claim
//     on a block device (mounted, device-mapper, a Xen block backend), or a
//     running domain of xl or libvirt whose disk it is.
//   - Source: one way of finding holders. Checker asks every source;
//     guest drivers (hvm/boot) add theirs, so there is one check for every
//     operation and every toolstack.
//
// Invariants: a check never changes the image (it opens it read-only,
// without following a symlink, and takes no lock); a holder is named by
// pid and program, or by toolstack and domain, never by its full command
// line (QEMU's may hold secrets).
package inuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog/log"
	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// Holder is one user of an image.
type Holder struct {
	PID       int    `json:"pid,omitempty"`
	Program   string `json:"program,omitempty"`   // the process's executable name
	Guest     string `json:"guest,omitempty"`     // QEMU's -name, when it has one
	Toolstack string `json:"toolstack,omitempty"` // xl, libvirt
	Domain    string `json:"domain,omitempty"`
	How       string `json:"how"` // what it holds: "image lock", "open for writing", ...
}

func (h Holder) String() string {
	var who string
	switch {
	case h.Domain != "":
		who = fmt.Sprintf("%s domain %q", h.Toolstack, h.Domain)
	case h.PID > 0:
		who = fmt.Sprintf("pid %d (%s", h.PID, h.Program)
		if h.Guest != "" {
			who += fmt.Sprintf(", guest %q", h.Guest)
		}
		who += ")"
	default:
		who = "the kernel"
	}
	return who + ": " + h.How
}

// Source finds holders of the image at path. st is what Lstat found there
// (never a symlink: the checker refuses those first).
type Source interface {
	Holders(ctx context.Context, path string, st os.FileInfo) ([]Holder, error)
}

// Checker asks its sources in order.
type Checker struct {
	Sources []Source
}

// Default is the check for this host: image locks and writers (every
// process on the host), block-device claims, and the running domains of
// xl and libvirt where those toolstacks answer.
func Default() *Checker {
	return &Checker{Sources: []Source{Processes{}, BlockClaim{}, NewXL(), NewLibvirt()}}
}

// Holders lists who holds path; none if path does not exist.
func (c *Checker) Holders(ctx context.Context, path string) ([]Holder, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return nil, storage.Errorf(storage.ErrPrecondition, "%q is a symbolic link, not the image strata recorded: strata does not follow links it did not make; point the volume at the real file", path)
	}
	var all []Holder
	for _, s := range c.Sources {
		hs, err := s.Holders(ctx, path, st)
		if err != nil {
			return nil, err
		}
		all = append(all, hs...)
	}
	return dedupe(all), nil
}

// dedupe keeps one holder per pid or domain (the first found says most).
func dedupe(hs []Holder) []Holder {
	seen := map[string]bool{}
	var out []Holder
	for _, h := range hs {
		k := fmt.Sprintf("%d/%s/%s", h.PID, h.Toolstack, h.Domain)
		if h.PID == 0 && h.Domain == "" {
			k = h.How
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, h)
		}
	}
	return out
}

// Check refuses (storage.ErrInUse) if anything holds path. what names the
// image for the user ("volume \"win7\"").
func (c *Checker) Check(ctx context.Context, what, path string) error {
	hs, err := c.Holders(ctx, path)
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		return nil
	}
	return inUse(what, path, hs)
}

func inUse(what, path string, hs []Holder) error {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.String()
	}
	return storage.Errorf(storage.ErrInUse, "%s (%s) is in use by %s: strata never changes an image under a running guest or tool; shut the guest down (or let the tool finish) and try again",
		what, path, strings.Join(names, "; "))
}

// Wait waits up to timeout for every holder of path to let go, saying once
// whom it waits for. Recovery uses it: a process that outlived strata (a
// qemu-img still applying a snapshot) must finish before strata decides
// what state the image is in.
func (c *Checker) Wait(ctx context.Context, what, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	said := false
	for {
		hs, err := c.Holders(ctx, path)
		if err != nil || len(hs) == 0 {
			return err
		}
		if !said {
			names := make([]string, len(hs))
			for i, h := range hs {
				names[i] = h.String()
			}
			log.Warn().Str("image", path).Str("held_by", strings.Join(names, "; ")).Dur("timeout", timeout).Msgf("waiting for %s to be let go before deciding what state it is in", what)
			said = true
		}
		if time.Now().After(deadline) {
			return inUse(what, path, hs)
		}
		select {
		case <-ctx.Done():
			return inUse(what, path, hs)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Processes finds holders among the host's processes: whoever holds a
// byte-range lock on the image (QEMU, qemu-img: OFD locks, whose owner the
// kernel does not report, so the process is found by its open files), and
// whoever has it open for writing without a lock (QEMU with locking=off).
type Processes struct {
	// Proc is the procfs root; "" means /proc.
	Proc string
}

func (p Processes) proc() string {
	if p.Proc == "" {
		return "/proc"
	}
	return p.Proc
}

// Holders implements Source.
func (p Processes) Holders(_ context.Context, path string, st os.FileInfo) ([]Holder, error) {
	locked, err := lockHeld(path)
	if err != nil {
		return nil, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, nil
	}
	// A block device is opened as a device node: match by its rdev.
	dev, ino := uint64(sys.Dev), sys.Ino
	isBlock := st.Mode()&os.ModeDevice != 0
	var out []Holder
	self := os.Getpid()
	procs, _ := os.ReadDir(p.proc())
	for _, e := range procs {
		pid := atoi(e.Name())
		if pid <= 0 || pid == self {
			continue
		}
		fdDir := filepath.Join(p.proc(), e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			var fst unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &fst) != nil {
				continue
			}
			if isBlock {
				if fst.Mode&unix.S_IFMT != unix.S_IFBLK || fst.Rdev != uint64(sys.Rdev) {
					continue
				}
			} else if uint64(fst.Dev) != dev || fst.Ino != ino {
				continue
			}
			writing := openForWriting(filepath.Join(p.proc(), e.Name(), "fdinfo", fd.Name()))
			if !locked && !writing {
				continue
			}
			h := Holder{PID: pid, Program: program(p.proc(), e.Name())}
			h.Guest = qemuName(p.proc(), e.Name())
			switch {
			case locked && writing:
				h.How = "holds the image's lock and has it open for writing"
			case locked:
				h.How = "holds the image's lock"
			default:
				h.How = "has the image open for writing"
			}
			out = append(out, h)
			break
		}
	}
	if locked && len(out) == 0 {
		// Held by a process whose files strata cannot see (another
		// namespace, or one that has just exited): still held.
		out = append(out, Holder{How: "a process strata cannot see holds the image's lock"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// lockHeld tells whether anyone holds a byte-range lock anywhere in the
// image: F_OFD_GETLK for a write lock over the whole file reports any
// conflicting OFD or POSIX lock (QEMU's sit at bytes 100-299).
func lockHeld(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("open %q to look for its users: %w", path, err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("look for locks on %q: %w", path, err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// openForWriting reads the access mode from /proc/PID/fdinfo/FD.
func openForWriting(fdinfo string) bool {
	raw, err := os.ReadFile(fdinfo)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			var flags uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%o", &flags); err != nil {
				return false
			}
			acc := flags & unix.O_ACCMODE
			return acc == unix.O_WRONLY || acc == unix.O_RDWR
		}
	}
	return false
}

func program(proc, pid string) string {
	raw, err := os.ReadFile(filepath.Join(proc, pid, "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(raw))
}

// qemuName is the guest name a QEMU was started with (-name NAME or
// -name guest=NAME,...): the only part of its command line strata shows.
func qemuName(proc, pid string) string {
	raw, err := os.ReadFile(filepath.Join(proc, pid, "cmdline"))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "qemu") {
		return ""
	}
	for i := 1; i+1 < len(args); i++ {
		if args[i] != "-name" && args[i] != "--name" {
			continue
		}
		v := args[i+1]
		for _, part := range strings.Split(v, ",") {
			if n, ok := strings.CutPrefix(part, "guest="); ok {
				return n
			}
		}
		if !strings.Contains(v, "=") {
			name, _, _ := strings.Cut(v, ",")
			return name
		}
	}
	return ""
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
		if n > 1<<30 {
			return -1
		}
	}
	if s == "" {
		return -1
	}
	return n
}

// BlockClaim finds kernel claims on a block device: opening it with
// O_EXCL fails with EBUSY while it is mounted, part of a device-mapper or
// md device, or claimed by a Xen block backend.
type BlockClaim struct{}

// Holders implements Source.
func (BlockClaim) Holders(_ context.Context, path string, st os.FileInfo) ([]Holder, error) {
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return nil, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
		return nil, nil
	}
	if errors.Is(err, unix.EBUSY) {
		return []Holder{{How: "the block device is claimed (mounted, used by device-mapper or md, or attached to a running domain)"}}, nil
	}
	return nil, fmt.Errorf("open %q exclusively to look for its users: %w", path, err)
}
