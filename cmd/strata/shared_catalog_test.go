package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// A host is one of two strata hosts on this machine sharing an etcd
// catalog: a state home (and runtime directory) of its own, its name.
type host struct {
	name, home string
	env        []string
}

func twoHosts(t *testing.T, url string) (host, host) {
	t.Helper()
	mk := func(name string) host {
		return host{name: name, home: shortHome(t), env: []string{"STRATA_CATALOG=" + url, "STRATA_HOST=" + name}}
	}
	return mk("hosta"), mk("hostb")
}

func (h host) run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runIn(t, h.home, append(append([]string(nil), h.env...), env...), args...)
}

func (h host) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := h.run(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("%s: strata %s: exit %d\nstderr: %s", h.name, strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func (h host) fails(t *testing.T, code int, want string, args ...string) result {
	t.Helper()
	r := h.run(t, []string{"STRATA_LOCK_TIMEOUT=1s"}, args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Fatalf("%s: strata %s: exit %d, want %d and %q\nstderr: %s", h.name, strings.Join(args, " "), r.code, code, want, r.stderr)
	}
	return r
}

func (h host) json(t *testing.T, v any, args ...string) {
	t.Helper()
	out := h.ok(t, append([]string{"--output", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: %v: %s", h.name, err, out)
	}
}

// Two hosts see one catalog: what one records the other lists; a catalog
// moves from a host's bbolt file into etcd (catalog export, then import
// with --catalog) and back, record for record.
func TestSharedCatalogTwoHostsSeeOneCatalog(t *testing.T) {
	solo := filepath.Join(t.TempDir(), "solo")
	ok(t, solo, "volume", "create", "kept", "--size", "1M")
	file := filepath.Join(t.TempDir(), "cat.json")
	ok(t, solo, "catalog", "export", file)

	a, b := twoHosts(t, storagetest.Etcd(t))
	a.home = solo // host A moves its catalog into etcd
	a.ok(t, "catalog", "import", file)
	b.ok(t, "catalog", "accept")
	pool := filepath.Join(t.TempDir(), "shared")
	b.ok(t, "pool", "add", "shared", "--path", pool)
	b.ok(t, "volume", "create", "fromb", "--size", "1M", "--pool", "shared")
	var vols []struct{ Name, Pool string }
	a.json(t, &vols, "volume", "list")
	if fmt.Sprint(vols) != "[{fromb shared} {kept default}]" {
		t.Fatalf("volumes host A sees: %v", vols)
	}
	a.ok(t, "volume", "delete", "fromb", "--purge")
	b.json(t, &vols, "volume", "list")
	if len(vols) != 1 {
		t.Fatalf("volumes host B sees after A deleted one: %v", vols)
	}
	if r := b.run(t, nil, "doctor"); r.code != 0 {
		t.Fatalf("doctor on host B: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// And back into a file catalog.
	back := filepath.Join(t.TempDir(), "back.json")
	b.ok(t, "catalog", "export", back)
	fresh := filepath.Join(t.TempDir(), "fresh")
	ok(t, fresh, "catalog", "import", back)
	if out := ok(t, fresh, "volume", "list"); !strings.Contains(out, "kept") {
		t.Fatalf("volume list of the file catalog imported from etcd:\n%s", out)
	}
	// --force over the etcd catalog keeps it as an export in the state
	// home, and says where.
	r := b.run(t, nil, "catalog", "import", "--force", back)
	copies, _ := filepath.Glob(filepath.Join(b.home, "backups", "catalog-before-import-*.json"))
	if r.code != 0 || len(copies) != 1 || !strings.Contains(r.stderr, copies[0]) {
		t.Fatalf("catalog import --force: exit %d, copies %v\n%s", r.code, copies, r.stderr)
	}
}

// A guest runs on one host at a time: while host A runs it, host B may not
// start, move or delete it (the error names host A); once A stops it, B
// must have it handed over ('guest move --to'), then B starts it, and A
// is refused in turn.
func TestSharedCatalogGuestRunsOnOneHostAndMoves(t *testing.T) {
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	a, b := twoHosts(t, storagetest.Etcd(t))
	a.ok(t, "volume", "create", "bs", "--size", "1M")
	var v struct{ Path string }
	a.json(t, &v, "volume", "info", "bs")
	writeBootSector(t, v.Path, "SHARED-BS-UP", boottest.PowerButton)
	a.ok(t, "guest", "define", "bs", "--disk", "bs", "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu")

	a.ok(t, "guest", "start", "bs", "--wait-serial", "SHARED-BS-UP")
	b.fails(t, 5, "runs on host hosta", "guest", "start", "bs")
	var st struct{ State, Host string }
	b.json(t, &st, "guest", "status", "bs")
	var list []struct{ Name, State, Host string }
	b.json(t, &list, "guest", "list")
	if st.State != "running" || st.Host != "hosta" || len(list) != 1 || list[0].State != "running" || list[0].Host != "hosta" {
		t.Fatalf("host B's view of the guest host A runs: status %+v, list %+v", st, list)
	}
	b.fails(t, 5, "runs on host hosta", "guest", "move", "bs", "--to", "hostb")
	b.fails(t, 5, "runs on host hosta", "guest", "delete", "bs")
	// B's process scan cannot see A's guest (on two machines): the
	// catalog's owner record holds its disks against B's writes.
	a.ok(t, "snapshot", "create", "bs")
	b.fails(t, 5, `strata on host hosta, domain "bs": the guest runs there`, "snapshot", "rollback", "bs", "1")
	a.ok(t, "guest", "stop", "bs")

	// The keeper on A drops the claim within a second of the stop.
	var r result
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = b.run(t, []string{"STRATA_LOCK_TIMEOUT=1s"}, "guest", "start", "bs"); r.code != 5 {
			break
		}
	}
	if r.code != 7 || !strings.Contains(r.stderr, "belongs to host hosta") || !strings.Contains(r.stderr, "guest move bs --to hostb") {
		t.Fatalf("B starts A's stopped guest: exit %d, want 7 (hand it over first)\n%s", r.code, r.stderr)
	}
	b.ok(t, "guest", "move", "bs", "--to", "hostb")
	b.ok(t, "guest", "start", "bs", "--wait-serial", "SHARED-BS-UP")
	a.fails(t, 5, "runs on host hostb", "guest", "start", "bs")
	b.ok(t, "guest", "stop", "bs")
}

// Twenty strata processes on each host at once take restore points of two
// shared volumes: every one succeeds, the catalog lists exactly the points
// taken (numbers 1..20 per volume, no two alike), and every point rolls
// back.
func TestSharedCatalogConcurrentProcessesOnTwoHosts(t *testing.T) {
	a, b := twoHosts(t, storagetest.Etcd(t))
	pool := filepath.Join(t.TempDir(), "shared")
	a.ok(t, "pool", "add", "shared", "--path", pool)
	concurrentPointsOnTwoHosts(t, a, b, "shared")
}

// concurrentPointsOnTwoHosts runs the test above on pool, which both
// hosts share.
func concurrentPointsOnTwoHosts(t *testing.T, a, b host, pool string) {
	t.Helper()
	for _, v := range []string{"v1", "v2"} {
		a.ok(t, "volume", "create", v, "--size", "1M", "--pool", pool)
	}
	const each = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for i := 0; i < each; i++ {
		for _, h := range []host{a, b} {
			wg.Add(1)
			go func(h host, i int) {
				defer wg.Done()
				vol := []string{"v1", "v2"}[i%2]
				r := h.run(t, nil, "snapshot", "create", "--volume", vol, "--name", fmt.Sprintf("%s-%d", h.name, i))
				if r.code != 0 {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s %d: exit %d: %s", h.name, i, r.code, r.stderr))
					mu.Unlock()
				}
			}(h, i)
		}
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d point creations failed:\n%s", len(failed), 2*each, strings.Join(failed, "\n"))
	}
	for _, vol := range []string{"v1", "v2"} {
		var pts []struct {
			Number int `json:"id"`
			Name   string
		}
		b.json(t, &pts, "snapshot", "list", "--volume", vol)
		seen := map[int]bool{}
		names := map[string]bool{}
		for _, p := range pts {
			seen[p.Number], names[p.Name] = true, true
		}
		if len(pts) != each || len(seen) != each || len(names) != each {
			t.Fatalf("points of %s: %d listed, %d numbers, %d names; want %d: %+v", vol, len(pts), len(seen), len(names), each, pts)
		}
		for _, p := range pts {
			h := []host{a, b}[p.Number%2]
			h.ok(t, "snapshot", "rollback", "--volume", vol, p.Name)
		}
	}
	if r := a.run(t, nil, "doctor"); r.code != 0 {
		t.Fatalf("doctor: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Host A is killed (with the qemu-img it runs) in the middle of a rollback:
// its locks hold host B off (busy, naming host A) until A's lease
// expires; then B's next command on that volume finishes or undoes the
// rollback the journal records, and the image is sound and every point
// restores.
func TestSharedCatalogRollbackOfACrashedHostIsRecoveredByAnother(t *testing.T) {
	a, b := twoHosts(t, storagetest.Etcd(t)+"?lease=2s")
	p := filepath.Join(t.TempDir(), "slow.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "64M")
	d := disk{p, "qcow2"}
	d.fill(t, 0xa1)
	a.ok(t, "volume", "import", p, "--name", "slow")
	a.ok(t, "snapshot", "create", "--volume", "slow")
	d.fill(t, 0xb2)

	cmd := exec.Command(strataBinary(t), "--home", a.home, "snapshot", "rollback", "--volume", "slow", "1")
	cmd.Env = append(os.Environ(), a.env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	qimg := waitForTool(t, filepath.Dir(p), "qemu-img", "snapshot", "-a")
	// The host dies: strata and its qemu-img at once.
	_ = syscall.Kill(qimg, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	killed := time.Now()

	r := b.run(t, []string{"STRATA_LOCK_TIMEOUT=300ms"}, "snapshot", "rollback", "--volume", "slow", "1")
	if early := time.Since(killed) < 1500*time.Millisecond; early && (r.code != 6 || !strings.Contains(r.stderr, "host hosta")) {
		t.Fatalf("B while A's lease lives: exit %d, want 6 naming host hosta\n%s", r.code, r.stderr)
	} else if !early {
		t.Logf("the machine is slow: B's first command came %s after the crash, when A's lease may be gone", time.Since(killed))
	}
	b.ok(t, "doctor", "--repair")
	qcow2Clean(t, p)
	if !d.holds(t, 0xa1) && !d.holds(t, 0xb2) {
		t.Fatalf("after recovery the volume holds neither the point's bytes nor those before the rollback")
	}
	b.ok(t, "snapshot", "rollback", "--volume", "slow", "1")
	if !d.holds(t, 0xa1) {
		t.Fatalf("point 1 does not restore its bytes after the recovery")
	}
	if r := a.run(t, nil, "doctor"); r.code != 0 {
		t.Fatalf("doctor on host A: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// etcd unreachable (its process stopped): a command fails with "busy"
// (exit 6) after --lock-timeout, says the catalog is unreachable, and
// changes nothing: no record, no file.
func TestSharedCatalogUnreachableIsBusyAndChangesNothing(t *testing.T) {
	srv, err := storagetest.StartEtcd()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	url := "etcd://" + srv.Endpoint + "/" + storagetest.UniquePrefix()
	a, _ := twoHosts(t, url)
	pool := filepath.Join(t.TempDir(), "shared")
	a.ok(t, "pool", "add", "shared", "--path", pool)
	before, _ := os.ReadDir(pool)

	srv.Pause()
	start := time.Now()
	r := a.run(t, []string{"STRATA_LOCK_TIMEOUT=1s"}, "volume", "create", "lost", "--size", "1M", "--pool", "shared")
	took := time.Since(start)
	srv.Resume()
	if r.code != 6 || !strings.Contains(r.stderr, "unreachable") || !strings.Contains(r.stderr, "--lock-timeout") {
		t.Fatalf("volume create with etcd stopped: exit %d, want 6 (busy, unreachable)\n%s", r.code, r.stderr)
	}
	if took > 10*time.Second {
		t.Fatalf("the command took %s with a 1 s lock timeout", took)
	}
	after, _ := os.ReadDir(pool)
	if len(after) != len(before) {
		t.Fatalf("the pool changed: %d entries before, %d after", len(before), len(after))
	}
	if out := a.ok(t, "volume", "list"); strings.Contains(out, "lost") {
		t.Fatalf("the volume was recorded:\n%s", out)
	}
}

// Fencing: host A is frozen (SIGSTOP, as a partitioned or paused host is)
// in the middle of a rollback for longer than its lease; host B's doctor
// --repair takes over and finishes or undoes the rollback. When A wakes
// its lease is gone: it ends at once, touching neither the image nor the
// catalog (a commit that got through would be refused anyway: it compares
// locks that are no longer A's), and the volume and its points stay as B
// left them.
func TestSharedCatalogHostThatLostItsLeaseStopsBeforeWriting(t *testing.T) {
	a, b := twoHosts(t, storagetest.Etcd(t)+"?lease=2s")
	p := filepath.Join(t.TempDir(), "slow.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "64M")
	d := disk{p, "qcow2"}
	d.fill(t, 0xa1)
	a.ok(t, "volume", "import", p, "--name", "slow")
	a.ok(t, "snapshot", "create", "--volume", "slow")
	d.fill(t, 0xb2)

	cmd := exec.Command(strataBinary(t), "--home", a.home, "snapshot", "rollback", "--volume", "slow", "1")
	cmd.Env = append(os.Environ(), a.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitForTool(t, filepath.Dir(p), "qemu-img", "snapshot", "-a")
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(3 * time.Second) // A's lease (2 s) expires

	b.ok(t, "doctor", "--repair")
	var before []struct {
		Number int `json:"id"`
	}
	b.json(t, &before, "snapshot", "list", "--volume", "slow")
	held := d.holds(t, 0xa1)

	_ = cmd.Process.Signal(syscall.SIGCONT)
	err := cmd.Wait()
	if exitCodeOf(err) != 128+9 || !strings.Contains(stderr.String(), "lease") || strings.Contains(stderr.String(), "rename") {
		t.Fatalf("host A after losing its lease: exit %d, want killed (137) saying it lost its lease, before touching the image\n%s", exitCodeOf(err), stderr.String())
	}
	var after []struct {
		Number int `json:"id"`
	}
	b.json(t, &after, "snapshot", "list", "--volume", "slow")
	if fmt.Sprint(after) != fmt.Sprint(before) || d.holds(t, 0xa1) != held {
		t.Fatalf("host A changed things after it lost its lease: points %v → %v, volume holds point 1's bytes %v → %v", before, after, held, !held)
	}
	qcow2Clean(t, p)
	if r := b.run(t, nil, "doctor"); r.code != 0 {
		t.Fatalf("doctor after A woke: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b.ok(t, "snapshot", "rollback", "--volume", "slow", "1")
	if !d.holds(t, 0xa1) {
		t.Fatal("point 1 does not restore its bytes")
	}
}

// An etcd catalog left empty by an import killed after it cleared the
// prefix: every command refuses (damaged) and says how to put a copy back
// on etcd (catalog import --force, with the copy the import kept), not
// catalog restore, which is for files; that import brings it all back.
func TestSharedCatalogLeftEmptyByAKilledImportSaysToImport(t *testing.T) {
	a, _ := twoHosts(t, storagetest.Etcd(t))
	a.ok(t, "volume", "create", "v", "--size", "1M")
	export := filepath.Join(t.TempDir(), "catalog.json")
	a.ok(t, "catalog", "export", export)
	r := a.run(t, []string{"STRATA_CRASH_AT=import:cleared"}, "catalog", "import", export, "--force")
	if r.code != -1 && r.code != 137 {
		t.Fatalf("import killed after clearing: exit %d\n%s", r.code, r.stderr)
	}
	r = a.run(t, nil, "volume", "list")
	if r.code != 9 || !strings.Contains(r.stderr, "strata catalog import FILE --force") || strings.Contains(r.stderr, "catalog restore") {
		t.Fatalf("a command on the emptied catalog: exit %d, want 9 and the import hint\n%s", r.code, r.stderr)
	}
	a.ok(t, "catalog", "import", export, "--force")
	var vs []struct{ Name string }
	if a.json(t, &vs, "volume", "list"); len(vs) != 1 || vs[0].Name != "v" {
		t.Fatalf("volumes after the import: %+v", vs)
	}
}
