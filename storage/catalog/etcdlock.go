package catalog

// Locks and leases on the etcd catalog: what flock gives on one host.
//
// Each strata process that takes a lock gets one lease (TTL from the
// catalog's address, default 10 s) and keeps it alive while it runs;
// every lock it takes is a key bound to that lease, so the locks of a
// process that dies, or of a host that is cut off, go when the lease
// expires. A process that finds its lease gone is fenced: its catalog
// transactions compare that its lock keys still exist and are refused,
// it takes no more locks, and OnLeaseLost is called (strata stops).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
)

// OnLeaseLost is called once when this process's lease on the shared
// catalog is found gone, or could not be renewed in time: its locks may be
// another host's by now, so it must stop before it writes anything more.
// cmd/strata ends the process at once (as a crash would: the journal lets
// any host finish or undo what it was doing).
var OnLeaseLost func(error)

// Holder describes who holds a lock or owns a guest in a shared catalog.
type Holder struct {
	Host  string    `json:"host"`
	Home  string    `json:"home"`
	PID   int       `json:"pid"`
	What  string    `json:"what,omitempty"`
	Since time.Time `json:"since"`
	Lease int64     `json:"lease,string"`
}

func (h Holder) String() string {
	return fmt.Sprintf("host %s (pid %d, since %s)", h.Host, h.PID, h.Since.Format(time.RFC3339))
}

func (s *etcdStore) holder(home, what string) []byte {
	raw, _ := json.Marshal(Holder{Host: s.host, Home: home, PID: os.Getpid(), What: what, Since: time.Now().UTC(), Lease: s.lease})
	return raw
}

type leaseResponse struct {
	ID  i64 `json:"ID"`
	TTL i64 `json:"TTL"`
}

// ensureLease grants this process's lease on first use and keeps it alive.
func (s *etcdStore) ensureLease(deadline time.Time) (int64, error) {
	if err := s.fenceErr(); err != nil {
		return 0, err
	}
	s.leaseMu.Lock() // one grant, whoever asks first
	defer s.leaseMu.Unlock()
	s.mu.Lock()
	id := s.lease
	s.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	var resp leaseResponse
	sent := time.Now()
	if err := s.do(deadline, "/v3/lease/grant", map[string]any{"TTL": i64(s.ttl / time.Second)}, &resp); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.lease = int64(resp.ID)
	s.stopKA, s.kaDone = make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
	go s.keepAlive(int64(resp.ID), sent)
	return int64(resp.ID), nil
}

// keepAlive renews the lease every third of its TTL. The lease is this
// process's until TTL after it sent the last renewal etcd answered (etcd
// counts from when it got it, later still); a fifth of the TTL before
// that, unless renewed, or as soon as etcd says the lease is gone, the
// process is fenced: by then another host may take its locks.
func (s *etcdStore) keepAlive(id int64, granted time.Time) {
	defer close(s.kaDone)
	margin := s.ttl / 5
	watchdog := time.NewTimer(time.Until(granted.Add(s.ttl - margin)))
	defer watchdog.Stop()
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.stopKA:
			return
		case <-watchdog.C:
			s.fence(fmt.Errorf("this process could not renew its lease on the catalog %s in time: its locks may be another host's by now", s.display))
			return
		case <-tick.C:
		}
		sent := time.Now()
		var resp leaseResponse
		err := s.do(sent.Add(s.ttl/3), "/v3/lease/keepalive", map[string]any{"ID": i64(id)}, &resp)
		if err != nil {
			continue // the watchdog decides
		}
		if resp.TTL <= 0 {
			s.fence(fmt.Errorf("this process lost its lease on the catalog %s (etcd says it has expired): its locks may be another host's by now", s.display))
			return
		}
		watchdog.Reset(time.Until(sent.Add(s.ttl - margin)))
	}
}

var leaseLostCalled atomic.Bool

func (s *etcdStore) fence(err error) {
	s.mu.Lock()
	if s.fenced == nil {
		s.fenced = storage.Errorf(storage.ErrBusy, "%v; strata stopped before writing: run the command again", err)
	}
	err = s.fenced
	s.mu.Unlock()
	log.Error().Err(err).Msg("fenced")
	if OnLeaseLost != nil && leaseLostCalled.CompareAndSwap(false, true) {
		OnLeaseLost(err)
	}
}

func (s *etcdStore) fenceErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenced
}

// fences are the compares that hold a transaction to this process still
// holding its locks.
func (s *etcdStore) fences() ([]compare, error) {
	if err := s.fenceErr(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]compare, 0, len(s.held))
	for k, rev := range s.held {
		out = append(out, createdIs(k, rev))
	}
	return out, nil
}

// checkFences fences the process if one of its lock keys is gone.
func (s *etcdStore) checkFences(deadline time.Time) error {
	s.mu.Lock()
	held := make(map[string]int64, len(s.held))
	for k, v := range s.held {
		held[k] = v
	}
	s.mu.Unlock()
	for k, rev := range held {
		var resp rangeResponse
		if err := s.do(deadline, "/v3/kv/range", rangeRequest{Key: []byte(k), KeysOnly: true}, &resp); err != nil {
			return err
		}
		if len(resp.Kvs) == 0 || int64(resp.Kvs[0].CreateRevision) != rev {
			s.fence(fmt.Errorf("this process's lock %s on the catalog %s is gone (its lease expired)", k, s.display))
			return s.fenceErr()
		}
	}
	return nil
}

// acquire puts key (the holder's record) bound to the lease once it is
// absent, waiting up to timeout; busy makes the error from the record of
// the holder that kept it.
func (s *etcdStore) acquire(key, home, what string, timeout time.Duration, busy func(h Holder, found bool) error) (func(), error) {
	deadline := time.Now().Add(timeout)
	callDeadline := deadline
	if timeout < s.timeout {
		callDeadline = time.Now().Add(s.timeout)
	}
	if err := s.awaitOp(); err != nil {
		return nil, err
	}
	lease, err := s.ensureLease(callDeadline)
	if err != nil {
		return nil, err
	}
	return s.putWhenAbsent(key, key, s.holder(home, what), lease, deadline, func() time.Time { return callDeadline }, busy)
}

// putWhenAbsent puts key (the holder's record value, bound to lease) once
// absent has no value, trying every 20 ms until deadline; busy makes the
// error from the record absent holds then. Each call to etcd ends by
// callDeadline().
func (s *etcdStore) putWhenAbsent(key, absent string, value []byte, lease int64, deadline time.Time, callDeadline func() time.Time, busy func(h Holder, found bool) error) (func(), error) {
	for {
		req := txnRequest{
			Compare: []compare{createdIs(absent, 0)},
			Success: []op{{Put: &putRequest{Key: []byte(key), Value: value, Lease: i64(lease)}}},
			Failure: []op{{Range: &rangeRequest{Key: []byte(absent)}}},
		}
		var resp txnResponse
		if err := s.do(callDeadline(), "/v3/kv/txn", req, &resp); err != nil {
			return nil, err
		}
		rev, ok := int64(0), resp.Succeeded
		if ok {
			rev = int64(resp.Header.Revision)
		} else if kv := rangeKV(resp); kv != nil && key == absent && int64(kv.Lease) == lease && bytes.Equal(kv.Value, value) {
			// This process's own record, put by an earlier send whose
			// reply was lost: the lock is held, since then.
			rev, ok = int64(kv.CreateRevision), true
		}
		if ok {
			s.mu.Lock()
			s.held[key] = rev
			s.mu.Unlock()
			return func() { s.release(key, rev) }, nil
		}
		if time.Now().After(deadline) {
			var h Holder
			found := false
			if kv := rangeKV(resp); kv != nil {
				found = json.Unmarshal(kv.Value, &h) == nil
			}
			return nil, busy(h, found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rangeKV is the key a transaction's first response (a range) found, or
// nil.
func rangeKV(resp txnResponse) *keyValue {
	if len(resp.Responses) > 0 && resp.Responses[0].Range != nil && len(resp.Responses[0].Range.Kvs) > 0 {
		return &resp.Responses[0].Range.Kvs[0]
	}
	return nil
}

// release deletes a lock key if it is still the one this process made.
func (s *etcdStore) release(key string, rev int64) {
	s.mu.Lock()
	delete(s.held, key)
	s.mu.Unlock()
	req := txnRequest{Compare: []compare{createdIs(key, rev)}, Success: []op{{Delete: &deleteRequest{Key: []byte(key)}}}}
	var resp txnResponse
	if err := s.do(time.Now().Add(s.timeout), "/v3/kv/txn", req, &resp); err != nil {
		log.Warn().Err(err).Str("lock", key).Msg("lock not released: it goes when this process's lease expires")
	}
}

// Close revokes this process's lease (its locks go at once) and stops
// keeping it alive. Without Close they go when the lease expires.
func (c *Catalog) Close() {
	s := c.remote
	if s == nil {
		return
	}
	if err := s.awaitOp(); err != nil {
		// Closing anyway: the lease's locks go with it, or lapse.
		log.Debug().Err(err).Msg("closing the shared catalog before its last operation answered")
	}
	s.mu.Lock()
	id, stop, done := s.lease, s.stopKA, s.kaDone
	s.lease = 0
	s.mu.Unlock()
	if id == 0 {
		return
	}
	close(stop)
	<-done
	var resp struct{}
	if err := s.do(time.Now().Add(2*time.Second), "/v3/lease/revoke", map[string]any{"ID": i64(id)}, &resp); err != nil {
		log.Debug().Err(err).Msg("could not revoke this process's lease on the shared catalog: its locks go when it expires")
	}
}

// SharedLock is store.LockKey on a shared catalog: ok is false when the
// catalog of home is the bbolt file (the caller then takes its file lock).
func SharedLock(home, key, what string, timeout time.Duration) (release func(), ok bool, err error) {
	s := remoteOf(home)
	if s == nil {
		return nil, false, nil
	}
	release, err = s.acquire(s.prefix+"/locks/"+key, home, what, timeout, func(h Holder, found bool) error {
		if found && h.Host != s.host {
			return storage.Errorf(storage.ErrBusy, "%s is busy: a strata process on %s is working on it; try again or raise --lock-timeout", what, h)
		}
		return storage.Errorf(storage.ErrBusy, "%s is busy: another strata process is working on it; try again or raise --lock-timeout", what)
	})
	return release, true, err
}

var opSeq atomic.Int64

// SharedOpLock is the state home's operation lock (store.OpLock) on a
// shared catalog: every strata process of every host holds it shared,
// doctor --repair exclusive. ok is false for the bbolt file.
func SharedOpLock(home string, exclusive bool, timeout time.Duration) (release func(), ok bool, err error) {
	s := remoteOf(home)
	if s == nil {
		return nil, false, nil
	}
	excl := s.prefix + "/op/exclusive"
	busy := func(h Holder, found bool) error {
		who := "strata doctor --repair"
		if found {
			who += " on " + h.String()
		}
		return storage.Errorf(storage.ErrBusy, "the shared catalog %s is busy (%s, or other strata processes while it waits); try again or raise --lock-timeout", s.display, who)
	}
	if !exclusive {
		// Taken while the command reads: every transaction's end and
		// every lock wait for it (awaitOp), so nothing is written, on the
		// pools or in the catalog, before it is held.
		pending := make(chan struct{})
		var rel func()
		s.mu.Lock()
		s.opPending, s.opErr = pending, nil
		s.mu.Unlock()
		go func() {
			var err error
			rel, err = s.takeShared(home, excl, timeout, busy)
			s.mu.Lock()
			s.opErr = err
			s.mu.Unlock()
			close(pending)
		}()
		return func() {
			<-pending
			if rel != nil {
				rel()
			}
			s.mu.Lock()
			if s.opPending == pending {
				s.opPending, s.opErr = nil, nil
			}
			s.mu.Unlock()
		}, true, nil
	}
	deadline := time.Now().Add(timeout)
	rel, err := s.acquire(excl, home, "doctor --repair", timeout, busy)
	if err != nil {
		return nil, true, err
	}
	// No new shared hold starts now; wait for those there are to end.
	p := s.prefix + "/op/shared/"
	for {
		var resp rangeResponse
		if err := s.do(time.Now().Add(s.timeout), "/v3/kv/range", rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), CountOnly: true}, &resp); err != nil {
			rel()
			return nil, true, err
		}
		if resp.Count == 0 {
			return rel, true, nil
		}
		if time.Now().After(deadline) {
			rel()
			return nil, true, storage.Errorf(storage.ErrBusy, "the shared catalog %s is busy: %d strata processes are working on it; try again or raise --lock-timeout", s.display, resp.Count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// takeShared puts this process's shared hold of the operation lock, once
// no exclusive one is there, waiting up to timeout.
func (s *etcdStore) takeShared(home, excl string, timeout time.Duration, busy func(Holder, bool) error) (func(), error) {
	lease, err := s.ensureLease(time.Now().Add(max(timeout, s.timeout)))
	if err != nil {
		return nil, err
	}
	key := s.prefix + "/op/shared/" + strconv.FormatInt(lease, 16) + "-" + strconv.FormatInt(opSeq.Add(1), 10)
	deadline := time.Now().Add(timeout)
	return s.putWhenAbsent(key, excl, s.holder(home, "operation"), lease, deadline, func() time.Time { return time.Now().Add(max(timeout, s.timeout)) }, busy)
}

// awaitOp waits for this process's shared hold of the operation lock, if
// it is being taken, and returns why it could not be.
func (s *etcdStore) awaitOp() error {
	s.mu.Lock()
	pending := s.opPending
	s.mu.Unlock()
	if pending == nil {
		return nil
	}
	<-pending
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opErr
}
