package dir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/image"
)

// LivePoint implements storage.Driver. qcow2-internal disks get their
// internal snapshots from the hypervisor; reflink disks are cloned
// (FICLONE) during the pause (only a reflink: a fallback to a copy would
// pause the guest for as long as the copy); full-copy disks get a
// point-in-time copy that the hypervisor writes into a target while the
// guest runs again (blockdev-backup), so the pause never lasts a copy.
func (Driver) LivePoint(_ context.Context, _ storage.Pool, v storage.Volume, ref storage.PointRef, o storage.LiveOptions) (storage.LivePoint, error) {
	switch ref.Method {
	case MethodQcow2:
		return storage.LivePoint{Mechanism: storage.LiveInternal, Name: ref.Ref}, nil
	case MethodReflink:
		if err := atomicfile.MkdirAll(filepath.Dir(ref.Ref), 0o700); err != nil {
			return storage.LivePoint{}, err
		}
		src, dst := v.Path, ref.Ref
		return storage.LivePoint{Mechanism: storage.LiveClone, Clone: func() error { return image.Reflink(src, dst) },
			Finish: syncPointDir}, nil
	case MethodCopy:
		if err := atomicfile.MkdirAll(filepath.Dir(ref.Ref), 0o700); err != nil {
			return storage.LivePoint{}, err
		}
		if err := checkSpace(v.Path, filepath.Dir(ref.Ref)); err != nil {
			return storage.LivePoint{}, err
		}
		f, err := makeTarget(v, ref.Ref, o.PassFile)
		if err != nil {
			return storage.LivePoint{}, err
		}
		target, format := ref.Ref, v.Format
		return storage.LivePoint{Mechanism: storage.LiveBackup, Target: target, File: f,
			Release: func() error {
				if f != nil {
					f.Close()
				}
				return ownTarget(target)
			},
			Finish: func(ctx context.Context, ref *storage.PointRef) error {
				// QEMU writes the disk's holes as allocated zeros: they
				// become holes again (and the file durable).
				if err := image.PunchZeros(ctx, ref.Ref); err != nil {
					return err
				}
				info, err := image.InspectAs(ref.Ref, format)
				if err != nil {
					return err
				}
				ref.Bytes = &info.AllocatedBytes
				return syncPointDir(ctx, ref)
			}}, nil
	}
	return storage.LivePoint{}, fmt.Errorf("live point: method %q", ref.Method)
}

func syncPointDir(_ context.Context, ref *storage.PointRef) error {
	return image.SyncPath(filepath.Dir(ref.Ref))
}

// makeTarget creates the empty file a live full copy is written into:
// the volume's virtual size, sparse, raw (copy points are of raw volumes).
// With passFD (the caller passes descriptors to the hypervisor: the qemu
// driver) it returns the file open for QEMU to write through (add-fd): the
// file stays strata's, 0600 in its root-only directory, and no other user
// ever holds a descriptor of it; libvirt 8.2+ with virsh passes it on
// too. Otherwise (an older libvirt, or no virsh: go-libvirt cannot pass a
// descriptor with a monitor command) QEMU opens it by path, and it
// is owned as the disk is while QEMU writes it (libvirt's QEMU runs as its
// own user, which owns the images of the guests it runs), in a directory
// that user may pass through; strata's again, and the directory
// root-only, once written (ownTarget). That user, which already writes
// the guest's own disk, can keep a descriptor of the copy meanwhile: the
// README says so.
func makeTarget(v storage.Volume, path string, passFD bool) (*os.File, error) {
	info, err := image.InspectAs(v.Path, v.Format)
	if err != nil {
		return nil, err
	}
	flag := os.O_CREATE | os.O_EXCL | os.O_WRONLY | syscall.O_NOFOLLOW
	if passFD {
		// QEMU's file driver opens its descriptor set read-write.
		flag = os.O_CREATE | os.O_EXCL | os.O_RDWR | syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(info.VirtualSize); err != nil {
		f.Close()
		return nil, err
	}
	if passFD {
		return f, nil
	}
	if st, err := os.Stat(v.Path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != uint32(os.Geteuid()) {
			if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
				f.Close()
				return nil, err
			}
			if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	return nil, f.Close()
}

// ownTarget gives a live copy back to strata's user once QEMU is done
// with it (a point is not the guest's to read or change), and its
// directory back to root-only.
func ownTarget(path string) error {
	err := os.Lchown(path, os.Geteuid(), os.Getegid())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st, err := os.Lstat(filepath.Dir(path)); err == nil && st.IsDir() && st.Mode().Perm() != 0o700 {
		return os.Chmod(filepath.Dir(path), 0o700)
	}
	return nil
}
