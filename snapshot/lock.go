package snapshot

import (
	"time"

	"github.com/strata-vm/strata/storage/store"
)

// targetLock is a target's exclusive lock (store.LockKey), held for the
// whole of an operation on it.
type targetLock struct{ release func() }

func lockTarget(home string, t Target, timeout time.Duration) (*targetLock, error) {
	release, err := store.LockKey(home, t.Key.String(), t.String(), timeout)
	if err != nil {
		return nil, err
	}
	return &targetLock{release: release}, nil
}

// tryLockTarget takes the lock only if it is free now.
func tryLockTarget(home string, t Target) (*targetLock, bool) {
	l, err := lockTarget(home, t, 0)
	return l, err == nil
}

func (l *targetLock) unlock() { l.release() }
