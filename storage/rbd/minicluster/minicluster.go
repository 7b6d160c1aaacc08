// Package minicluster starts a single-node Ceph cluster for tests and
// benchmarks (no package testing here: the benchmark binary links it):
// one monitor on 127.0.0.1 speaking msgr v2 only, one OSD keeping its
// objects in memory (memstore), no manager and no cephx, up in about 3 s.
//
// The settings that matter on a one-OSD cluster: pool size 1
// (mon_allow_pool_size_one), osd_crush_chooseleaf_type 0 (one host),
// paxos_propose_interval 0.1 (else every map change waits a second),
// mon_data_avail_crit 0 (else the monitor stops itself when the host's
// disk is low), osd_snap_trim_sleep_* 0 (removed snapshots' objects are
// freed at once: with the default 5 s sleep a benchmark that takes and
// removes a snapshot per rollback fills the memstore faster than it
// trims), and no client admin socket (concurrent clients of one
// name would collide on it). Without a manager `ceph df` reports no
// usage: the pool gets a quota so that its free space is known.
package minicluster

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
	"syscall"
	"time"
)

// Cluster is a running single-node cluster.
type Cluster struct {
	Dir  string // the cluster's files (ceph.conf, mon, osd, logs)
	Conf string // its ceph.conf, for --conf / CEPH_CONF / qemu's conf=
	// Pool is the Ceph pool made for tests (RBD-initialised, with a
	// quota so that free space is known without a manager).
	Pool string
	// Quota is the pool's quota in bytes.
	Quota int64
	// Client is, on a cluster with cephx (StartCephx), the ID of a
	// client with the rbd profile on Pool, for --id; its keyring (0600)
	// is named by Conf's [client.ID] section. "" without cephx.
	Client string
	procs  []*exec.Cmd
}

// Tools are the programs the cluster needs (Debian ceph-mon, ceph-osd,
// ceph-common).
var Tools = []string{"ceph-mon", "ceph-osd", "ceph", "rbd", "monmaptool"}

// Start starts a cluster in a new temporary directory; its daemons are
// the caller's children, killed with it (Pdeathsig) if Stop never runs.
// memBytes bounds what the OSD keeps in memory.
func Start(memBytes int64) (*Cluster, error) {
	return startCeph(memBytes, false)
}

// StartCephx starts a cluster as Start does, with cephx required of
// every daemon and client, laid out as on a host where /etc/ceph holds
// the cluster's files: the ceph.conf readable by every user (a QEMU run
// by libvirt as libvirt-qemu reads it), each keyring readable by root
// only (0600: libvirt hands QEMU the key from its secret instead), the
// directory traversable but not listable (0711). Client is a cephx
// client with the rbd profile on the test pool.
func StartCephx(memBytes int64) (*Cluster, error) {
	return startCeph(memBytes, true)
}

// Stop stops the daemons and removes the cluster's files.
func (c *Cluster) Stop() { c.stop() }

// Run runs a ceph or rbd command against the cluster (set-up), with a
// deadline.
func (c *Cluster) Run(argv ...string) error { return c.run(argv...) }

// NewNamespace makes a fresh RBD namespace in the test pool.
func (c *Cluster) NewNamespace() (string, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "t" + hex.EncodeToString(b)
	return ns, c.run("rbd", "--conf", c.Conf, "namespace", "create", c.Pool+"/"+ns)
}

// RemoveNamespace removes a namespace with every image in it (clones
// first: a golden goes once its clones are gone), best effort.
func (c *Cluster) RemoveNamespace(ns string) {
	for pass := 0; pass < 3; pass++ {
		out, err := exec.Command("rbd", "--conf", c.Conf, "ls", c.Pool+"/"+ns).Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			break
		}
		for _, img := range strings.Fields(string(out)) {
			c.RemoveImage(c.Pool + "/" + ns + "/" + img)
		}
	}
	_ = c.run("rbd", "--conf", c.Conf, "namespace", "remove", c.Pool+"/"+ns)
}

// RemoveImage removes an image and its snapshots, best effort.
func (c *Cluster) RemoveImage(spec string) {
	out, _ := exec.Command("rbd", "--conf", c.Conf, "snap", "ls", spec).Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] != "SNAPID" {
			_ = exec.Command("rbd", "--conf", c.Conf, "snap", "unprotect", spec+"@"+f[1]).Run()
		}
	}
	_ = exec.Command("rbd", "--conf", c.Conf, "snap", "purge", "--no-progress", spec).Run()
	_ = exec.Command("rbd", "--conf", c.Conf, "rm", "--no-progress", spec).Run()
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
osd_snap_trim_sleep_hdd = 0
osd_snap_trim_sleep_ssd = 0
osd_snap_trim_sleep_hybrid = 0
run_dir = {{dir}}/run
log_file = {{dir}}/log/$name.log
mon_data = {{dir}}/mon
osd_data = {{dir}}/osd
[client]
admin_socket =
log_file =
`

// cephxConf replaces the [global] auth lines of cephConf.
const cephxConf = `auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {{dir}}/keyring
[osd]
keyring = {{dir}}/osd/keyring
[client.{{client}}]
keyring = {{dir}}/ceph.client.{{client}}.keyring
[global]
`

// startCeph starts a cluster of one monitor and one OSD (memstore of
// memBytes) with the pool, in steps: its files, the monitor, the OSD, the
// pool (and, with cephx, the client that may use it).
func startCeph(memBytes int64, cephx bool) (c *Cluster, err error) {
	dir, err := os.MkdirTemp("", "strata-ceph-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, Conf: filepath.Join(dir, "ceph.conf"), Pool: "strata", Quota: 4 << 30}
	started := c // (a failure returns a nil c: its daemons still stop)
	defer func() {
		if err != nil {
			started.stop()
		}
	}()
	port, fsid, err := c.writeConf(memBytes, cephx)
	if err != nil {
		return nil, err
	}
	if err := c.startMon(port, fsid, cephx); err != nil {
		return nil, err
	}
	if err := c.startOSD(cephx); err != nil {
		return nil, err
	}
	if err := c.makePool(cephx); err != nil {
		return nil, err
	}
	return c, nil
}

// writeConf makes the cluster's directories and its ceph.conf (with
// cephx: readable by all, as Ceph installs it, in a searchable directory,
// and a client ID of the cluster's own); it returns the monitor's port
// and the cluster's fsid.
func (c *Cluster) writeConf(memBytes int64, cephx bool) (port int, fsid string, err error) {
	for _, d := range []string{"run", "log", "mon", "osd"} {
		if err := os.Mkdir(filepath.Join(c.Dir, d), 0o700); err != nil {
			return 0, "", err
		}
	}
	if port, err = freePort(); err != nil {
		return 0, "", err
	}
	fsid = uuid()
	tmpl, mode := cephConf, os.FileMode(0o600)
	if cephx {
		tmpl = strings.Replace(tmpl, "auth_cluster_required = none\nauth_service_required = none\nauth_client_required = none\n", cephxConf, 1)
		mode = 0o644
		if err := os.Chmod(c.Dir, 0o711); err != nil {
			return 0, "", err
		}
		// A client ID of its own: a libvirt secret is named after the
		// client, and two test binaries may share one libvirtd.
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.Client = "strata-" + hex.EncodeToString(b)
	}
	conf := strings.NewReplacer("{{fsid}}", fsid, "{{port}}", fmt.Sprint(port), "{{dir}}", c.Dir, "{{bytes}}", fmt.Sprint(memBytes), "{{client}}", c.Client).Replace(tmpl)
	if err := os.WriteFile(c.Conf, []byte(conf), mode); err != nil {
		return 0, "", err
	}
	return port, fsid, os.Chmod(c.Conf, mode)
}

// startMon makes the monitor's map and store (with cephx, its keyring,
// which holds client.admin too, as vstart.sh has it) and starts it.
func (c *Cluster) startMon(port int, fsid string, cephx bool) error {
	monmap := filepath.Join(c.Dir, "monmap")
	if err := c.run("monmaptool", "--create", "--addv", "a", fmt.Sprintf("[v2:127.0.0.1:%d]", port), "--fsid", fsid, monmap); err != nil {
		return err
	}
	mkfs := []string{"ceph-mon", "-c", c.Conf, "--mkfs", "-i", "a", "--monmap", monmap}
	if cephx {
		keyring := filepath.Join(c.Dir, "keyring")
		if err := c.run("ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"); err != nil {
			return err
		}
		if err := c.run("ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"); err != nil {
			return err
		}
		mkfs = append(mkfs, "--keyring", keyring)
	}
	if err := c.run(mkfs...); err != nil {
		return err
	}
	return c.daemon("ceph-mon", "-c", c.Conf, "-f", "-i", "a")
}

// startOSD registers the OSD with the monitor (with cephx, its key,
// written to its keyring and never on a command line), makes its store
// and starts it.
func (c *Cluster) startOSD(cephx bool) error {
	osdUUID := uuid()
	newOSD := []string{"ceph", "-c", c.Conf, "--connect-timeout", "20", "osd", "new", osdUUID}
	var osdKey string
	if cephx {
		key, err := exec.Command("ceph-authtool", "--gen-print-key").Output()
		if err != nil {
			return fmt.Errorf("ceph-authtool --gen-print-key: %v", err)
		}
		osdKey = strings.TrimSpace(string(key))
		secrets := filepath.Join(c.Dir, "osd-secret.json")
		if err := os.WriteFile(secrets, []byte(`{"cephx_secret": "`+osdKey+`"}`), 0o600); err != nil {
			return err
		}
		newOSD = append(newOSD, "-i", secrets)
	}
	if err := c.run(newOSD...); err != nil {
		return err
	}
	if cephx {
		if err := os.WriteFile(filepath.Join(c.Dir, "osd", "keyring"), []byte("[osd.0]\n\tkey = "+osdKey+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := c.run("ceph-osd", "-c", c.Conf, "-i", "0", "--mkfs", "--osd-uuid", osdUUID); err != nil {
		return err
	}
	return c.daemon("ceph-osd", "-c", c.Conf, "-f", "-i", "0")
}

// makePool creates the RBD pool with its quota (and, with cephx, the
// client with profile rbd on it, its keyring 0600).
func (c *Cluster) makePool(cephx bool) error {
	if err := c.run("ceph", "-c", c.Conf, "osd", "pool", "create", c.Pool, "8"); err != nil {
		return err
	}
	if err := c.run("ceph", "-c", c.Conf, "osd", "pool", "set-quota", c.Pool, "max_bytes", fmt.Sprint(c.Quota)); err != nil {
		return err
	}
	if err := c.run("rbd", "-c", c.Conf, "pool", "init", c.Pool); err != nil {
		return err
	}
	if !cephx {
		return nil
	}
	kr := filepath.Join(c.Dir, "ceph.client."+c.Client+".keyring")
	if err := c.run("ceph", "-c", c.Conf, "auth", "get-or-create", "client."+c.Client, "mon", "profile rbd", "osd", "profile rbd pool="+c.Pool, "-o", kr); err != nil {
		return err
	}
	return os.Chmod(kr, 0o600)
}

// run runs a set-up command with a deadline.
func (c *Cluster) run(argv ...string) error {
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
func (c *Cluster) daemon(argv ...string) error {
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
func (c *Cluster) logs() string {
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

func (c *Cluster) stop() {
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
