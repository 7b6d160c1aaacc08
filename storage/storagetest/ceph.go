package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Ceph is a single-node Ceph cluster a test binary starts once (the
// first test that asks for it) and stops when StopCeph runs (from the
// package's TestMain) or the binary dies: one monitor on 127.0.0.1
// speaking msgr v2 only, one OSD keeping its objects in memory
// (memstore), no manager and no cephx. It is up in about 3 s.
//
// The settings that matter on a one-OSD cluster: pool size 1
// (mon_allow_pool_size_one), osd_crush_chooseleaf_type 0 (one host),
// paxos_propose_interval 0.1 (else every map change waits a second),
// mon_data_avail_crit 0 (else the monitor stops itself when the host's
// disk is low), and no client admin socket (concurrent clients of one
// name would collide on it). Without a manager `ceph df` reports no
// usage: strata's rbd driver reads what it needs elsewhere.
type Ceph struct {
	Dir  string // the cluster's files (ceph.conf, mon, osd, logs)
	Conf string // its ceph.conf, for -c / CEPH_CONF / qemu's conf=
	// Pool is the Ceph pool made for tests (RBD-initialised, with a
	// quota so that free space is known without a manager).
	Pool string
	// Quota is the pool's quota in bytes.
	Quota int64
	procs []*exec.Cmd
}

// CephPackages are the Debian packages the cluster needs (CHECK=PACKAGE
// pairs as .ci/deps takes them; the Makefile's TEST_DEPS lists them).
var CephPackages = []string{"ceph-mon=ceph-mon", "ceph-osd=ceph-osd", "rbd=ceph-common", "ceph=ceph-common", "monmaptool=ceph-common"}

var (
	cephOnce sync.Once
	cephUp   *Ceph
	cephErr  error
	cephSkip string
)

// CephCluster returns the test binary's cluster, starting it on first
// use. It skips the test, with the reason, only where the Ceph daemons
// are not installed and cannot be (not root); any other failure to
// start fails the test.
func CephCluster(t testing.TB) *Ceph {
	t.Helper()
	cephOnce.Do(func() {
		for _, tool := range []string{"ceph-mon", "ceph-osd", "ceph", "rbd", "monmaptool"} {
			if _, err := exec.LookPath(tool); err != nil {
				if os.Geteuid() != 0 {
					cephSkip = fmt.Sprintf("%s is not installed and this is not root: install ceph-mon, ceph-osd and ceph-common (make test-deps)", tool)
				} else {
					cephErr = fmt.Errorf("%s is not installed: run 'make test-deps' (or make test) first", tool)
				}
				return
			}
		}
		cephUp, cephErr = startCeph()
	})
	if cephSkip != "" {
		t.Skip(cephSkip)
	}
	if cephErr != nil {
		t.Fatalf("start a single-node ceph cluster: %v", cephErr)
	}
	return cephUp
}

// StopCeph stops the cluster if one was started and removes its files.
// A package whose tests use CephCluster calls it from TestMain after
// m.Run.
func StopCeph() {
	if cephUp != nil {
		cephUp.stop()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

const cephConf = `[global]
fsid = {{fsid}}
mon_host = v2:127.0.0.1:{{port}}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_bind_msgr1 = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
paxos_propose_interval = 0.1
paxos_min_wait = 0.01
mon_data_avail_crit = 0
mon_data_avail_warn = 0
mon_allow_pool_delete = true
osd_objectstore = memstore
memstore_device_bytes = {{bytes}}
run_dir = {{dir}}/run
log_file = {{dir}}/log/$name.log
mon_data = {{dir}}/mon
osd_data = {{dir}}/osd
[client]
admin_socket =
log_file =
`

func startCeph() (c *Ceph, err error) {
	dir, err := os.MkdirTemp("", "strata-ceph-")
	if err != nil {
		return nil, err
	}
	c = &Ceph{Dir: dir, Conf: filepath.Join(dir, "ceph.conf"), Pool: "strata", Quota: 4 << 30}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	for _, d := range []string{"run", "log", "mon", "osd"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	fsid := uuid()
	conf := strings.NewReplacer("{{fsid}}", fsid, "{{port}}", fmt.Sprint(port), "{{dir}}", dir, "{{bytes}}", fmt.Sprint(int64(6)<<30)).Replace(cephConf)
	if err := os.WriteFile(c.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	monmap := filepath.Join(dir, "monmap")
	if err := c.run("monmaptool", "--create", "--addv", "a", fmt.Sprintf("[v2:127.0.0.1:%d]", port), "--fsid", fsid, monmap); err != nil {
		return nil, err
	}
	if err := c.run("ceph-mon", "-c", c.Conf, "--mkfs", "-i", "a", "--monmap", monmap); err != nil {
		return nil, err
	}
	if err := c.daemon("ceph-mon", "-c", c.Conf, "-f", "-i", "a"); err != nil {
		return nil, err
	}
	osdUUID := uuid()
	if err := c.run("ceph", "-c", c.Conf, "--connect-timeout", "20", "osd", "new", osdUUID); err != nil {
		return nil, err
	}
	if err := c.run("ceph-osd", "-c", c.Conf, "-i", "0", "--mkfs", "--osd-uuid", osdUUID); err != nil {
		return nil, err
	}
	if err := c.daemon("ceph-osd", "-c", c.Conf, "-f", "-i", "0"); err != nil {
		return nil, err
	}
	if err := c.run("ceph", "-c", c.Conf, "osd", "pool", "create", c.Pool, "8"); err != nil {
		return nil, err
	}
	if err := c.run("ceph", "-c", c.Conf, "osd", "pool", "set-quota", c.Pool, "max_bytes", fmt.Sprint(c.Quota)); err != nil {
		return nil, err
	}
	if err := c.run("rbd", "-c", c.Conf, "pool", "init", c.Pool); err != nil {
		return nil, err
	}
	return c, nil
}

// run runs a set-up command with a deadline.
func (c *Ceph) run(argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), err, out, c.logs())
	}
	return nil
}

// daemon starts a Ceph daemon in the foreground as the test binary's
// child, killed with it (Pdeathsig) if StopCeph never runs.
func (c *Ceph) daemon(argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// logs is the tail of the daemons' logs, for a failure's message.
func (c *Ceph) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(c.Dir, "log", "*.log"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(raw) > 2000 {
			raw = raw[len(raw)-2000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), raw)
	}
	return b.String()
}

func (c *Ceph) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
	os.RemoveAll(c.Dir)
}

// Namespace makes a fresh RBD namespace in the test pool, removed (with
// every image left in it) when the test ends: each test gets a pool of
// its own without the cost of creating a Ceph pool.
func (c *Ceph) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "t" + hex.EncodeToString(b)
	if err := c.run("rbd", "-c", c.Conf, "namespace", "create", c.Pool+"/"+ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Images first (snapshots unprotected and purged), then the
		// namespace; what fails is left in a cluster that goes anyway.
		out, err := exec.Command("rbd", "-c", c.Conf, "ls", c.Pool+"/"+ns).Output()
		if err == nil {
			for _, img := range strings.Fields(string(out)) {
				c.RemoveImage(c.Pool + "/" + ns + "/" + img)
			}
		}
		_ = c.run("rbd", "-c", c.Conf, "namespace", "remove", c.Pool+"/"+ns)
	})
	return ns
}

// RemoveImage removes an image and its snapshots, best effort.
func (c *Ceph) RemoveImage(spec string) {
	out, _ := exec.Command("rbd", "-c", c.Conf, "snap", "ls", spec).Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] != "SNAPID" {
			_ = exec.Command("rbd", "-c", c.Conf, "snap", "unprotect", spec+"@"+f[1]).Run()
		}
	}
	_ = exec.Command("rbd", "-c", c.Conf, "snap", "purge", "--no-progress", spec).Run()
	_ = exec.Command("rbd", "-c", c.Conf, "rm", "--no-progress", spec).Run()
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
