package catalog

// Guest ownership in a shared catalog: one guest runs on one host.
//
// A guest belongs to a host (its placement, record guest_hosts/ID, set by
// its first start and by 'guest move'): another host may not start it
// until it is handed over. While it runs, its host holds a claim,
// PREFIX/owners/ID, bound to a lease of the guest's own that a small
// keeper process on that host renews for as long as the guest runs
// (KeepGuest): a host that dies or is cut off loses the claim when the
// lease expires, so a crashed host never wedges a guest. Starting the
// guest elsewhere is refused while the claim lives, naming the host.

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/strata-vm/strata/storage"
)

// bGuestHosts: guest ID → Placement.
const bGuestHosts = "guest_hosts"

// Placement is the host a guest belongs to in a shared catalog.
type Placement struct {
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

// GuestHost returns the host the guest with id belongs to; false if none
// yet (or the catalog is not shared).
func (t *Tx) GuestHost(id string) (Placement, bool, error) {
	var p Placement
	ok, err := t.Get(bGuestHosts, id, &p)
	return p, ok, err
}

func (s *etcdStore) ownerKey(id string) string { return s.prefix + "/owners/" + id }

// GuestOwner returns the claim of the host running the guest with id;
// false if none lives (or the catalog is not shared).
func (c *Catalog) GuestOwner(id string) (Holder, bool, error) {
	s := c.remote
	if s == nil {
		return Holder{}, false, nil
	}
	var resp rangeResponse
	if err := s.do(time.Now().Add(c.timeout), "/v3/kv/range", rangeRequest{Key: []byte(s.ownerKey(id))}, &resp); err != nil {
		return Holder{}, false, err
	}
	if len(resp.Kvs) == 0 {
		return Holder{}, false, nil
	}
	var h Holder
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return Holder{}, false, err
	}
	return h, true, nil
}

func (c *Catalog) runningElsewhere(name string, h Holder) error {
	return storage.Errorf(storage.ErrInUse, "guest %q runs on %s: stop it there first (if that host is down, its claim lapses within %s of its last renewal)", name, h, c.remote.ttl)
}

// ClaimGuest makes this host the one running the guest with id, before
// it starts: refused (storage.ErrInUse, naming the host) while another
// host's claim lives, and (storage.ErrPrecondition) while the guest
// belongs to another host. It returns the claim's lease: hand it to
// KeepGuest once the guest runs, or to ReleaseGuest if it did not start.
// With the bbolt catalog it does nothing and returns 0.
func (c *Catalog) ClaimGuest(id, name string) (int64, error) {
	s := c.remote
	if s == nil {
		return 0, nil
	}
	if h, ok, err := c.GuestOwner(id); err != nil {
		return 0, err
	} else if ok && h.Host != s.host {
		return 0, c.runningElsewhere(name, h)
	}
	if err := c.Update(func(tx *Tx) error {
		p, ok, err := tx.GuestHost(id)
		if err != nil {
			return err
		}
		if ok && p.Host != s.host {
			return storage.Errorf(storage.ErrPrecondition, "guest %q belongs to host %s: hand it over first with 'strata guest move %s --to %s' (while it is stopped)", name, p.Host, name, s.host)
		}
		if ok {
			return nil
		}
		return tx.Put(bGuestHosts, id, Placement{Host: s.host, Since: time.Now().UTC()})
	}); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(c.timeout)
	var lr leaseResponse
	if err := s.do(deadline, "/v3/lease/grant", map[string]any{"TTL": i64(s.ttl / time.Second)}, &lr); err != nil {
		return 0, err
	}
	lease := int64(lr.ID)
	raw, _ := json.Marshal(Holder{Host: s.host, Home: c.home, PID: os.Getpid(), What: name, Since: time.Now().UTC(), Lease: lease})
	key := s.ownerKey(id)
	for try := 0; try < 3; try++ {
		var resp txnResponse
		req := txnRequest{
			Compare: []compare{createdIs(key, 0)},
			Success: []op{{Put: &putRequest{Key: []byte(key), Value: raw, Lease: i64(lease)}}},
			Failure: []op{{Range: &rangeRequest{Key: []byte(key)}}},
		}
		if err := s.do(deadline, "/v3/kv/txn", req, &resp); err != nil {
			c.ReleaseGuest(lease)
			return 0, err
		}
		if resp.Succeeded {
			return lease, nil
		}
		kvs := resp.Responses[0].Range.Kvs
		if len(kvs) == 0 {
			continue // gone meanwhile
		}
		var h Holder
		_ = json.Unmarshal(kvs[0].Value, &h)
		if h.Host != s.host {
			c.ReleaseGuest(lease)
			return 0, c.runningElsewhere(name, h)
		}
		// This host's own claim, left by a keeper whose guest is not
		// running here (the caller checked): take it over.
		req = txnRequest{
			Compare: []compare{modIs(key, int64(kvs[0].ModRevision))},
			Success: []op{{Put: &putRequest{Key: []byte(key), Value: raw, Lease: i64(lease)}}},
		}
		if err := s.do(deadline, "/v3/kv/txn", req, &resp); err != nil {
			c.ReleaseGuest(lease)
			return 0, err
		}
		if resp.Succeeded {
			if h.Lease != 0 {
				c.ReleaseGuest(h.Lease)
			}
			return lease, nil
		}
	}
	c.ReleaseGuest(lease)
	return 0, storage.Errorf(storage.ErrBusy, "guest %q: its claim kept changing: try again", name)
}

// ReleaseGuest ends a claim at once (its lease is revoked).
func (c *Catalog) ReleaseGuest(lease int64) {
	if c.remote == nil || lease == 0 {
		return
	}
	var resp struct{}
	if err := c.remote.do(time.Now().Add(c.timeout), "/v3/lease/revoke", map[string]any{"ID": i64(lease)}, &resp); err != nil {
		log.Debug().Err(err).Msg("could not revoke a guest's claim on the shared catalog: it goes when its lease expires")
	}
}

// KeepGuest renews a claim while running() says the guest runs here, and
// ends it when it stops (or ctx ends). It returns when the claim ends; an
// error if etcd says the lease is gone (another host may start the guest
// now) or cannot be reached for longer than the lease.
func (c *Catalog) KeepGuest(ctx context.Context, lease int64, running func() bool) error {
	s := c.remote
	if s == nil || lease == 0 {
		return nil
	}
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			c.ReleaseGuest(lease)
			return nil
		case <-check.C:
			if !running() {
				c.ReleaseGuest(lease)
				return nil
			}
			continue
		case <-tick.C:
		}
		var resp leaseResponse
		err := s.do(time.Now().Add(s.ttl/3), "/v3/lease/keepalive", map[string]any{"ID": i64(lease)}, &resp)
		switch {
		case err == nil && resp.TTL > 0:
			last = time.Now()
		case err == nil:
			return storage.Errorf(storage.ErrBusy, "the claim on the guest has expired: another host may start it")
		case time.Since(last) > s.ttl:
			return storage.Errorf(storage.ErrBusy, "the claim on the guest could not be renewed for %s (%v): another host may start it", s.ttl, err)
		}
	}
}

// MoveGuest hands a stopped guest over to host to: its placement changes;
// refused while a host's claim on it lives (it runs). Only with a shared
// catalog.
func (c *Catalog) MoveGuest(id, name, to string) error {
	if c.remote == nil {
		return storage.Errorf(storage.ErrNotSupported, "guest move needs a catalog shared by hosts (--catalog etcd://...)")
	}
	if err := storage.ValidateName("host", to); err != nil {
		return err
	}
	if h, ok, err := c.GuestOwner(id); err != nil {
		return err
	} else if ok {
		return storage.Errorf(storage.ErrInUse, "guest %q runs on %s: stop it first ('strata guest stop %s' there)", name, h, name)
	}
	return c.Update(func(tx *Tx) error {
		return tx.Put(bGuestHosts, id, Placement{Host: to, Since: time.Now().UTC()})
	})
}
