package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// Images are opened as the file recorded, never through a symbolic link:
// the directory of an image imported in place may be writable by someone
// who is not root, who could otherwise swap the image for a link to a host
// file (/etc/shadow) and have strata copy it into a restore point, hand it
// back by a rollback, or truncate it by a resize. Every path strata records
// has its links resolved at registration (storage.RealPath), so a link on
// the way to an image is one that appeared later.

// OpenImage opens an image file or device for reading (flag O_RDONLY) or
// writing without following a symbolic link anywhere in path (openat2
// RESOLVE_NO_SYMLINKS; on kernels without openat2, O_NOFOLLOW on the last
// component).
func OpenImage(path string, flag int) (*os.File, error) {
	fd, err := openNoLinks(path, flag|unix.O_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func openNoLinks(path string, flag int) (int, error) {
	fd, err := openNoLinksAt(path, flag)
	if err == unix.ELOOP {
		if dev, ok := devLink(path); ok {
			return openNoLinksAt(dev, flag)
		}
	}
	return fd, err
}

func openNoLinksAt(path string, flag int) (int, error) {
	for {
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: uint64(flag), Resolve: unix.RESOLVE_NO_SYMLINKS})
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS || err == unix.EPERM && !filepath.IsAbs(path):
			// No openat2 (before Linux 5.6, or a seccomp filter).
			return unix.Open(path, flag|unix.O_NOFOLLOW, 0)
		}
		return fd, err
	}
}

// devLink follows a link under /dev that leads to a block device under
// /dev (LVM's /dev/VG/LV, udev's names): only root makes them, and a
// device's stable name is such a link.
func devLink(path string) (string, bool) {
	if !strings.HasPrefix(filepath.Clean(path), "/dev/") {
		return "", false
	}
	dev, err := filepath.EvalSymlinks(path)
	if err != nil || !strings.HasPrefix(dev, "/dev/") {
		return "", false
	}
	if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return "", false
	}
	return dev, true
}

// isLinkError tells whether an open failed because of a symbolic link.
func isLinkError(err error) bool {
	return errors.Is(err, unix.ELOOP)
}

// Identify returns the identity of the file at path (not following links):
// what VerifyImage compares against.
func Identify(path string) (storage.FileID, error) {
	st, err := statNoLinks(path)
	if err != nil {
		return storage.FileID{}, err
	}
	return st.id, nil
}

type fileStat struct {
	id    storage.FileID
	mode  uint32 // S_IFMT bits
	nlink uint32
}

// statNoLinks stats path without following a link, with the file's birth
// time where the filesystem keeps one: an inode number is reused as soon
// as its file is deleted, a birth time is not.
func statNoLinks(path string) (fileStat, error) {
	fd, err := openNoLinks(path, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return fileStat{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
		return fileStat{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	fs := fileStat{
		id:    storage.FileID{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino, UID: st.Uid},
		mode:  uint32(st.Mode) & unix.S_IFMT,
		nlink: st.Nlink,
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		fs.id.Birth = st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
	}
	if fs.mode == unix.S_IFLNK { // O_PATH|O_NOFOLLOW opens the link itself
		return fileStat{}, &os.PathError{Op: "open", Path: path, Err: unix.ELOOP}
	}
	return fs, nil
}

// VerifyImage checks, before strata reads or writes a volume's image, that
// its path still leads to the file registered: not through a symbolic
// link, of the recorded kind (regular file or block device), and the file
// recorded (device and inode). A different file is accepted only as strata
// itself leaves one when it replaces an image by a rename (a rollback, a
// flatten): on the same filesystem, with the recorded owner. Someone who
// can write the image's directory cannot make a file of another owner
// there: not by a copy, and not by a hard link while the kernel protects
// hard links (fs.protected_hardlinks, on by default); where it does not,
// the file must have a single link. An image that does not exist passes
// (the caller reports it as missing). A refusal wraps storage.ErrPrecondition
// and says what to do.
func VerifyImage(v storage.Volume) error {
	st, err := statNoLinks(v.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil && isLinkError(err):
		return storage.Errorf(storage.ErrPrecondition, "volume %q: the path of its image %q now goes through a symbolic link%s, which strata never follows (it could lead to any host file): put the image file back at that path, or delete the volume ('strata volume delete %s' keeps an imported file) and import the file you mean", v.Name, v.Path, linkTarget(v.Path), v.Name)
	case err != nil:
		return fmt.Errorf("volume %q: %w", v.Name, err)
	}
	if v.Device {
		if st.mode != unix.S_IFBLK {
			return storage.Errorf(storage.ErrPrecondition, "volume %q was registered as the block device %q, which is no longer a block device: check the device, or delete the volume and import what is there now", v.Name, v.Path)
		}
		return nil // only root makes device nodes; LVM re-creates them at will
	}
	if st.mode != unix.S_IFREG {
		return storage.Errorf(storage.ErrPrecondition, "volume %q: its image %q is no longer a regular file: put the image back, or delete the volume and import what is there now", v.Name, v.Path)
	}
	f, now := v.File, st.id
	if f == nil || (f.Dev == now.Dev && f.Ino == now.Ino && f.Birth == now.Birth) {
		return nil // the same file (its owner may change: libvirt chowns images)
	}
	if now.Dev == f.Dev && now.UID == f.UID && (st.nlink == 1 || protectedHardlinks()) {
		return nil // strata's own replacement (see above)
	}
	return storage.Errorf(storage.ErrPrecondition, "volume %q: its image %q is no longer the file registered (it was replaced by a file owned by uid %d with %d links): strata does not read or write a file swapped in behind its back; check who replaced it, put the image back, or delete the volume ('strata volume delete %s' keeps the file) and import the file you mean", v.Name, v.Path, now.UID, st.nlink, v.Name)
}

// protectedHardlinks tells whether the kernel refuses to let a user make a
// hard link to a file they do not own.
func protectedHardlinks() bool {
	b, err := os.ReadFile("/proc/sys/fs/protected_hardlinks")
	return err == nil && len(b) > 0 && b[0] == '1'
}

func linkTarget(path string) string {
	if t, err := os.Readlink(path); err == nil {
		return fmt.Sprintf(" (to %q)", t)
	}
	return ""
}

// Pseudo filesystems whose files are the kernel's, never disk images: their
// sizes are made up (0, or /proc/kcore's 128 TiB) and reading them can
// block, fail or disclose kernel memory.
var pseudoFS = map[int64]string{
	unix.PROC_SUPER_MAGIC:    "proc",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.CGROUP_SUPER_MAGIC:  "cgroup",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2",
	unix.BPF_FS_MAGIC:        "bpf",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	unix.PSTOREFS_MAGIC:      "pstore",
}

func checkPseudoFS(path string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return nil // the open that follows reports it
	}
	if name, ok := pseudoFS[int64(fs.Type)]; ok {
		return storage.Errorf(storage.ErrInvalid, "%q is a file of the kernel's %s filesystem, not a disk image: give the path of an image file or block device", path, name)
	}
	return nil
}

// QemuImgRead is the argv of a qemu-img subcommand that only reads an
// image (info, dd, check without -r, convert from it, compare, map): with
// -U (force-share), so that it neither takes nor waits for the image lock
// QEMU and writing qemu-img commands hold. A running guest or a restore
// point being taken must never make a read fail, nor a read make them
// fail. Its answer about an image being written at that moment may be a
// moment old, which is all a reader asks.
func QemuImgRead(sub string, args ...string) []string {
	return append([]string{"qemu-img", sub, "-U"}, args...)
}

// ownerWritable tells whether a non-root user may replace entries of dir:
// it is owned by one, or writable by group or others.
func ownerWritable(dir string) (bool, uint32) {
	st, err := os.Stat(dir)
	if err != nil {
		return false, 0
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 0 {
		return true, sys.Uid
	}
	return st.Mode().Perm()&0o022 != 0 && st.Mode()&os.ModeSticky == 0, sys.Uid
}

// WritableByOthers reports whether the directory holding path lets someone
// other than root replace path (a warning for an in-place import: strata
// checks the image before each use, but the owner of the directory can
// still change what the guest sees).
func WritableByOthers(path string) (bool, string) {
	dir := filepath.Dir(path)
	w, uid := ownerWritable(dir)
	if !w {
		return false, ""
	}
	if uid != 0 {
		return true, fmt.Sprintf("directory %q is owned by uid %d", dir, uid)
	}
	return true, fmt.Sprintf("directory %q is writable by group or others", dir)
}
