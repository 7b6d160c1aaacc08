package librados_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/rbd/librados"
	"github.com/strata-vm/strata/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	storagetest.StopCeph()
	os.Exit(code)
}

// features are the rbd driver's image features (exclusive-lock: the
// rollback takes the lock in process).
const features = "layering,exclusive-lock,object-map,fast-diff,deep-flatten"

const genObject = "strata_restored" // rbd.GenerationObject

type fixture struct {
	c  *storagetest.Ceph
	ns string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	if err := librados.Available(); err != nil {
		t.Fatalf("librados: %v (Debian librados2 and librbd1 come with ceph-common)", err)
	}
	c := storagetest.CephCluster(t)
	return fixture{c: c, ns: c.Namespace(t)}
}

func (f fixture) spec(img string) string { return f.c.Pool + "/" + f.ns + "/" + img }

// path is QEMU's rbd: filename of img.
func (f fixture) path(img string) string { return "rbd:" + f.spec(img) + ":conf=" + f.c.Conf }

func (f fixture) rbd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("rbd", append([]string{"--conf", f.c.Conf}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rbd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// write fills the first 64 KiB of img with b (qemu-io, through librbd).
func (f fixture) write(t *testing.T, img string, b byte) {
	t.Helper()
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P %#x 0 64k", b), f.path(img))
}

// holds says whether the first 64 KiB of img are all b.
func (f fixture) holds(t *testing.T, img string, b byte) bool {
	t.Helper()
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", fmt.Sprintf("read -P %#x 0 64k", b), f.path(img)).CombinedOutput()
	return err == nil && !strings.Contains(string(out), "Pattern verification failed")
}

func (f fixture) generation(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("rados", "--conf", f.c.Conf, "--pool", f.c.Pool, "--namespace", f.ns, "getomapval", genObject, img, "/dev/stdout").Output()
	if err != nil {
		t.Fatalf("rados getomapval: %v", err)
	}
	return string(out)
}

// rollback is the sequence the rbd driver runs to roll img back to
// point, on one connection: the pre-rollback point, the rename aside,
// the watchers check, the rollback, the new generation, the rename back.
func rollback(io *librados.IOCtx, img, point, pre, gen string) error {
	live, err := io.Open(img)
	if err != nil {
		return err
	}
	err = live.SnapCreate(pre)
	if cerr := live.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	aside := img + ".strata-applying"
	if err := io.Rename(img, aside); err != nil {
		return err
	}
	ro, err := io.OpenReadOnly(aside)
	if err != nil {
		return err
	}
	n, err := ro.Watchers()
	if cerr := ro.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d watchers on %s", n, aside)
	}
	im, err := io.Open(aside)
	if err != nil {
		return err
	}
	err = im.SnapRollback(point)
	if cerr := im.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := io.OmapSet(genObject, map[string][]byte{img: []byte(gen)}); err != nil {
		return err
	}
	return io.Rename(aside, img)
}

func threads(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads: in /proc/self/status")
	return 0
}

// TestRollbackInProcessRestoresTheBytes: twenty times in one process,
// each on a connection of its own, a point is taken, the image written,
// and the driver's rollback sequence run in process: the image holds
// the point's bytes again, keeps both snapshots, has the new generation,
// and the process's threads come back to what they were (librados joins
// its threads at shutdown).
func TestRollbackInProcessRestoresTheBytes(t *testing.T) {
	f := newFixture(t)
	const img = "strata-00000000000000a1"
	f.rbd(t, "create", "--size", "8M", "--image-feature", features, f.spec(img))
	f.write(t, img, 0x41)
	before := threads(t)
	peak := 0
	for i := 0; i < 20; i++ {
		conn, err := librados.Connect(f.c.Conf, "", librados.Options{MountTimeout: 15 * time.Second, OpTimeout: 120 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, threads(t))
		io, err := conn.IOCtx(f.c.Pool, f.ns)
		if err != nil {
			t.Fatal(err)
		}
		point, pre, gen := fmt.Sprintf("p%02d", i), fmt.Sprintf("pre%02d", i), fmt.Sprintf("gen%02d", i)
		im, err := io.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := im.SnapCreate(point); err != nil {
			t.Fatal(err)
		}
		if err := im.Close(); err != nil {
			t.Fatal(err)
		}
		f.write(t, img, 0x42)
		if err := rollback(io, img, point, pre, gen); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		io.Close()
		conn.Close()
		if !f.holds(t, img, 0x41) {
			t.Fatalf("round %d: after the rollback the image does not hold the point's 0x41", i)
		}
		if g := f.generation(t, img); g != gen {
			t.Fatalf("round %d: generation %q, want %q", i, g, gen)
		}
	}
	snaps := f.rbd(t, "snap", "ls", f.spec(img))
	for _, s := range []string{"p00", "pre00", "p19", "pre19"} {
		if !strings.Contains(snaps, " "+s+" ") {
			t.Fatalf("snapshot %s is gone:\n%s", s, snaps)
		}
	}
	// rados_shutdown joins librados' threads: what is left are Go's own.
	time.Sleep(100 * time.Millisecond)
	after := threads(t)
	t.Logf("threads: %d before, %d with a connection, %d after 20 connections closed", before, peak, after)
	if after > before+8 {
		t.Fatalf("threads: %d before, %d after 20 connections were closed: librados threads leak", before, after)
	}
}

// TestErrorsAreErrno: a missing image, a rename onto an existing name,
// an unknown pool and an unreadable ceph.conf come back as their errno.
func TestErrorsAreErrno(t *testing.T) {
	f := newFixture(t)
	if _, err := librados.Connect("/nonexistent/ceph.conf", "", librados.Options{}); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Connect with a missing conf: %v, want ENOENT", err)
	}
	conn, err := librados.Connect(f.c.Conf, "", librados.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.IOCtx("no-such-pool", ""); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("IOCtx of a missing pool: %v, want ENOENT", err)
	}
	io, err := conn.IOCtx(f.c.Pool, f.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer io.Close()
	if _, err := io.Open("missing"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Open of a missing image: %v, want ENOENT", err)
	}
	f.rbd(t, "create", "--size", "1M", f.spec("a"))
	f.rbd(t, "create", "--size", "1M", f.spec("b"))
	if err := io.Rename("a", "b"); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("Rename onto an existing image: %v, want EEXIST", err)
	}
	im, err := io.Open("a")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.SnapRollback("nosnap"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("SnapRollback to a missing snapshot: %v, want ENOENT", err)
	}
	// An image open read-write elsewhere (qemu-io) is a watcher.
	stop := storagetest.HoldRBDOpen(t, f.path("b"))
	defer stop()
	ro, err := io.OpenReadOnly("b")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if n, err := ro.Watchers(); err != nil || n != 1 {
		t.Fatalf("Watchers of an image qemu-io holds: %d %v, want 1", n, err)
	}
}
