package storagetest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/rbd/minicluster"
)

// Ceph is the single-node Ceph cluster a test binary starts once (the
// first test that asks for it: CephCluster) and stops when StopCeph runs
// (from the package's TestMain) or the binary dies; see
// storage/rbd/minicluster for what it is.
type Ceph struct {
	*minicluster.Cluster
}

// oneCluster is a cluster a test binary starts once.
type oneCluster struct {
	once sync.Once
	up   *Ceph
	err  error
	skip string
}

var plain, cephx oneCluster

func (o *oneCluster) get(t testing.TB, start func(int64) (*minicluster.Cluster, error), mem int64) *Ceph {
	t.Helper()
	o.once.Do(func() {
		for _, tool := range minicluster.Tools {
			if _, err := exec.LookPath(tool); err != nil {
				if os.Geteuid() != 0 {
					o.skip = tool + " is not installed and this is not root: install ceph-mon, ceph-osd and ceph-common (make test-deps)"
				} else {
					o.err = errorf("%s is not installed: run 'make test-deps' (or make test) first", tool)
				}
				return
			}
		}
		c, err := start(mem)
		if err != nil {
			o.err = err
			return
		}
		o.up = &Ceph{c}
	})
	if o.skip != "" {
		t.Skip(o.skip)
	}
	if o.err != nil {
		t.Fatalf("start a single-node ceph cluster: %v", o.err)
	}
	return o.up
}

// CephCluster returns the test binary's cluster, starting it on first
// use. It skips the test, with the reason, only where the Ceph daemons
// are not installed and cannot be (not root); any other failure to
// start fails the test.
func CephCluster(t testing.TB) *Ceph {
	t.Helper()
	return plain.get(t, minicluster.Start, 6<<30)
}

// CephxCluster is CephCluster for a second cluster, with cephx on
// (minicluster.StartCephx): Client is a cephx client with the rbd
// profile on Pool, its keyring named by the ceph.conf.
func CephxCluster(t testing.TB) *Ceph {
	t.Helper()
	return cephx.get(t, minicluster.StartCephx, 1<<30)
}

// StopCeph stops the clusters that were started and removes their
// files. A package whose tests use CephCluster or CephxCluster calls it
// from TestMain after m.Run.
func StopCeph() {
	for _, o := range []*oneCluster{&plain, &cephx} {
		if o.up != nil {
			o.up.Stop()
		}
	}
}

// Namespace makes a fresh RBD namespace in the test pool, removed (with
// every image left in it) when the test ends: each test gets a pool of
// its own without the cost of creating a Ceph pool.
func (c *Ceph) Namespace(t testing.TB) string {
	t.Helper()
	ns, err := c.NewNamespace()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.RemoveNamespace(ns) })
	return ns
}

// HoldRBDOpen keeps the rbd image at path (QEMU's rbd: filename) open
// by a qemu-io process, as a guest's QEMU would, until the returned stop
// runs (or the test ends); it returns once rbd status lists the watcher.
func HoldRBDOpen(t testing.TB, path string) (stop func()) {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", "raw", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			in.Close()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(stop)
	spec, conf := rbdSpec(path)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		argv := []string{"status", "--format", "json", spec}
		if conf != "" {
			argv = append([]string{"--conf", conf}, argv...)
		}
		out, err := exec.Command("rbd", argv...).Output()
		if err == nil && strings.Contains(string(out), `"address"`) {
			return stop
		}
	}
	stop()
	t.Fatalf("qemu-io did not open %s within 10 s", path)
	return nil
}

// rbdSpec reads POOL/[NS/]IMAGE and conf= from QEMU's rbd: filename
// (no escapes: test paths have none).
func rbdSpec(path string) (spec, conf string) {
	fields := strings.Split(strings.TrimPrefix(path, "rbd:"), ":")
	for _, f := range fields[1:] {
		if v, ok := strings.CutPrefix(f, "conf="); ok {
			conf = v
		}
	}
	return fields[0], conf
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
