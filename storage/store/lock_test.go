package store_test

import (
	"errors"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/store"
)

// The set is read again once its locks are held: a lock it names only
// then (a disk added while strata waited) is taken before the caller goes
// on, and every lock of the set is held until the release.
func TestLockSetTakesWhatTheSetGainedWhileWaiting(t *testing.T) {
	home := t.TempDir()
	reads := 0
	release, err := store.LockSet(home, 0, func() ([]store.Lock, error) {
		reads++
		set := []store.Lock{{Key: "v-b", What: "volume:b"}, {Key: "g-a", What: "guest:a"}}
		if reads > 1 {
			set = append(set, store.Lock{Key: "v-c", What: "volume:c"})
		}
		return set, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if reads != 4 {
		t.Errorf("the set was read %d times, want 4 (read, re-read that grew, read, re-read)", reads)
	}
	for _, k := range []string{"g-a", "v-b", "v-c"} {
		if _, err := store.LockKey(home, k, k, 0); !errors.Is(err, storage.ErrBusy) {
			t.Errorf("%s is not held: %v", k, err)
		}
	}
	release()
	for _, k := range []string{"g-a", "v-b", "v-c"} {
		r, err := store.LockKey(home, k, k, 0)
		if err != nil {
			t.Errorf("%s still held after the release: %v", k, err)
			continue
		}
		r()
	}
}

// A set that keeps growing gives up busy, holding nothing; a lock held
// elsewhere gives the busy error that names what it locks.
func TestLockSetBusy(t *testing.T) {
	home := t.TempDir()
	n := 0
	_, err := store.LockSet(home, 0, func() ([]store.Lock, error) {
		n++
		return []store.Lock{{Key: "g-x", What: "guest:x"}, {Key: "v-" + string(rune('a'+n)), What: "volume"}}, nil
	})
	if !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("a set that never settles: %v", err)
	}
	r, err := store.LockKey(home, "g-x", "guest:x", 0)
	if err != nil {
		t.Fatalf("g-x still held: %v", err)
	}
	_, err = store.LockSet(home, 0, func() ([]store.Lock, error) {
		return []store.Lock{{Key: "g-x", What: "guest:x"}}, nil
	})
	if !errors.Is(err, storage.ErrBusy) || err.Error() != "guest:x is busy: another strata process is working on it; try again or raise --lock-timeout" {
		t.Errorf("held elsewhere: %v", err)
	}
	r()
}
