package storagetest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EtcdBinary is Debian etcd-server's server.
const EtcdBinary = "/usr/bin/etcd"

// An EtcdServer is a single-member etcd on loopback ports, started for the
// tests of one test process.
type EtcdServer struct {
	Endpoint string // 127.0.0.1:PORT
	cmd      *exec.Cmd
	dir      string
}

var etcdShared struct {
	once sync.Once
	srv  *EtcdServer
	err  error
}

// Etcd returns a catalog address (etcd://127.0.0.1:PORT/PREFIX) with a
// prefix of the test's own, on an etcd shared by the tests of this
// process: it starts on first use (in about 1-3 s) and dies with the test
// process (Pdeathsig).
func Etcd(t testing.TB) string {
	t.Helper()
	etcdShared.once.Do(func() { etcdShared.srv, etcdShared.err = StartEtcd() })
	if etcdShared.err != nil {
		t.Fatalf("etcd: %v", etcdShared.err)
	}
	return "etcd://" + etcdShared.srv.Endpoint + "/" + UniquePrefix()
}

// UniquePrefix is a fresh key prefix.
func UniquePrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "strata-test-" + hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// EtcdTLS are the PEM files of an etcd that serves its clients over TLS
// and asks them for a certificate signed by CA.
type EtcdTLS struct{ CA, Cert, Key string }

// StartEtcd starts a single-member etcd of its own (a test that stops it
// on purpose); Stop ends it.
func StartEtcd() (*EtcdServer, error) { return startEtcd(nil, nil) }

// StartEtcdTLS is StartEtcd with TLS for clients (nil: none). client is a
// client certificate the health check presents.
func StartEtcdTLS(tlsFiles *EtcdTLS) (*EtcdServer, error) { return startEtcd(tlsFiles, nil) }

// StartEtcdWith is StartEtcd with more etcd flags (they override the
// harness's own: --max-txn-ops 16, --max-request-bytes 65536).
func StartEtcdWith(flags ...string) (*EtcdServer, error) { return startEtcd(nil, flags) }

// EtcdURL is a catalog address with a fresh prefix on s.
func (s *EtcdServer) EtcdURL() string { return "etcd://" + s.Endpoint + "/" + UniquePrefix() }

func startEtcd(tlsFiles *EtcdTLS, flags []string) (*EtcdServer, error) {
	if _, err := os.Stat(EtcdBinary); err != nil {
		return nil, fmt.Errorf("%s is not installed (etcd-server): run 'make test-deps' (or make test) first", EtcdBinary)
	}
	cleanStaleEtcdDirs()
	hc, err := etcdHealthClient(tlsFiles)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strata-etcd-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	var last error
	for try := 0; try < 3; try++ {
		cp, err1 := freePort()
		pp, err2 := freePort()
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("no free port: %v %v", err1, err2)
		}
		s, retry, err := startEtcdOn(dir, cp, pp, tlsFiles, flags, hc)
		if s != nil || err != nil {
			return s, err
		}
		// It exited or did not answer (a port taken meanwhile): again,
		// on other ports, from no data.
		last = retry
		_ = os.RemoveAll(filepath.Join(dir, "data"))
	}
	return nil, last
}

// etcdHealthClient is the client of the health check: with TLS, it
// trusts the test CA and shows the server's own pair (signed by the same
// CA: good enough as a client certificate).
func etcdHealthClient(tlsFiles *EtcdTLS) (*http.Client, error) {
	if tlsFiles == nil {
		return http.DefaultClient, nil
	}
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(tlsFiles.CA)
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(tlsFiles.Cert, tlsFiles.Key)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}, nil
}

// startEtcdOn starts etcd in dir on client port cp and peer port pp and
// waits for its health check (flags added to the harness's own). retry: it exited, or did not answer in
// time (and was killed); err: it could not be started.
func startEtcdOn(dir string, cp, pp int, tlsFiles *EtcdTLS, flags []string, hc *http.Client) (s *EtcdServer, retry, err error) {
	scheme := "http"
	if tlsFiles != nil {
		scheme = "https"
	}
	client := fmt.Sprintf("%s://127.0.0.1:%d", scheme, cp)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pp)
	cmd := exec.Command(EtcdBinary, "--name", "strata-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "strata-test="+peer, "--log-level", "error",
		"--max-txn-ops", "1024", "--quota-backend-bytes", strconv.Itoa(1<<30))
	cmd.Args = append(cmd.Args, flags...)
	if tlsFiles != nil {
		cmd.Args = append(cmd.Args, "--cert-file", tlsFiles.Cert, "--key-file", tlsFiles.Key, "--trusted-ca-file", tlsFiles.CA, "--client-cert-auth")
	}
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, err
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			return nil, fmt.Errorf("etcd exited: %s", tail(string(log))), nil
		default:
		}
		res, err := hc.Get(client + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return &EtcdServer{Endpoint: fmt.Sprintf("127.0.0.1:%d", cp), cmd: cmd, dir: dir}, nil, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, fmt.Errorf("etcd did not answer on %s within 15 s", client), nil
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}

// Stop kills the server and removes its data.
func (s *EtcdServer) Stop() {
	_ = s.cmd.Process.Kill()
	time.Sleep(50 * time.Millisecond)
	_ = os.RemoveAll(s.dir)
}

// Pause stops (SIGSTOP) the server: clients see it unreachable; Resume
// continues it.
func (s *EtcdServer) Pause()  { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *EtcdServer) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// cleanStaleEtcdDirs removes the data of servers whose test process died.
func cleanStaleEtcdDirs() {
	ds, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-etcd-*-*"))
	for _, d := range ds {
		f := strings.Split(filepath.Base(d), "-")
		pid, err := strconv.Atoi(f[2])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
}
