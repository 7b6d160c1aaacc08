package catalog_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// post calls etcd's JSON gateway directly, as another client would.
func post(t *testing.T, endpoint, path string, req, resp any) {
	t.Helper()
	body, _ := json.Marshal(req)
	res, err := http.Post("http://"+endpoint+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(resp); err != nil {
		t.Fatal(err)
	}
}

// A lock on the shared catalog is held against another host (whose error
// names the holder), and is bound to its holder's lease: when the lease
// is gone (revoked here, as etcd does when a dead host stops renewing it)
// the holder is fenced: its next transaction is refused and writes
// nothing, and the other host gets the lock.
func TestSharedLockIsLeaseBoundAndItsLossFencesWrites(t *testing.T) {
	addr := storagetest.Etcd(t) + "?lease=2s"
	u, _ := url.Parse(addr)
	homeA, homeB := t.TempDir(), t.TempDir()
	a, err := catalog.OpenWith(homeA, 3*time.Second, catalog.Options{URL: addr, Host: "hostA"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := catalog.OpenWith(homeB, 3*time.Second, catalog.Options{URL: addr, Host: "hostB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	if err := a.Update(func(*catalog.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	release, shared, err := catalog.SharedLock(a.Home(), "g-1", "guest:one", 0)
	if err != nil || !shared {
		t.Fatalf("lock on A: shared=%v %v", shared, err)
	}
	defer release()
	_, _, err = catalog.SharedLock(b.Home(), "g-1", "guest:one", 300*time.Millisecond)
	if !errors.Is(err, storage.ErrBusy) || !strings.Contains(err.Error(), "host hostA") {
		t.Fatalf("lock on B while A holds it: %v, want busy naming host hostA", err)
	}

	// The lock's record names A's lease: revoke it behind A's back.
	var rr struct {
		Kvs []struct {
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	post(t, u.Host, "/v3/kv/range", map[string]any{"key": base64.StdEncoding.EncodeToString([]byte(u.Path + "/locks/g-1"))}, &rr)
	if len(rr.Kvs) != 1 {
		t.Fatalf("lock record: %+v", rr)
	}
	var h catalog.Holder
	if err := json.Unmarshal(rr.Kvs[0].Value, &h); err != nil || h.Lease == 0 || h.Host != "hostA" {
		t.Fatalf("holder %+v %v", h, err)
	}
	var revoked map[string]any
	post(t, u.Host, "/v3/lease/revoke", map[string]any{"ID": h.Lease}, &revoked)

	err = a.Update(func(tx *catalog.Tx) error { return tx.Put("things", "from-a", 1) })
	if !errors.Is(err, storage.ErrBusy) || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("A's write after its lease was revoked: %v, want refused (busy, lease lost)", err)
	}
	var found bool
	if err := b.View(func(tx *catalog.Tx) (err error) { var n int; found, err = tx.Get("things", "from-a", &n); return err }); err != nil || found {
		t.Fatalf("the fenced write was kept (found=%v, %v)", found, err)
	}
	if _, _, err := catalog.SharedLock(a.Home(), "g-2", "guest:two", 0); !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("a fenced process took a lock: %v", err)
	}
	relB, _, err := catalog.SharedLock(b.Home(), "g-1", "guest:one", time.Second)
	if err != nil {
		t.Fatalf("B after A's lease is gone: %v", err)
	}
	relB()
}

// A process that dies without releasing its locks (no Close: its lease is
// neither revoked nor renewed) holds them until the lease expires, then
// they are free.
func TestSharedLockOfADeadHolderLapsesWithItsLease(t *testing.T) {
	addr := storagetest.Etcd(t) + "?lease=2s"
	a, _ := catalog.OpenWith(t.TempDir(), 3*time.Second, catalog.Options{URL: addr, Host: "hostA"})
	b, _ := catalog.OpenWith(t.TempDir(), 3*time.Second, catalog.Options{URL: addr, Host: "hostB"})
	t.Cleanup(b.Close)
	if _, _, err := catalog.SharedLock(a.Home(), "v-1", "volume:one", 0); err != nil {
		t.Fatal(err)
	}
	catalog.StopRenewing(a) // as if A's host died
	start := time.Now()
	rel, _, err := catalog.SharedLock(b.Home(), "v-1", "volume:one", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if d := time.Since(start); d < time.Second || d > 6*time.Second {
		t.Fatalf("B got the lock after %s: want about the 2 s lease", d)
	}
}

// The operation lock across hosts: while one host's doctor --repair holds
// it exclusively, another host's command (which takes it shared while it
// reads) finishes no transaction and writes nothing: busy after its lock
// timeout, naming the holder. Once doctor is done, it works.
func TestSharedOperationLockKeepsCommandsOutWhileDoctorRepairs(t *testing.T) {
	addr := storagetest.Etcd(t)
	a, _ := catalog.OpenWith(t.TempDir(), 2*time.Second, catalog.Options{URL: addr, Host: "hostA"})
	b, _ := catalog.OpenWith(t.TempDir(), 500*time.Millisecond, catalog.Options{URL: addr, Host: "hostB"})
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	if err := a.Update(func(*catalog.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	doctor, shared, err := catalog.SharedOpLock(a.Home(), true, time.Second)
	if err != nil || !shared {
		t.Fatalf("exclusive on A: %v %v", shared, err)
	}
	release, _, err := catalog.SharedOpLock(b.Home(), false, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *catalog.Tx) error { return tx.Put("things", "from-b", 1) })
	if !errors.Is(err, storage.ErrBusy) || !strings.Contains(err.Error(), "doctor --repair on host hostA") {
		t.Fatalf("B's write while A's doctor repairs: %v, want busy naming it", err)
	}
	release()
	doctor()
	var found bool
	if err := a.View(func(tx *catalog.Tx) (err error) { var n int; found, err = tx.Get("things", "from-b", &n); return err }); err != nil || found {
		t.Fatalf("B's write went through (found=%v, %v)", found, err)
	}
	release, _, _ = catalog.SharedOpLock(b.Home(), false, time.Second)
	defer release()
	if err := b.Update(func(tx *catalog.Tx) error { return tx.Put("things", "from-b", 1) }); err != nil {
		t.Fatalf("B after doctor: %v", err)
	}
}
