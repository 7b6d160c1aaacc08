// Package inuse answers the one question strata asks before it writes,
// replaces, truncates or removes an image: who holds it?
//
// Vocabulary:
//
//   - Holder: a process or a toolstack's domain that has the image open in
//     a way that forbids changing it under it: QEMU's image locks (the OFD
//     byte-range locks QEMU takes on every image it opens; qemu-img takes
//     them too), a process with the image open for writing, a kernel claim
//     on a block device (mounted, device-mapper, a Xen block backend), an
//     open of a device-mapper device (an LV) the kernel counts beyond
//     strata's own, or a running domain of xl or libvirt whose disk it
//     is.
//   - Source: one way of finding holders. Checker asks every source;
//     guest drivers (hvm/boot) add theirs, so there is one check for every
//     operation and every toolstack.
//
// Invariants: a check never changes the image (it opens it read-only,
// without following a symlink, and takes no lock; only DeviceMapper
// follows a link, to a block device, with O_PATH, which opens nothing);
// a holder is named by pid and program, or by toolstack and domain,
// never by its full command line (QEMU's may hold secrets).
package inuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	case h.Toolstack == "loop":
		who = "loop device " + h.Domain
	case h.Toolstack == "ceph":
		who = "a ceph client"
	case h.Toolstack == "device-mapper":
		who = "device-mapper device " + h.Domain
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

// Image is one image a check is about.
type Image struct {
	What string // how the user knows it: volume "win7"
	Path string
	st   os.FileInfo // what Lstat found there; nil if nothing
	link bool        // Lstat found a symbolic link (st is nil)
	held int         // the file strata holds it with (see Hold), or -1
}

// Source finds holders of images. It answers for all the images of one
// operation at once (one scan of the host's processes, one question to a
// toolstack): holders[i] are those of imgs[i]. An image with a nil Stat
// does not exist and has no holders, or is a symbolic link, which no
// source follows but DeviceMapper (to a block device: /dev/VG/LV).
type Source interface {
	Holders(ctx context.Context, imgs []Image) ([][]Holder, error)
}

// Stat is what Lstat found at the image's path (nil: nothing).
func (i Image) Stat() os.FileInfo { return i.st }

// Checker asks its sources: First in order (a source that changes what
// the others would see, such as one ending the orphans of a killed start),
// then all of Sources at once (a scan of the host's processes and a
// question to a toolstack take as long as the slower of the two, not
// their sum: every command that writes a disk waits for this). Holders
// are reported in source order either way.
type Checker struct {
	First   []Source
	Sources []Source
}

// Default is the check for this host: the device-mapper open count of a
// dm device (first and alone: it counts opens, which the others make),
// image locks and writers (every process on the host), block-device
// claims, loop devices backed by the image, the running domains of xl
// and libvirt where those toolstacks answer, and the watchers of RBD
// images.
func Default() *Checker {
	return &Checker{First: []Source{DeviceMapper{}}, Sources: []Source{Processes{}, BlockClaim{}, LoopDevices{}, NewXL(), NewLibvirt(), RBDWatchers{}}}
}

// HoldersAll lists who holds each image (none for an image that does not
// exist, or a symbolic link where it should be: links are not followed).
func (c *Checker) HoldersAll(ctx context.Context, imgs []Image) ([][]Holder, error) {
	imgs = append([]Image(nil), imgs...)
	hold := holdOf(ctx)
	for i := range imgs {
		imgs[i].held = -1
		st, err := os.Lstat(imgs[i].Path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			// Not the image strata recorded, and never followed: whether
			// to refuse it is image.VerifyImage's to say. (A link to a
			// dm device, /dev/VG/LV, is DeviceMapper's to follow.)
			imgs[i].link = true
			continue
		}
		imgs[i].st = st
		imgs[i].held = hold.fd(st)
	}
	all := make([][]Holder, len(imgs))
	add := func(hs [][]Holder) {
		for i := range hs {
			all[i] = append(all[i], hs[i]...)
		}
	}
	for _, s := range c.First {
		hs, err := s.Holders(ctx, imgs)
		if err != nil {
			return nil, err
		}
		add(hs)
	}
	found := make([][][]Holder, len(c.Sources))
	errs := make([]error, len(c.Sources))
	var wg sync.WaitGroup
	for k, s := range c.Sources {
		wg.Go(func() { found[k], errs[k] = s.Holders(ctx, imgs) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, hs := range found {
		add(hs)
	}
	for i := range all {
		all[i] = dedupe(all[i])
		if slices.ContainsFunc(all[i], func(h Holder) bool { return h.Toolstack == "loop" }) {
			all[i] = slices.DeleteFunc(all[i], func(h Holder) bool { return h.How == unseenWriter })
		}
		if len(all[i]) > 1 {
			// Another source named a holder (a mount, a loop device, a
			// QEMU): the count of opens strata cannot name says less.
			all[i] = slices.DeleteFunc(all[i], func(h Holder) bool { return strings.HasPrefix(h.How, dmUnseen) })
		}
	}
	return all, nil
}

// Holders lists who holds the image at path.
func (c *Checker) Holders(ctx context.Context, path string) ([]Holder, error) {
	hs, err := c.HoldersAll(ctx, []Image{{Path: path}})
	if err != nil {
		return nil, err
	}
	return hs[0], nil
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
	return c.CheckAll(ctx, []Image{{What: what, Path: path}})
}

// CheckAll refuses if anything holds any of imgs, naming the first image
// held and its holders: the first whose holders have a name, if one
// has (the same LV is often among imgs twice, as its /dev/VG/LV link,
// where only DeviceMapper's count of opens is seen, and as its device
// node, where a mount or a loop device is named).
func (c *Checker) CheckAll(ctx context.Context, imgs []Image) error {
	hs, err := c.HoldersAll(ctx, imgs)
	if err != nil {
		return err
	}
	first := -1
	for i, h := range hs {
		if len(h) == 0 {
			continue
		}
		if !slices.ContainsFunc(h, func(h Holder) bool { return !strings.HasPrefix(h.How, dmUnseen) }) {
			if first < 0 {
				first = i
			}
			continue
		}
		return inUse(imgs[i].What, imgs[i].Path, h)
	}
	if first >= 0 {
		return inUse(imgs[first].What, imgs[first].Path, hs[first])
	}
	return nil
}

func inUse(what, path string, hs []Holder) error {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.String()
	}
	return storage.Errorf(storage.ErrInUse, "%s (%s) is in use by %s: strata never changes an image under a running guest or tool; shut the guest down (or let the tool finish) and try again",
		what, path, strings.Join(names, "; "))
}

// Wait waits up to timeout for every holder of path to let go, and for
// every process whose command line names it (Processes.Naming), saying
// once whom it waits for. Recovery uses it: a process that outlived
// strata (a qemu-img still applying a snapshot, or one not yet at the
// point of opening the image) must finish before strata decides what
// state the image is in.
func (c *Checker) Wait(ctx context.Context, what, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	said := false
	for {
		hs, err := c.Holders(ctx, path)
		if err != nil {
			return err
		}
		hs = dedupe(append(hs, c.naming(path)...))
		if len(hs) == 0 {
			return nil
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

// naming is what the checker's process scan (Processes) finds naming the
// image at path on a command line.
func (c *Checker) naming(path string) []Holder {
	for _, s := range append(append([]Source(nil), c.First...), c.Sources...) {
		if p, ok := s.(Processes); ok {
			return p.Naming(path)
		}
	}
	return nil
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

type fileID struct {
	dev, ino uint64
	block    bool
}

// Holders implements Source: one pass over every process's open files.
func (p Processes) Holders(_ context.Context, imgs []Image) ([][]Holder, error) {
	out := make([][]Holder, len(imgs))
	locked := make([]bool, len(imgs))
	written := make([]bool, len(imgs)) // the kernel says someone has it open for writing
	ids := make([]fileID, len(imgs))
	want := map[fileID][]int{}
	for i, img := range imgs {
		if img.st == nil {
			continue
		}
		sys, ok := img.st.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		var err error
		var w writeState
		if locked[i], w, err = lockHeld(img.Path, img.held, img.st.Mode().IsRegular()); err != nil {
			return nil, err
		}
		written[i] = w == writersSome
		if !locked[i] && w == writersNone {
			// Nobody holds its lock and the kernel says nobody has it
			// open for writing: no process here holds it, and the scan
			// of every process's files is not needed.
			continue
		}
		id := fileID{dev: uint64(sys.Dev), ino: sys.Ino}
		if img.st.Mode()&os.ModeDevice != 0 {
			// A block device is opened as a device node: match by rdev.
			id = fileID{dev: uint64(sys.Rdev), block: true}
		}
		ids[i] = id
		want[id] = append(want[id], i)
	}
	if len(want) == 0 {
		return out, nil
	}
	procDir, err := os.Open(p.proc())
	if err != nil {
		return nil, err
	}
	pids, _ := procDir.Readdirnames(-1)
	procDir.Close()
	// The scan is a stat of every open file on the host (hundreds to
	// thousands): split over the CPUs, each fd stat'ed relative to its
	// process's fd directory (no path walk through procfs per file).
	parts := min(runtime.NumCPU(), 4, max(1, len(pids)/32))
	found := make([][][]Holder, parts)
	var wg sync.WaitGroup
	for k := range parts {
		wg.Go(func() { found[k] = p.scan(pids[k*len(pids)/parts:(k+1)*len(pids)/parts], want, locked, len(imgs)) })
	}
	wg.Wait()
	for _, hs := range found {
		for i := range hs {
			out[i] = append(out[i], hs[i]...)
		}
	}
	p.unseenWriters(pids, imgs, ids, written, out)
	for i := range out {
		if locked[i] && len(out[i]) == 0 {
			// Held by a process whose files strata cannot see (another
			// namespace, or one that has just exited): still held.
			out[i] = append(out[i], Holder{How: "a process strata cannot see holds the image's lock"})
		}
		sort.Slice(out[i], func(a, b int) bool { return out[i][a].PID < out[i][b].PID })
	}
	return out, nil
}

// scan looks through the open files of the processes named in pids for
// the files in want (fileID → indexes of imgs; n images in all).
func (p Processes) scan(pids []string, want map[fileID][]int, locked []bool, n int) [][]Holder {
	out := make([][]Holder, n)
	self := os.Getpid()
	for _, name := range pids {
		pid := atoi(name)
		if pid <= 0 || pid == self {
			continue
		}
		fdDir := p.proc() + "/" + name + "/fd"
		d, err := os.Open(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		fds, _ := d.Readdirnames(-1)
		dfd := int(d.Fd())
		found := map[int]bool{}
		for _, fd := range fds {
			var fst unix.Stat_t
			if unix.Fstatat(dfd, fd, &fst, 0) != nil {
				continue
			}
			id := fileID{dev: uint64(fst.Dev), ino: fst.Ino}
			if fst.Mode&unix.S_IFMT == unix.S_IFBLK {
				id = fileID{dev: uint64(fst.Rdev), block: true}
			}
			for _, i := range want[id] {
				if found[i] {
					continue
				}
				writing := openForWriting(p.proc() + "/" + name + "/fdinfo/" + fd)
				if !locked[i] && !writing {
					continue
				}
				found[i] = true
				h := Holder{PID: pid, Program: program(p.proc(), name), Guest: qemuName(p.proc(), name)}
				switch {
				case locked[i] && writing:
					h.How = "holds the image's lock and has it open for writing"
				case locked[i]:
					h.How = "holds the image's lock"
				default:
					h.How = "has the image open for writing"
				}
				out[i] = append(out[i], h)
			}
		}
		d.Close()
	}
	return out
}

// lockHeld tells whether anyone holds a byte-range lock on the image that
// means more than a reader that lets others write: F_OFD_GETLK for a write
// lock reports any conflicting OFD or POSIX lock. QEMU's locks are one
// byte per permission: 100+N while it holds permission N (100 consistent
// read, 101 write, ...), 200+N while it does not let others have it. A
// reader that shares everything (qemu-img -U: `volume list`) holds byte
// 100 alone and does not mind the image changing; a running guest holds
// 101 and 201, a guest reading the image as its backing file 201. held is
// the file strata holds the image with (see Hold), or -1: asked through
// it, the kernel does not count strata's own locks.
//
// For a regular file it also asks the kernel whether any process has it
// open for writing, through a read lease: Linux refuses F_SETLEASE
// F_RDLCK with EAGAIN while the file is open for writing by anyone, in any
// mount or PID namespace (a file descriptor, or a shared mapping whose
// descriptor is closed), and the lease is given back at once. The answer
// is writersUnknown when the kernel cannot tell (leases disabled or not
// allowed, another filesystem): callers then look through the processes'
// files.
func lockHeld(path string, held int, regular bool) (locked bool, w writeState, err error) {
	fd := held
	if fd < 0 {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return false, writersUnknown, nil
			}
			return false, writersUnknown, fmt.Errorf("open %q to look for its users: %w", path, err)
		}
		defer unix.Close(fd)
	}
	for _, r := range [][2]int64{{0, 100}, {101, 0}} { // 0: to the end, and beyond
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: r[0], Len: r[1]}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
			return false, writersUnknown, fmt.Errorf("look for locks on %q: %w", path, err)
		}
		if lk.Type != unix.F_UNLCK {
			return true, writersUnknown, nil
		}
	}
	if !regular {
		return false, writersUnknown, nil
	}
	return false, leaseWriters(fd), nil
}

// writeState is what the kernel says of an image's writers.
type writeState int

const (
	writersUnknown writeState = iota // it cannot tell: look through the processes
	writersNone                      // nobody has it open for writing
	writersSome                      // someone has, whether strata can see them or not
)

// leaseWriters asks whether the kernel lets fd (open read-only) take a
// read lease, which it refuses (EAGAIN) while any process has the file
// open for writing; the lease is released at once. A writer opening the
// file in that instant waits for the release, microseconds (its
// lease-break signal, SIGIO, is one the Go runtime ignores).
func leaseWriters(fd int) writeState {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return writersSome
		}
		return writersUnknown
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return writersNone
}

// noWriters tells whether the kernel says nobody has fd's file open for
// writing.
func noWriters(fd int) bool { return leaseWriters(fd) == writersNone }

// unseenWriters looks again for the writers the kernel counts but no open
// file showed (out[i] empty while written[i]): a process that mapped the
// image shared and writable and closed its descriptor writes it all the
// same, as does a descriptor in flight on a unix socket or registered
// with io_uring, or one of another user's processes when strata is not
// root. Mappings are found in /proc/PID/maps (only for these images, and
// only then: it is a read of every process's maps); a writer still not
// found is reported without a name, unless it is strata itself.
func (p Processes) unseenWriters(pids []string, imgs []Image, ids []fileID, written []bool, out [][]Holder) {
	want := map[fileID][]int{}
	for i := range imgs {
		if written[i] && len(out[i]) == 0 && !ids[i].block {
			want[ids[i]] = append(want[ids[i]], i)
		}
	}
	if len(want) == 0 {
		return
	}
	self := strconv.Itoa(os.Getpid())
	mine := p.mapped(self, want, true)
	for id, is := range want {
		for _, i := range is {
			if mine[i] || p.selfWrites(id) {
				delete(want, id) // strata's own writing (it counts as a writer too)
			}
		}
	}
	for _, name := range pids {
		if name == self || atoi(name) <= 0 || len(want) == 0 {
			continue
		}
		for i := range p.mapped(name, want, false) {
			out[i] = append(out[i], Holder{PID: atoi(name), Program: program(p.proc(), name), Guest: qemuName(p.proc(), name), How: "has the image mapped for writing"})
		}
	}
	for _, is := range want {
		for _, i := range is {
			if len(out[i]) == 0 {
				out[i] = append(out[i], Holder{How: unseenWriter})
			}
		}
	}
}

// unseenWriter is how a writer the kernel counts but strata cannot name
// holds an image. Another source that names it (a loop device, which
// the kernel's own writing is) replaces it.
const unseenWriter = "counts a writer of the image that strata cannot see (another user's process, a descriptor in flight, or the kernel's own)"

// mapped lists the images (indexes into want's lists) that process pid
// maps shared and writable (anyShared: shared at all, which may become
// writable).
func (p Processes) mapped(pid string, want map[fileID][]int, anyShared bool) map[int]bool {
	raw, err := os.ReadFile(p.proc() + "/" + pid + "/maps")
	if err != nil {
		return nil
	}
	var found map[int]bool
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || len(f[1]) < 4 || f[1][3] != 's' || (!anyShared && f[1][1] != 'w') {
			continue
		}
		majMin := strings.SplitN(f[3], ":", 2)
		if len(majMin) != 2 {
			continue
		}
		maj, err1 := strconv.ParseUint(majMin[0], 16, 32)
		mnr, err2 := strconv.ParseUint(majMin[1], 16, 32)
		ino, err3 := strconv.ParseUint(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		for _, i := range want[fileID{dev: unix.Mkdev(uint32(maj), uint32(mnr)), ino: ino}] {
			if found == nil {
				found = map[int]bool{}
			}
			found[i] = true
		}
	}
	return found
}

// selfWrites tells whether strata itself has the file open for writing.
func (p Processes) selfWrites(id fileID) bool {
	dir := p.proc() + "/self/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range fds {
		var st unix.Stat_t
		if unix.Stat(dir+"/"+e.Name(), &st) != nil {
			continue
		}
		if uint64(st.Dev) == id.dev && st.Ino == id.ino && openForWriting(p.proc()+"/self/fdinfo/"+e.Name()) {
			return true
		}
	}
	return false
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
func (BlockClaim) Holders(_ context.Context, imgs []Image) ([][]Holder, error) {
	out := make([][]Holder, len(imgs))
	for i, img := range imgs {
		if img.st == nil || img.st.Mode()&os.ModeDevice == 0 || img.st.Mode()&os.ModeCharDevice != 0 {
			continue
		}
		fd, err := unix.Open(img.Path, unix.O_RDONLY|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("open %q exclusively to look for its users: %w", img.Path, err)
		}
		out[i] = []Holder{{How: "the block device is claimed (mounted, used by device-mapper or md, or attached to a running domain)"}}
	}
	return out, nil
}

// LoopDevices finds loop devices backed by the image (losetup, kpartx, an
// admin mounting a guest's disk to look inside): the kernel holds the file
// with no process file and no lock. The device's backing file is read by
// identity (LOOP_GET_STATUS64), so a rename does not hide it; a block
// device (an LV) backing a loop device is found by its device number.
type LoopDevices struct {
	// Sys is the sysfs root; "" means /sys.
	Sys string
}

// Holders implements Source.
func (l LoopDevices) Holders(_ context.Context, imgs []Image) ([][]Holder, error) {
	out := make([][]Holder, len(imgs))
	want := map[fileID][]int{}
	for i, img := range imgs {
		if img.st == nil {
			continue
		}
		block := img.st.Mode()&os.ModeDevice != 0 && img.st.Mode()&os.ModeCharDevice == 0
		if !img.st.Mode().IsRegular() && !block {
			continue
		}
		if sys, ok := img.st.Sys().(*syscall.Stat_t); ok {
			id := fileID{dev: uint64(sys.Dev), ino: sys.Ino}
			if block {
				id = fileID{dev: uint64(sys.Rdev), block: true}
			}
			want[id] = append(want[id], i)
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	root := l.Sys
	if root == "" {
		root = "/sys"
	}
	loops, _ := filepath.Glob(filepath.Join(root, "block", "loop*", "loop"))
	for _, dir := range loops {
		name := filepath.Base(filepath.Dir(dir))
		fd, err := unix.Open("/dev/"+name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		info, err := unix.IoctlLoopGetStatus64(fd)
		unix.Close(fd)
		if err != nil {
			continue // detached meanwhile
		}
		ids := []fileID{{dev: info.Device, ino: info.Inode}}
		if info.Rdevice != 0 {
			ids = append(ids, fileID{dev: info.Rdevice, block: true})
		}
		for _, id := range ids {
			for _, i := range want[id] {
				out[i] = append(out[i], Holder{Domain: "/dev/" + name, Toolstack: "loop", How: "the image backs a loop device (losetup -d it when done)"})
			}
		}
	}
	return out, nil
}
