package snapshot

import (
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-vm/strata/storage"
)

// targetLock is an exclusive flock on HOME/locks/KEY.lock, held for the
// whole of an operation on one target. The kernel releases it when the
// process dies, which is how a journaled operation is known to be
// abandoned.
type targetLock struct{ f *os.File }

func lockTarget(home string, t Target, timeout time.Duration) (*targetLock, error) {
	dir := filepath.Join(home, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, t.Key+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &targetLock{f: f}, nil
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return nil, storage.Errorf(storage.ErrBusy, "%s is busy: another strata process is working on it; try again or raise --lock-timeout", t)
			}
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryLockTarget takes the lock only if it is free now.
func tryLockTarget(home string, t Target) (*targetLock, bool) {
	l, err := lockTarget(home, t, 0)
	return l, err == nil
}

func (l *targetLock) unlock() {
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}

// lockKeys takes the locks of several keys in sorted order (every process
// takes them in the same order, so two never wait for each other).
func lockKeys(home string, what Target, keys []string, timeout time.Duration) (func(), error) {
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	var held []*targetLock
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].unlock()
		}
	}
	seen := map[string]bool{}
	for _, k := range sorted {
		if seen[k] {
			continue
		}
		seen[k] = true
		t := what
		t.Key = k
		l, err := lockTarget(home, t, timeout)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	return release, nil
}
