package catalog

// The etcd backend: a catalog shared by several hosts, each transaction
// one etcd transaction.
//
// strata talks to etcd's v3 API as JSON over HTTP (the gRPC gateway every
// etcd 3.4+ serves on its client port), with net/http: the official Go
// client pulls in gRPC and protobuf, about 4 ms of package initialisation
// paid by every strata command, including those that never use etcd.
//
// Keys, under the prefix PREFIX given in the catalog's address:
//
//	PREFIX/c/BUCKET/KEY   a record (the same JSON the bbolt file holds)
//	PREFIX/v/BUCKET       the bucket's version: rewritten by every
//	                      transaction that changes the bucket
//	PREFIX/locks/KEY      an operation lock, bound to its holder's lease
//	PREFIX/op/...         the state home's operation lock (shared/exclusive)
//	PREFIX/owners/GUESTID the host running a guest, bound to a lease
//	PREFIX/t/LEASE        the mark of the last transaction this process
//	                      committed (a random value), bound to its lease
//
// A transaction reads at one revision (the first read's), so it sees one
// consistent catalog, and buffers its writes. Its commit compares, for
// every key it read, the revision it saw (and, for every bucket it
// scanned, the bucket's version: a scan also depends on keys that were
// absent, which no per-key compare covers), plus the locks this process
// holds (fencing: a process whose lease expired has lost them, and must
// not write). If anything changed meanwhile the transaction runs again
// from the start, until the lock timeout. A transaction also writes its
// own mark: when its reply is lost (the connection drops after etcd
// applied it), the client sends it again and that send fails its
// compares, since the first one changed what they compare; reading the
// mark back tells that the transaction is in, so it is neither taken for
// a conflict and run again over its own writes (a volume create would
// find its own record and remove the image it names) nor reported failed.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strata-vm/strata/storage"
)

// Options choose the catalog's store. The zero value is the bbolt file in
// the state home.
type Options struct {
	// URL is "" (the bbolt file) or the etcd catalog's address:
	// etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// for TLS), with
	// optional query parameters lease=DURATION (the lease of this
	// process's locks, default 10s).
	URL string
	// TLS files for etcds://: the CA that signed etcd's certificate
	// (default: the system's), and a client certificate and key when etcd
	// asks for one.
	CACert, Cert, Key string
	// Host names this host in locks and guest ownership (default: the
	// host name).
	Host string
}

// DefaultLeaseTTL is how long a dead process's locks outlive it.
const DefaultLeaseTTL = 10 * time.Second

// maxCompares bounds the compares of one transaction: etcd refuses a
// transaction of more than --max-txn-ops (128 by default) compares. Past
// it, reads are compared by bucket version instead of key by key.
const maxCompares = 100

// OpenWith opens the catalog of home in the store o names.
func OpenWith(home string, lockTimeout time.Duration, o Options) (*Catalog, error) {
	c, err := Open(home, lockTimeout)
	if err != nil || o.URL == "" {
		return c, err
	}
	s, err := newEtcdStore(o, lockTimeout)
	if err != nil {
		return nil, err
	}
	c.remote = s
	c.path = s.display
	remotes.Lock()
	remotes.m[c.home] = s
	remotes.Unlock()
	return c, nil
}

// remotes maps a state home to its etcd catalog, for the locks
// (storage/store) that are keyed by home.
var remotes = struct {
	sync.Mutex
	m map[string]*etcdStore
}{m: map[string]*etcdStore{}}

func remoteOf(home string) *etcdStore {
	remotes.Lock()
	defer remotes.Unlock()
	return remotes.m[storage.RealPath(home)]
}

// Shared tells whether the catalog is shared by hosts (etcd).
func (c *Catalog) Shared() bool { return c.remote != nil }

// Host is the name of this host in a shared catalog.
func (c *Catalog) Host() string {
	if c.remote == nil {
		return ""
	}
	return c.remote.host
}

// etcdStore is one etcd catalog: its client and this process's lease.
type etcdStore struct {
	endpoints []string // base URLs, http(s)://HOST:PORT
	prefix    string   // "/strata/NAME" form, no trailing slash
	display   string   // the address for messages
	host      string
	ttl       time.Duration
	timeout   time.Duration
	hc        *http.Client

	leaseMu sync.Mutex // held while the lease is granted
	mu      sync.Mutex
	// opPending is closed once the shared hold of the operation lock is
	// taken (opErr: or could not be); nil when none is being taken.
	opPending chan struct{}
	opErr     error
	cur       int // the endpoint that answered last
	lease     int64
	fenced    error
	held      map[string]int64 // lock key → its create revision (fencing)
	stopKA    chan struct{}
	kaDone    chan struct{}
	onFence   func(error)
}

// maxLease bounds ?lease=: a crashed host's locks and guests stay held
// for as long as its lease.
const maxLease = 10 * time.Minute

func newEtcdStore(o Options, timeout time.Duration) (*etcdStore, error) {
	a, err := parseEtcdAddress(o.URL, o.CACert != "" || o.Cert != "")
	if err != nil {
		return nil, err
	}
	s := &etcdStore{prefix: a.prefix, endpoints: a.endpoints, display: a.display, ttl: a.ttl, timeout: timeout, host: o.Host, held: map[string]int64{}}
	if s.host == "" {
		if s.host, err = os.Hostname(); err != nil {
			return nil, storage.Errorf(storage.ErrPrecondition, "cannot tell this host's name (%v): give --host", err)
		}
	}
	if err := storage.ValidateName("host", s.host); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 10 * time.Second}
	if a.https {
		if tr.TLSClientConfig, err = etcdTLS(o); err != nil {
			return nil, err
		}
	}
	s.hc = &http.Client{Transport: tr}
	return s, nil
}

// etcdAddress is a catalog address read: the endpoints (http or https
// URLs), the key prefix, the lease's time to live, and the address as
// messages show it (without its query).
type etcdAddress struct {
	https     bool
	endpoints []string
	prefix    string
	ttl       time.Duration
	display   string
}

// parseEtcdAddress reads etcd[s]://HOST[:PORT][,HOST...]/PREFIX[?lease=D];
// an etcd:// address is https when a certificate is given (tlsGiven).
func parseEtcdAddress(raw string, tlsGiven bool) (etcdAddress, error) {
	u, err := url.Parse(raw)
	bad := func(why string) error {
		return storage.Errorf(storage.ErrInvalid, "invalid catalog address %q: %s; use etcd://HOST:2379[,HOST:2379...]/PREFIX", redactAddress(raw), why)
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the address, which may hold a password
		}
		return etcdAddress{}, bad(err.Error())
	}
	a := etcdAddress{ttl: DefaultLeaseTTL}
	switch u.Scheme {
	case "etcd":
		a.https = tlsGiven
	case "etcds":
		a.https = true
	default:
		return etcdAddress{}, bad("the scheme must be etcd or etcds")
	}
	if u.User != nil {
		return etcdAddress{}, bad("etcd's user names and passwords are not supported: use client certificates (--catalog-cert)")
	}
	a.prefix = strings.TrimRight(u.Path, "/")
	if a.prefix == "" || strings.Contains(a.prefix, "//") {
		return etcdAddress{}, bad("give a key prefix after the hosts, e.g. /strata")
	}
	if u.Fragment != "" || strings.HasSuffix(raw, "#") {
		return etcdAddress{}, bad("an address has no #fragment")
	}
	for _, part := range strings.Split(a.prefix, "/") {
		// A prefix inside another home's keys (/strata/c/volumes in the
		// home at /strata) would put each home's records among the
		// other's: every key strata writes under a prefix starts with
		// one of these after it.
		switch part {
		case "c", "v", "locks", "op", "owners", ".", "..":
			return etcdAddress{}, bad(fmt.Sprintf("no part of the key prefix may be %q (strata's own keys under a prefix start with c, v, locks, op and owners: a prefix with one of them may lie inside another home's keys)", part))
		}
	}
	scheme := "http"
	if a.https {
		scheme = "https"
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return etcdAddress{}, bad("an empty host")
		}
		if !strings.Contains(h, ":") {
			h += ":2379"
		}
		a.endpoints = append(a.endpoints, scheme+"://"+h)
	}
	for k, v := range u.Query() {
		switch k {
		case "lease":
			d, err := time.ParseDuration(v[0])
			if err != nil || d < 2*time.Second || d > maxLease {
				return etcdAddress{}, bad("lease must be a duration from 2s to " + maxLease.String() + " (a dead host's locks last as long)")
			}
			a.ttl = d
		default:
			return etcdAddress{}, bad("unknown parameter " + k + " (known: lease)")
		}
	}
	u.RawQuery = ""
	a.display = u.String()
	return a, nil
}

// etcdTLS is the TLS configuration of an https catalog: the CA and the
// client certificate given, if any.
func etcdTLS(o Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, storage.Errorf(storage.ErrInvalid, "cannot read the catalog's CA certificate: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, storage.Errorf(storage.ErrInvalid, "%q holds no PEM certificate", o.CACert)
		}
	}
	if o.Cert != "" || o.Key != "" {
		cert, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, storage.Errorf(storage.ErrInvalid, "cannot load the catalog's client certificate and key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// redactAddress is a catalog address as messages may show it: a user name
// and password in it (which strata refuses, but a user may have typed) are
// left out, and so are the query's values, whether or not the address
// parses.
func redactAddress(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = "REDACTED@" + rest[at+1:]
	}
	if f := strings.Index(rest, "#"); f >= 0 {
		rest = rest[:f] + "#..."
	}
	if q := strings.Index(rest, "?"); q >= 0 {
		var keys []string
		for _, kv := range strings.FieldsFunc(strings.TrimSuffix(rest[q+1:], "#..."), func(r rune) bool { return r == '&' || r == ';' }) {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k+"=...")
		}
		frag := ""
		if strings.HasSuffix(rest, "#...") {
			frag = "#..."
		}
		rest = rest[:q] + "?" + strings.Join(keys, "&") + frag
	}
	return scheme + rest
}

// i64 is an int64 as the gateway writes it (a JSON string) or reads it.
type i64 int64

func (n i64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(n), 10) + `"`), nil
}

func (n *i64) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	*n = i64(v)
	return err
}

type header struct {
	Revision i64 `json:"revision"`
}

type keyValue struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision i64    `json:"create_revision"`
	ModRevision    i64    `json:"mod_revision"`
	Lease          i64    `json:"lease"`
}

type rangeRequest struct {
	Key       []byte `json:"key"`
	RangeEnd  []byte `json:"range_end,omitempty"`
	Revision  i64    `json:"revision,omitempty"`
	Limit     i64    `json:"limit,omitempty"`
	KeysOnly  bool   `json:"keys_only,omitempty"`
	CountOnly bool   `json:"count_only,omitempty"`
}

type rangeResponse struct {
	Header header     `json:"header"`
	Kvs    []keyValue `json:"kvs"`
	Count  i64        `json:"count"`
}

type putRequest struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
	Lease i64    `json:"lease,omitempty"`
}

type deleteRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
}

type compare struct {
	Key            []byte `json:"key"`
	Target         string `json:"target"` // MOD, CREATE, VERSION, VALUE, LEASE
	Result         string `json:"result"` // EQUAL, GREATER, LESS, NOT_EQUAL
	ModRevision    *i64   `json:"mod_revision,omitempty"`
	CreateRevision *i64   `json:"create_revision,omitempty"`
	Lease          *i64   `json:"lease,omitempty"`
	RangeEnd       []byte `json:"range_end,omitempty"`
}

func modIs(key string, rev int64) compare {
	r := i64(rev)
	return compare{Key: []byte(key), Target: "MOD", Result: "EQUAL", ModRevision: &r}
}

func createdIs(key string, rev int64) compare {
	r := i64(rev)
	return compare{Key: []byte(key), Target: "CREATE", Result: "EQUAL", CreateRevision: &r}
}

type op struct {
	Range  *rangeRequest  `json:"request_range,omitempty"`
	Put    *putRequest    `json:"request_put,omitempty"`
	Delete *deleteRequest `json:"request_delete_range,omitempty"`
}

type txnRequest struct {
	Compare []compare `json:"compare,omitempty"`
	Success []op      `json:"success,omitempty"`
	Failure []op      `json:"failure,omitempty"`
}

type txnResponse struct {
	Header    header `json:"header"`
	Succeeded bool   `json:"succeeded"`
	Responses []struct {
		Range *rangeResponse `json:"response_range"`
	} `json:"responses"`
}

// etcdError is an error etcd answered (not a failure to reach it).
type etcdError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

func (e *etcdError) Error() string { return e.Message }

// errUnreachable: no endpoint answered.
var errUnreachable = errors.New("etcd unreachable")

// conflict is a transaction etcd refused because what it read changed.
var errConflict = errors.New("catalog transaction conflict")

// traceCalls (STRATA_ETCD_TRACE=1) prints each call to etcd and its time
// on stderr: where a command's time goes.
var traceCalls = os.Getenv("STRATA_ETCD_TRACE") != ""

// call posts one request to the first endpoint that answers.
func (s *etcdStore) call(ctx context.Context, path string, req, resp any) error {
	if traceCalls {
		defer func(t time.Time) { fmt.Fprintf(os.Stderr, "etcd %s %s\n", path, time.Since(t)) }(time.Now())
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	s.mu.Lock()
	first := s.cur
	s.mu.Unlock()
	var last error
	for i := range s.endpoints {
		n := (first + i) % len(s.endpoints)
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoints[n]+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		r.Header.Set("Content-Type", "application/json")
		res, err := s.hc.Do(r)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if tlsRefused(err) {
				return storage.Errorf(storage.ErrPrecondition, "the catalog %s refused this host's TLS, or this host etcd's: %v; check --catalog-cacert, --catalog-cert and --catalog-key", s.display, err)
			}
			last = err
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(res.Body, 512<<20))
		res.Body.Close()
		if err != nil {
			last = err
			continue
		}
		if res.StatusCode != http.StatusOK {
			e := &etcdError{}
			if json.Unmarshal(raw, e) != nil || e.Message == "" {
				e.Message = fmt.Sprintf("HTTP %s: %s", res.Status, bytes.TrimSpace(raw))
			}
			if e.Code == 14 { // unavailable (no leader): another member may answer
				last = e
				continue
			}
			return e
		}
		s.mu.Lock()
		s.cur = n
		s.mu.Unlock()
		if path == "/v3/lease/keepalive" { // a stream of one message
			var wrap struct {
				Result json.RawMessage `json:"result"`
				Error  *etcdError      `json:"error"`
			}
			if err := json.Unmarshal(raw, &wrap); err != nil {
				return err
			}
			if wrap.Error != nil {
				return wrap.Error
			}
			raw = wrap.Result
		}
		return json.Unmarshal(raw, resp)
	}
	return fmt.Errorf("%w: %v", errUnreachable, last)
}

// tlsRefused tells a TLS handshake that failed on a certificate (not a
// network error: trying again does not help).
func tlsRefused(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var alert tls.AlertError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &alert) ||
		strings.Contains(err.Error(), "remote error: tls:")
}

// do calls etcd, retrying while it is unreachable until deadline.
func (s *etcdStore) do(deadline time.Time, path string, req, resp any) error {
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
		err := s.call(ctx, path, req, resp)
		cancel()
		if err == nil || !errors.Is(err, errUnreachable) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if time.Now().After(deadline) {
			return storage.Errorf(storage.ErrBusy, "the catalog %s is unreachable (%v) for %s: check that etcd runs and this host reaches it, or raise --lock-timeout", s.display, err, s.timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *etcdStore) dataKey(bucket, key string) string {
	return s.prefix + "/c/" + bucket + "/" + key
}

func (s *etcdStore) versionKey(bucket string) string { return s.prefix + "/v/" + bucket }

// prefixEnd is the end of the range of keys starting with p.
func prefixEnd(p string) []byte {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return []byte{0}
}

// etcdKV is one transaction on etcd.
type etcdKV struct {
	s        *etcdStore
	rw       bool
	deadline time.Time
	rev      int64            // the revision every read is at; 0 before the first
	reads    map[string]int64 // key → mod revision seen (0: absent)
	writes   map[string][]byte
	deleted  map[string]bool // keys deleted (in writes as nil too)
	cleared  map[string]bool // buckets deleted whole
	touched  map[string]bool // buckets written
	// meta is the meta bucket, read whole on first use: every command's
	// first transaction reads several of its keys (schema versions).
	meta map[string]keyValue
}

var _ kv = (*etcdKV)(nil)

func (s *etcdStore) begin(rw bool, deadline time.Time) *etcdKV {
	return &etcdKV{s: s, rw: rw, deadline: deadline, reads: map[string]int64{}, writes: map[string][]byte{}, deleted: map[string]bool{}, cleared: map[string]bool{}, touched: map[string]bool{}}
}

func (t *etcdKV) writable() bool { return t.rw }

// rangeAt reads at the transaction's revision (fixing it on the first read).
func (t *etcdKV) rangeAt(r rangeRequest) (*rangeResponse, error) {
	r.Revision = i64(t.rev)
	var resp rangeResponse
	if err := t.s.do(t.deadline, "/v3/kv/range", r, &resp); err != nil {
		var e *etcdError
		if errors.As(err, &e) && strings.Contains(e.Message, "compacted") {
			return nil, errConflict // the revision is gone: read again from the start
		}
		return nil, err
	}
	if t.rev == 0 {
		t.rev = int64(resp.Header.Revision)
	}
	return &resp, nil
}

func (t *etcdKV) hasBucket(bucket string) bool {
	for b := range t.touched {
		if b == bucket {
			return true
		}
	}
	if t.cleared[bucket] {
		return false
	}
	p := t.s.dataKey(bucket, "")
	resp, err := t.rangeAt(rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), CountOnly: true})
	if err != nil {
		return false
	}
	t.readVersion(bucket)
	return resp.Count > 0
}

func (t *etcdKV) get(bucket, key string) ([]byte, error) {
	k := t.s.dataKey(bucket, key)
	if v, ok := t.writes[k]; ok || t.deleted[k] {
		return v, nil
	}
	if t.cleared[bucket] {
		return nil, nil
	}
	if bucket == string(bMeta) {
		if err := t.loadMeta(); err != nil {
			return nil, err
		}
		kv, ok := t.meta[k]
		t.reads[k] = int64(kv.ModRevision)
		if ok && kv.Value == nil {
			kv.Value = []byte{}
		}
		return kv.Value, nil
	}
	resp, err := t.rangeAt(rangeRequest{Key: []byte(k)})
	if err != nil {
		return nil, err
	}
	var mod int64
	var v []byte
	if len(resp.Kvs) > 0 {
		mod, v = int64(resp.Kvs[0].ModRevision), resp.Kvs[0].Value
		if v == nil {
			v = []byte{}
		}
	}
	t.reads[k] = mod
	return v, nil
}

// loadMeta reads the meta bucket whole (at the transaction's revision).
func (t *etcdKV) loadMeta() error {
	if t.meta != nil {
		return nil
	}
	p := t.s.dataKey(string(bMeta), "")
	resp, err := t.rangeAt(rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)})
	if err != nil {
		return err
	}
	t.meta = make(map[string]keyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		t.meta[string(kv.Key)] = kv
	}
	return nil
}

// readVersion records the bucket's version at the transaction's revision.
func (t *etcdKV) readVersion(bucket string) {
	k := t.s.versionKey(bucket)
	if _, ok := t.reads[k]; ok || !t.rw {
		return
	}
	resp, err := t.rangeAt(rangeRequest{Key: []byte(k), KeysOnly: true})
	if err != nil {
		t.reads[k] = -1 // compares false: the transaction runs again
		return
	}
	var mod int64
	if len(resp.Kvs) > 0 {
		mod = int64(resp.Kvs[0].ModRevision)
	}
	t.reads[k] = mod
}

func (t *etcdKV) put(bucket, key string, value []byte) error {
	if !t.rw {
		return errors.New("catalog: write in a read-only transaction")
	}
	k := t.s.dataKey(bucket, key)
	t.writes[k] = value
	delete(t.deleted, k)
	t.touched[bucket] = true
	return nil
}

func (t *etcdKV) del(bucket, key string) error {
	if !t.rw {
		return errors.New("catalog: write in a read-only transaction")
	}
	k := t.s.dataKey(bucket, key)
	delete(t.writes, k)
	t.deleted[k] = true
	t.touched[bucket] = true
	return nil
}

func (t *etcdKV) deleteBucket(bucket string) error {
	if !t.rw {
		return errors.New("catalog: write in a read-only transaction")
	}
	var keys []string
	if err := t.scan(bucket, "", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		if err := t.del(bucket, k); err != nil {
			return err
		}
	}
	t.cleared[bucket] = true
	return nil
}

func (t *etcdKV) scan(bucket, prefix string, fn func(string, []byte) error) error {
	base := t.s.dataKey(bucket, "")
	p := base + prefix
	found := map[string][]byte{}
	if !t.cleared[bucket] {
		t.readVersion(bucket)
		resp, err := t.rangeAt(rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)})
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			v := kv.Value
			if v == nil {
				v = []byte{}
			}
			found[string(kv.Key)] = v
		}
	}
	for k, v := range t.writes {
		if strings.HasPrefix(k, p) {
			found[k] = v
		}
	}
	for k := range t.deleted {
		delete(found, k)
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(strings.TrimPrefix(k, base), found[k]); err != nil {
			return err
		}
	}
	return nil
}

// commit writes the transaction if nothing it read has changed and this
// process still holds its locks; errConflict if something changed.
func (t *etcdKV) commit() error {
	if len(t.writes) == 0 && len(t.deleted) == 0 {
		return nil
	}
	var req txnRequest
	fences, err := t.s.fences()
	if err != nil {
		return err
	}
	req.Compare = fences
	if len(t.reads)+len(fences) > maxCompares {
		if err := t.coarsen(); err != nil {
			return err
		}
	}
	for k, rev := range t.reads {
		req.Compare = append(req.Compare, modIs(k, rev))
	}
	keys := make([]string, 0, len(t.writes)+len(t.deleted))
	for k := range t.writes {
		keys = append(keys, k)
	}
	for k := range t.deleted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if t.deleted[k] {
			req.Success = append(req.Success, op{Delete: &deleteRequest{Key: []byte(k)}})
		} else {
			req.Success = append(req.Success, op{Put: &putRequest{Key: []byte(k), Value: t.writes[k]}})
		}
	}
	stamp := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
	for b := range t.touched {
		req.Success = append(req.Success, op{Put: &putRequest{Key: []byte(t.s.versionKey(b)), Value: stamp}})
	}
	mark, markValue := t.s.markKey(), randomMark()
	if mark != "" {
		req.Success = append(req.Success, op{Put: &putRequest{Key: []byte(mark), Value: markValue, Lease: i64(t.s.leaseID())}})
	}
	var resp txnResponse
	if err := t.s.do(t.deadline, "/v3/kv/txn", req, &resp); err != nil {
		var e *etcdError
		if mark != "" && !errors.As(err, &e) && t.s.marked(t.deadline, mark, markValue) {
			return nil // in: only its reply was lost
		}
		if errors.As(err, &e) && strings.Contains(e.Message, "too many operations") {
			return storage.Errorf(storage.ErrPrecondition, "this change of the catalog needs %d operations in one etcd transaction, more than etcd allows: start etcd with --max-txn-ops %d or more", max(len(req.Compare), len(req.Success)), 2*max(len(req.Compare), len(req.Success)))
		}
		if errors.As(err, &e) && (strings.Contains(e.Message, "request is too large") || strings.Contains(e.Message, "message larger than max")) {
			return storage.Errorf(storage.ErrPrecondition, "this change of the catalog is larger than etcd accepts in one request: start etcd with a larger --max-request-bytes")
		}
		return err
	}
	if !resp.Succeeded {
		if mark != "" && t.s.marked(t.deadline, mark, markValue) {
			return nil // an earlier send of this transaction is in (its reply was lost)
		}
		if err := t.s.checkFences(t.deadline); err != nil {
			return err
		}
		return errConflict
	}
	return nil
}

// markKey is the key of this process's transaction mark, "" while it has
// no lease (the mark is bound to it, so that it goes with the process).
func (s *etcdStore) markKey() string {
	id := s.leaseID()
	if id == 0 {
		return ""
	}
	return s.prefix + "/t/" + strconv.FormatInt(id, 16)
}

func (s *etcdStore) leaseID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// randomMark is a transaction's mark: no other transaction writes the
// same.
func randomMark() []byte {
	b := make([]byte, 16)
	if _, err := crand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return []byte(hex.EncodeToString(b))
}

// marked tells whether the mark key holds value: the transaction that
// wrote it is in. Only this process writes its mark, so a later value is
// a later transaction of its own (never the case while one is being
// committed).
func (s *etcdStore) marked(deadline time.Time, key string, value []byte) bool {
	var resp rangeResponse
	if err := s.do(deadline, "/v3/kv/range", rangeRequest{Key: []byte(key)}, &resp); err != nil {
		return false
	}
	return len(resp.Kvs) == 1 && bytes.Equal(resp.Kvs[0].Value, value)
}

// coarsen replaces the transaction's per-key compares by the versions of
// their buckets (read at the transaction's revision): fewer compares, a
// few more needless retries.
func (t *etcdKV) coarsen() error {
	data := t.s.prefix + "/c/"
	coarse := map[string]int64{}
	var buckets []string
	for k, rev := range t.reads {
		if !strings.HasPrefix(k, data) {
			coarse[k] = rev
			continue
		}
		b, _, _ := strings.Cut(strings.TrimPrefix(k, data), "/")
		if _, ok := coarse[t.s.versionKey(b)]; !ok {
			coarse[t.s.versionKey(b)] = 0
			buckets = append(buckets, b)
		}
	}
	t.reads = coarse
	for _, b := range buckets {
		delete(t.reads, t.s.versionKey(b))
		t.readVersion(b)
	}
	if len(t.reads) > maxCompares {
		return storage.Errorf(storage.ErrPrecondition, "a catalog transaction read %d buckets, more than one etcd transaction compares", len(t.reads))
	}
	return nil
}

// update runs fn in a read-write transaction, again from the start
// whenever another one changed what it read, until the lock timeout.
func (s *etcdStore) update(c *Catalog, fn func(*Tx) error) error {
	deadline := time.Now().Add(c.timeout)
	for attempt := 0; ; attempt++ {
		if err := s.fenceErr(); err != nil {
			return err
		}
		t := s.begin(true, deadline)
		tx := &Tx{kv: t}
		migrated := false
		err := func() error {
			if err := t.loadMeta(); err != nil {
				return err // etcd unreachable: said as such, not as a migration's failure
			}
			if !c.migrated && !upToDate(tx) {
				migrated = true
				if err := c.migrate(tx); err != nil {
					return err
				}
			}
			return fn(tx)
		}()
		if err == nil {
			err = s.awaitOp()
		}
		if err == nil {
			err = t.commit()
		}
		if errors.Is(err, errConflict) {
			if time.Now().After(deadline) {
				return storage.Errorf(storage.ErrBusy, "the catalog %s is busy: other strata processes changed what this one read, again and again for %s; try again or raise --lock-timeout", s.display, c.timeout)
			}
			time.Sleep(time.Duration(1+rand.IntN(5*min(attempt+1, 10))) * time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		c.migrated = true
		if migrated || !c.homeChecked {
			return c.settleShared(tx)
		}
		return nil
	}
}

// view runs fn in a read-only transaction at one revision.
func (s *etcdStore) view(c *Catalog, fn func(*Tx) error) error {
	deadline := time.Now().Add(c.timeout)
	for {
		t := s.begin(false, deadline)
		tx := &Tx{kv: t}
		if !c.migrated {
			if err := t.loadMeta(); err != nil {
				return err
			}
			if !upToDate(tx) {
				if err := s.update(c, func(*Tx) error { return nil }); err != nil {
					return err
				}
				continue
			}
			c.migrated = true
		}
		err := fn(tx)
		if errors.Is(err, errConflict) && time.Now().Before(deadline) {
			continue
		}
		if opErr := s.awaitOp(); opErr != nil {
			return opErr // (the reads ran meanwhile: nothing was written)
		}
		if err == nil && !c.homeChecked {
			err = c.settleShared(tx)
		}
		return err
	}
}

// settleShared writes HOME/home-id (the shared catalog's ID) and the
// markers of the pools inside this home, as settleHome does for the file.
func (c *Catalog) settleShared(tx *Tx) error {
	if _, err := os.Stat(filepath.Join(c.home, HomeIDFile)); err == nil {
		c.homeChecked = true
		return nil
	}
	id, err := tx.HomeID()
	if err != nil || id == "" {
		return err
	}
	pools, err := tx.Pools()
	if err != nil {
		return err
	}
	return c.claimHome(id, pools)
}

func (t *etcdKV) buckets() ([]string, error) {
	p := t.s.prefix + "/c/"
	resp, err := t.rangeAt(rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), KeysOnly: true})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range resp.Kvs {
		b, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), p), "/")
		if len(out) == 0 || out[len(out)-1] != b {
			out = append(out, b)
		}
	}
	return out, nil
}
