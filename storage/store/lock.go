package store

import (
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

// LockKey takes the exclusive lock HOME/locks/KEY.lock, waiting up to
// timeout, and returns its release. It is held for the whole of an
// operation on one thing: a volume ("v-ID"), a guest ("g-ID"), a golden
// image. The kernel releases it when the process dies, which is how an
// interrupted operation is known to be abandoned. what names the thing in
// the "busy" error. With a shared catalog (etcd) it is an etcd lock bound
// to this process's lease instead, which goes when the process dies or
// its host is cut off for longer than the lease.
func LockKey(home, key, what string, timeout time.Duration) (func(), error) {
	if release, ok, err := catalog.SharedLock(home, key, what, timeout); ok {
		return release, err // an etcd lock bound to this process's lease
	}
	dir := filepath.Join(home, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, key+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return nil, storage.Errorf(storage.ErrBusy, "%s is busy: another strata process is working on it; try again or raise --lock-timeout", what)
			}
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockVolume takes a volume's lock, the one restore point and golden
// operations on it hold: a resize or delete never runs in their middle.
func (s *Store) lockVolume(v storage.Volume) (func(), error) {
	return LockKey(s.Catalog.Home(), "v-"+v.ID, "volume:"+v.Name, s.lockTimeout)
}

// LockGuest takes a guest's lock, the one restore point operations on it
// hold, and returns its release and the guest's ID (check it again inside
// the transaction that changes the guest: it may have been replaced).
func (s *Store) LockGuest(name string) (func(), string, error) {
	var g storage.Guest
	if err := s.Catalog.View(func(tx *catalog.Tx) (err error) { g, err = tx.Guest(name); return err }); err != nil {
		return nil, "", err
	}
	unlock, err := LockKey(s.Catalog.Home(), "g-"+g.ID, "guest:"+g.Name, s.lockTimeout)
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
