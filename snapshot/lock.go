package snapshot

import (
	"sort"
	"time"

	"github.com/strata-vm/strata/storage/store"
)

// targetLock is a target's exclusive lock (store.LockKey), held for the
// whole of an operation on it.
type targetLock struct{ release func() }

func lockTarget(home string, t Target, timeout time.Duration) (*targetLock, error) {
	release, err := store.LockKey(home, t.Key, t.String(), timeout)
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
