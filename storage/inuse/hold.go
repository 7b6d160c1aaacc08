package inuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Hold keeps guests out of images while strata changes them. A check says
// nobody holds an image now; a guest started by hand a moment later would
// still open it halfway through a rollback. So strata takes, on each image
// it works on, the lock by which QEMU says "I do not share writing" (byte
// 201): every QEMU, and every qemu-img, that opens the image to write tests
// for it and refuses to start ("Failed to get "write" lock"). Readers are
// not kept out: strata's own read-only commands (volume list and info)
// keep working. The lock is an OFD lock: the kernel drops it when strata
// exits, however it exits.
type Hold struct {
	mu    sync.Mutex
	files map[fileID]*os.File
}

type holdKey struct{}

func holdOf(ctx context.Context) *Hold {
	h, _ := ctx.Value(holdKey{}).(*Hold)
	return h
}

// HoldAll takes the hold on every image that exists, then checks that
// nothing else holds any of them (in that order, so nothing slips in
// between). It returns ctx carrying the hold (Keep and Without use it) and
// its release. A ctx that carries a hold already adds to it.
func (c *Checker) HoldAll(ctx context.Context, imgs []Image) (context.Context, func(), error) {
	h := holdOf(ctx)
	release := func() {}
	if h == nil {
		h = &Hold{files: map[fileID]*os.File{}}
		ctx = context.WithValue(ctx, holdKey{}, h)
		release = h.release
	}
	for _, img := range imgs {
		if err := h.add(img.Path); err != nil {
			release()
			return ctx, func() {}, err
		}
	}
	if err := c.CheckAll(ctx, imgs); err != nil {
		release()
		return ctx, func() {}, err
	}
	return ctx, release, nil
}

func idOf(st os.FileInfo) (fileID, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	if st.Mode()&os.ModeDevice != 0 {
		return fileID{dev: uint64(sys.Rdev), block: true}, true
	}
	return fileID{dev: uint64(sys.Dev), ino: sys.Ino}, true
}

// add takes the hold on the image at path (nothing there, or a symlink:
// nothing to hold).
func (h *Hold) add(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && st.Mode()&os.ModeSymlink != 0) {
		return nil
	}
	if err != nil {
		return err
	}
	id, ok := idOf(st)
	if !ok || (!st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0) {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, held := h.files[id]; held {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q to keep guests out of it: %w", path, err)
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Start: 201, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		return fmt.Errorf("lock %q to keep guests out of it: %w", path, err)
	}
	h.files[id] = f
	return nil
}

// fd is the file strata holds the image with (-1: none), so that a check
// made under the hold does not count strata's own locks.
func (h *Hold) fd(st os.FileInfo) int {
	if h == nil || st == nil {
		return -1
	}
	id, ok := idOf(st)
	if !ok {
		return -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, held := h.files[id]; held {
		return int(f.Fd())
	}
	return -1
}

func (h *Hold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, f := range h.files {
		f.Close()
		delete(h.files, id)
	}
}

// Keep adds the image at path to ctx's hold, if ctx has one: a new image
// about to take a live name (a rollback's restored copy) is held before
// any guest can find it there.
func Keep(ctx context.Context, path string) error {
	if h := holdOf(ctx); h != nil {
		return h.add(path)
	}
	return nil
}

// Without runs fn with ctx's hold on the image at path let go, and takes
// it again after: strata's own qemu-img, which changes the image, must
// open it (and holds QEMU's locks itself while it runs).
func Without(ctx context.Context, path string, fn func() error) error {
	h := holdOf(ctx)
	if h == nil {
		return fn()
	}
	if st, err := os.Lstat(path); err == nil {
		if id, ok := idOf(st); ok {
			h.mu.Lock()
			if f, held := h.files[id]; held {
				f.Close()
				delete(h.files, id)
			}
			h.mu.Unlock()
		}
	}
	err := fn()
	return errors.Join(err, h.add(path))
}
