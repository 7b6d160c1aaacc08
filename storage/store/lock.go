package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// LockKey takes the exclusive lock HOME/locks/KEY.lock, waiting up to
// timeout, and returns its release. It is held for the whole of an
// operation on one thing: a volume, a guest, a golden image (KEY is then
// its catalog.TargetKey's string), a guest's run or install. The kernel releases it when the process dies, which is how an
// interrupted operation is known to be abandoned. what names the thing in
// the "busy" error. With a shared catalog (etcd) it is an etcd lock bound
// to this process's lease instead, which goes when the process dies or
// its host is cut off for longer than the lease.
func LockKey(home, key, what string, timeout time.Duration) (func(), error) {
	if release, ok, err := catalog.SharedLock(home, key, what, timeout); ok {
		return release, err // an etcd lock bound to this process's lease
	}
	f, err := openLock(home, key+".lock")
	if err != nil {
		return nil, err
	}
	if err := flockWait(f, unix.LOCK_EX, timeout); err != nil {
		if errors.Is(err, errLockBusy) {
			return nil, storage.Errorf(storage.ErrBusy, "%s is busy: another strata process is working on it; try again or raise --lock-timeout", what)
		}
		return nil, err
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN) // the Close below drops it anyway
		f.Close()
	}, nil
}

func openLock(home, name string) (*os.File, error) {
	dir := filepath.Join(home, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
}

var errLockBusy = errors.New("lock busy")

// flockWait takes the flock how (LOCK_EX or LOCK_SH) of f, polling until
// timeout passes; f is closed on failure (errLockBusy after the timeout).
// flock has no timed wait: a blocking flock could only be given up by a
// signal.
func flockWait(f *os.File, how int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return errLockBusy
			}
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Lock is one lock of a set: its key (as LockKey's) and what it names in
// a "busy" error.
type Lock struct{ Key, What string }

// LockSet takes the locks read names and returns their release. The
// locks are taken in key order (every process takes them in the same
// order, so two never wait for each other), then read is called again
// with them held: what it names may have changed while strata waited (a
// guest given another disk by a command that held the guest's lock), and
// a lock it names now that is not held starts the whole over. A key named
// twice is taken once. After ten tries it gives up with ErrBusy.
func LockSet(home string, timeout time.Duration, read func() ([]Lock, error)) (func(), error) {
	for attempt := 1; ; attempt++ {
		want, err := read()
		if err != nil {
			return nil, err
		}
		release, held, err := lockSorted(home, want, timeout)
		if err != nil {
			return nil, err
		}
		now, err := read()
		if err != nil {
			release()
			return nil, err
		}
		if allHeld(now, held) {
			return release, nil
		}
		release()
		if attempt == 10 {
			return nil, storage.Errorf(storage.ErrBusy, "what %s involves kept changing while strata waited for its locks: try again", want[0].What)
		}
	}
}

func lockSorted(home string, locks []Lock, timeout time.Duration) (func(), map[string]bool, error) {
	sorted := slices.Clone(locks)
	slices.SortStableFunc(sorted, func(a, b Lock) int { return strings.Compare(a.Key, b.Key) })
	var releases []func()
	release := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	held := map[string]bool{}
	for _, l := range sorted {
		if held[l.Key] {
			continue
		}
		r, err := LockKey(home, l.Key, l.What, timeout)
		if err != nil {
			release()
			return nil, nil, err
		}
		releases = append(releases, r)
		held[l.Key] = true
	}
	return release, held, nil
}

func allHeld(locks []Lock, held map[string]bool) bool {
	for _, l := range locks {
		if !held[l.Key] {
			return false
		}
	}
	return true
}

// lockVolume takes a volume's lock, the one restore point and golden
// operations on it hold: a resize or delete never runs in their middle.
func (s *Store) lockVolume(v storage.Volume) (func(), error) {
	return LockKey(s.Catalog.Home(), catalog.VolumeKey(v.ID).String(), "volume:"+v.Name, s.lockTimeout)
}

// LockGuest takes a guest's lock, the one restore point operations on it
// hold, and returns its release and the guest's ID (check it again inside
// the transaction that changes the guest: it may have been replaced).
func (s *Store) LockGuest(name string) (func(), string, error) {
	var g storage.Guest
	if err := s.Catalog.View(func(tx *catalog.Tx) (err error) { g, err = tx.Guest(name); return err }); err != nil {
		return nil, "", err
	}
	unlock, err := LockKey(s.Catalog.Home(), catalog.GuestKey(g.ID).String(), "guest:"+g.Name, s.lockTimeout)
	return unlock, g.ID, err
}

// SameGuest refuses to go on if the guest called name is no longer the one
// whose lock is held (deleted and defined again meanwhile).
func SameGuest(g storage.Guest, id string) error {
	if g.ID != id {
		return storage.Errorf(storage.ErrBusy, "guest %q changed while strata waited for its lock: try again", g.Name)
	}
	return nil
}
