package catalog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/storagetest"
)

// lostReply passes a catalog's calls on to etcd, and loses the reply of
// the first transaction that writes a key containing drop: etcd applies
// it, the client sees its connection close.
type lostReply struct {
	upstream string
	drop     string
	dropped  atomic.Int32
}

func (p *lostReply) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	res, err := http.Post("http://"+p.upstream+r.URL.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if r.URL.Path == "/v3/kv/txn" && p.writes(body) && p.dropped.CompareAndSwap(0, 1) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(res.StatusCode)
	w.Write(out)
}

// startLostReply starts a lostReply in front of the test etcd; it
// returns the proxy and the catalog addresses through it and direct.
func startLostReply(t *testing.T, drop string) (p *lostReply, proxied, direct string) {
	t.Helper()
	u, err := url.Parse(storagetest.Etcd(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p = &lostReply{upstream: u.Host, drop: drop}
	srv := &http.Server{Handler: p}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p, "etcd://" + l.Addr().String() + u.Path, "etcd://" + u.Host + u.Path
}

func (p *lostReply) writes(body []byte) bool {
	var req struct {
		Success []struct {
			Put *struct {
				Key []byte `json:"key"`
			} `json:"request_put"`
		} `json:"success"`
	}
	if json.Unmarshal(body, &req) != nil {
		return false
	}
	for _, op := range req.Success {
		if op.Put != nil && strings.Contains(string(op.Put.Key), p.drop) {
			return true
		}
	}
	return false
}

// A transaction whose reply is lost after etcd applied it is in, once:
// the client sends it again, and that send's compares fail on the first
// send's own writes; the transaction's mark says it is in, so it is not
// run again over its own record (which a volume create took for a name
// already taken, and removed the image the record names) nor reported
// failed.
func TestTransactionWhoseReplyIsLostIsInOnce(t *testing.T) {
	proxy, addr, _ := startLostReply(t, "lost-reply")
	home := t.TempDir()
	if err := os.Chmod(home, 0o711); err != nil {
		t.Fatal(err)
	}
	c, err := catalog.OpenWith(home, 5*time.Second, catalog.Options{URL: addr, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Every strata command holds the home's operation lock, on its lease
	// (the mark is bound to it).
	release, _, err := catalog.SharedLock(c.Home(), "v-1", "volume:one", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	v := storage.Volume{ID: "00000000000000aa", Name: "lost-reply", Path: "/nonexistent/lost-reply.img", Format: storage.FormatRaw, Created: time.Now().UTC()}
	runs := 0
	err = c.Update(func(tx *catalog.Tx) error {
		runs++
		return tx.AddVolume(v)
	})
	if proxy.dropped.Load() != 1 {
		t.Fatalf("the proxy lost %d replies: the test did not happen", proxy.dropped.Load())
	}
	if err != nil || runs != 1 {
		t.Fatalf("a transaction whose reply was lost: ran %d times, %v (want once, no error)", runs, err)
	}
	if err := c.View(func(tx *catalog.Tx) error {
		got, err := tx.Volume("lost-reply")
		if err == nil && got.ID != v.ID {
			t.Errorf("volume recorded as %+v", got)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// A lock whose reply is lost after etcd put it is held: the resend finds
// the process's own record (not another holder's), instead of waiting
// for itself until the timeout and saying the lock is busy.
func TestLockWhoseReplyIsLostIsHeld(t *testing.T) {
	proxy, addr, direct := startLostReply(t, "/locks/")
	homeA, homeB := t.TempDir(), t.TempDir()
	a, err := catalog.OpenWith(homeA, 3*time.Second, catalog.Options{URL: addr, Host: "hostA"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b, err := catalog.OpenWith(homeB, 3*time.Second, catalog.Options{URL: direct, Host: "hostB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	start := time.Now()
	release, _, err := catalog.SharedLock(a.Home(), "g-lost", "guest:lost", 2*time.Second)
	if proxy.dropped.Load() != 1 {
		t.Fatalf("the proxy lost %d replies: the test did not happen", proxy.dropped.Load())
	}
	if err != nil {
		t.Fatalf("a lock whose reply was lost, after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if _, _, err := catalog.SharedLock(b.Home(), "g-lost", "guest:lost", 200*time.Millisecond); !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("another host took the lock A holds: %v", err)
	}
	release()
	rb, _, err := catalog.SharedLock(b.Home(), "g-lost", "guest:lost", time.Second)
	if err != nil {
		t.Fatalf("once A released it: %v", err)
	}
	rb()
}
