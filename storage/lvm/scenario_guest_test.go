package lvm_test

// The strata binary on real LVM, in the same guest boot as the
// conformance suite: a thick point driven past its size, a thin pool at
// its limit, a thin rollback killed at each of its steps. The host test
// gives the guest a static strata at /strataBin.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
)

const strataBin = "/strata/bin/strata"

type strataRun struct {
	t    *testing.T
	home string
	// wrap runs strata through a command (unshare ...).
	wrap []string
}

// run runs strata; code is its exit code (-9: killed by SIGKILL).
func (s strataRun) run(env []string, args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	argv := append(append(append([]string{}, s.wrap...), strataBin, "--home", s.home), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
		} else {
			code = ee.ExitCode()
		}
	default:
		s.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func (s strataRun) ok(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.run(nil, args...)
	if code != 0 {
		s.t.Fatalf("strata %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func (s strataRun) volumePath(name string) string {
	s.t.Helper()
	var v struct {
		Path   string `json:"path"`
		Device bool   `json:"block_device"`
	}
	if err := json.Unmarshal([]byte(s.ok("-o", "json", "volume", "info", name)), &v); err != nil {
		s.t.Fatal(err)
	}
	if !v.Device || !strings.HasPrefix(v.Path, "/dev/"+conformanceVG+"/strata.vol.") {
		s.t.Fatalf("volume %s: %+v, want a block device in %s", name, v, conformanceVG)
	}
	return v.Path
}

func TestGuestStrataOnLVM(t *testing.T) {
	inGuest(t)
	if _, err := os.Stat(strataBin); err != nil {
		t.Fatalf("no strata binary in the guest: %v", err)
	}
	ctx := context.Background()
	c := &lvm.Client{}
	vgReady(t)
	s := strataRun{t: t, home: filepath.Join(t.TempDir(), "home")}

	t.Run("ThickPointOverflowIsInvalidAndRefused", func(t *testing.T) {
		s.t = t
		s.ok("pool", "add", "thick", "--driver", "lvm", "--vg", conformanceVG, "--snapshot-size", "10%")
		s.ok("volume", "create", "ov", "--pool", "thick", "--size", "40M", "--format", "raw")
		path := s.volumePath("ov")
		writeDev(t, path, 0, fill('A', mib))
		s.ok("snapshot", "create", "--volume", "ov", "--name", "small")
		// 8 MiB of changes overflow a 4 MiB (10%, one extent) snapshot.
		writeDev(t, path, 0, fill('B', 8*mib))
		_, errOut, code := s.run(nil, "snapshot", "rollback", "--volume", "ov", "small")
		if code != 7 || !strings.Contains(errOut, "invalid") || !strings.Contains(errOut, "overflowed") {
			t.Fatalf("rollback to an overflowed point: exit %d, %s", code, errOut)
		}
		if got := readDev(t, path, 0, mib); !bytes.Equal(got, fill('B', mib)) {
			t.Fatal("a refused rollback changed the disk")
		}
	})

	t.Run("ThinPoolAtItsLimitRefusesAPoint", func(t *testing.T) {
		s.t = t
		if err := c.CreateThinPool(ctx, lvm.ThinPoolOptions{VG: conformanceVG, Name: "sthin", Size: 16 * mib}); err != nil {
			t.Fatal(err)
		}
		_, errOut, _ := s.run(nil, "pool", "add", "thinfull", "--driver", "lvm", "--vg", conformanceVG, "--thinpool", "sthin", "--data-limit", "50")
		if !strings.Contains(errOut, "errorwhenfull") {
			t.Errorf("pool add of a queueing thin pool did not recommend --errorwhenfull: %s", errOut)
		}
		s.ok("volume", "create", "tf", "--pool", "thinfull", "--size", "32M", "--format", "raw")
		writeDev(t, s.volumePath("tf"), 0, fill('C', 10*mib))
		_, errOut, code := s.run(nil, "snapshot", "create", "--volume", "tf")
		if code != 7 || !strings.Contains(errOut, "limit of 50%") || !strings.Contains(errOut, "lvextend") {
			t.Fatalf("a point in a thin pool over its limit: exit %d, %s", code, errOut)
		}
		info := s.ok("pool", "info", "thinfull")
		if !strings.Contains(info, "thin_data:") || !strings.Contains(info, "(limit 50%)") {
			t.Fatalf("pool info:\n%s", info)
		}
	})

	t.Run("AGuestOnAnLVRendersItAsABlockDevice", func(t *testing.T) {
		s.t = t
		// A second pool on the VG's thick volumes is refused, naming
		// the first; the guest's volume goes into that one.
		if _, errOut, code := s.run(nil, "pool", "add", "render", "--driver", "lvm", "--vg", conformanceVG); code != 4 || !strings.Contains(errOut, `already pool "thick"`) {
			t.Fatalf("a second thick pool on %s: exit %d, %s", conformanceVG, code, errOut)
		}
		s.ok("volume", "create", "sys", "--pool", "thick", "--size", "8M", "--format", "raw")
		path := s.volumePath("sys")
		s.ok("guest", "define", "lvguest", "--disk", "sys:xvda")
		for format, want := range map[string]string{
			"xl":      "backendtype=phy,target=" + path,
			"libvirt": `<source dev="` + path + `"`,
			"qemu":    "file=" + path + ",format=raw",
		} {
			out := s.ok("guest", "render", "lvguest", "--format", format)
			if !strings.Contains(out, want) {
				t.Errorf("guest render --format %s lacks %q:\n%s", format, want, out)
			}
		}
		if out := s.ok("guest", "render", "lvguest", "--format", "libvirt"); !strings.Contains(out, `type="block"`) {
			t.Errorf("libvirt XML of a disk on an LV is not type block:\n%s", out)
		}
		s.ok("guest", "delete", "lvguest")
		s.ok("volume", "delete", "sys")
		if _, err := c.LV(ctx, conformanceVG, strings.TrimPrefix(path, "/dev/"+conformanceVG+"/")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the LV of a deleted volume: %v", err)
		}
	})

	t.Run("AnLVImportedInPlaceGetsPointsAndStays", func(t *testing.T) {
		s.t = t
		if err := c.Create(ctx, lvm.CreateOptions{VG: conformanceVG, Name: "legacy", Size: 8 * mib, ThinPool: conformanceThin}); err != nil {
			t.Fatal(err)
		}
		path := lvm.DevPath(conformanceVG, "legacy")
		writeDev(t, path, 0, fill('L', mib))
		s.ok("volume", "import", path, "--name", "legacy")
		var v struct {
			Path     string `json:"path"`
			Device   bool   `json:"block_device"`
			Imported bool   `json:"imported"`
		}
		if err := json.Unmarshal([]byte(s.ok("-o", "json", "volume", "info", "legacy")), &v); err != nil {
			t.Fatal(err)
		}
		if v.Path != path || !v.Device || !v.Imported {
			t.Fatalf("imported LV: %+v", v)
		}
		s.ok("snapshot", "create", "--volume", "legacy", "--name", "before")
		writeDev(t, path, 0, fill('M', mib))
		s.ok("snapshot", "rollback", "--volume", "legacy", "before")
		if got := readDev(t, path, 0, mib); !bytes.Equal(got, fill('L', mib)) {
			t.Fatal("a rollback of an imported LV did not restore its point")
		}
		var points []struct {
			ID int `json:"id"`
		}
		if err := json.Unmarshal([]byte(s.ok("-o", "json", "snapshot", "list", "--volume", "legacy")), &points); err != nil || len(points) != 2 {
			t.Fatalf("points of the imported volume: %v %v", points, err)
		}
		for _, p := range points {
			s.ok("snapshot", "delete", "--volume", "legacy", strconv.Itoa(p.ID))
		}
		s.ok("volume", "delete", "legacy")
		if _, err := c.LV(ctx, conformanceVG, "legacy"); err != nil {
			t.Fatalf("the LV of an imported volume is gone after volume delete: %v", err)
		}
	})

	t.Run("ThinRollbackKilledAtEachStepIsRepaired", func(t *testing.T) {
		s.t = t
		s.ok("pool", "add", "thin", "--driver", "lvm", "--vg", conformanceVG, "--thinpool", conformanceThin, "--errorwhenfull")
		s.ok("volume", "create", "rb", "--pool", "thin", "--size", "8M", "--format", "raw")
		path := s.volumePath("rb")
		writeDev(t, path, 0, fill('A', mib))
		s.ok("snapshot", "create", "--volume", "rb", "--name", "a")
		trace := filepath.Join(t.TempDir(), "trace")
		writeDev(t, path, 0, fill('B', mib))
		if _, errOut, code := s.run([]string{"STRATA_CRASH_TRACE=" + trace}, "snapshot", "rollback", "--volume", "rb", "a"); code != 0 {
			t.Fatalf("rollback: exit %d %s", code, errOut)
		}
		if got := readDev(t, path, 0, mib); !bytes.Equal(got, fill('A', mib)) {
			t.Fatal("the rollback did not restore the point")
		}
		raw, _ := os.ReadFile(trace)
		var steps []string
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			if strings.HasPrefix(l, "rollback:") && !contains(steps, l) {
				steps = append(steps, l)
			}
		}
		for _, want := range thinCrashSteps {
			if !contains(steps, want) {
				t.Fatalf("a thin rollback through strata passed %v, not %s", steps, want)
			}
		}
		t.Logf("steps of a thin rollback: %v", steps)
		for _, step := range steps {
			writeDev(t, path, 0, fill('B', mib))
			_, errOut, code := s.run([]string{"STRATA_CRASH_AT=" + step}, "snapshot", "rollback", "--volume", "rb", "a")
			if code != -9 {
				t.Fatalf("rollback told to crash at %s: exit %d %s", step, code, errOut)
			}
			if _, errOut, code := s.run(nil, "doctor", "--repair"); code != 0 && code != 1 {
				t.Fatalf("doctor --repair after a crash at %s: exit %d %s", step, code, errOut)
			}
			got := readDev(t, path, 0, mib)
			if !bytes.Equal(got, fill('A', mib)) && !bytes.Equal(got, fill('B', mib)) {
				t.Fatalf("after a crash at %s and doctor --repair the disk holds neither state (%q...)", step, got[:8])
			}
			if !bytes.Equal(got, fill('A', mib)) {
				t.Errorf("after a crash at %s doctor --repair undid the rollback instead of completing it", step)
			}
			out, _, _ := s.run(nil, "doctor")
			if strings.Contains(out, "interrupted") {
				t.Fatalf("doctor still finds an interrupted operation after --repair (crash at %s):\n%s", step, out)
			}
			lvs, err := c.LVs(ctx, conformanceVG)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lvs {
				if kind, _, ok := lvm.ParseLVName(l.Name); ok && (kind == lvm.KindTemp || kind == lvm.KindAside) {
					t.Errorf("after a crash at %s and doctor --repair, %s is left", step, l.Name)
				}
			}
		}
	})
}

// TestGuestLVInUse: an LV held where no process file shows it is in
// use, found by its device-mapper open count (inuse.DeviceMapper): a
// process strata cannot see (strata runs in a PID namespace of its own),
// a loop device over the LV, a mount. Each refuses volume delete and
// snapshot rollback (exit 5) naming the volume; released, both work, with
// strata's own hold on the LV (its open during a rollback) not counted.
func TestGuestLVInUse(t *testing.T) {
	inGuest(t)
	vgReady(t)
	s := strataRun{t: t, home: filepath.Join(t.TempDir(), "home")}
	s.ok("pool", "add", "held", "--driver", "lvm", "--vg", conformanceVG, "--thinpool", conformanceThin, "--errorwhenfull")
	s.ok("volume", "create", "held", "--pool", "held", "--size", "8M", "--format", "raw")
	path := s.volumePath("held")
	writeDev(t, path, 0, fill('A', mib))
	s.ok("snapshot", "create", "--volume", "held", "--name", "a")
	writeDev(t, path, 0, fill('B', mib))

	refused := func(t *testing.T, s strataRun, holder string) {
		t.Helper()
		for _, args := range [][]string{{"volume", "delete", "held"}, {"snapshot", "rollback", "--volume", "held", "a"}} {
			_, errOut, code := s.run(nil, args...)
			if code != 5 || !strings.Contains(errOut, `volume "held"`) || !strings.Contains(errOut, holder) {
				t.Fatalf("strata %s while the LV is held: exit %d, want 5 naming the volume and %q:\n%s", strings.Join(args, " "), code, holder, errOut)
			}
			t.Logf("strata %s: %s", strings.Join(args, " "), strings.TrimSpace(errOut))
		}
		if got := readDev(t, path, 0, mib); !bytes.Equal(got, fill('B', mib)) {
			t.Fatal("a refused operation changed the disk")
		}
	}

	t.Run("ByAProcessInAnotherPIDNamespace", func(t *testing.T) {
		// The holder writes the LV from a PID namespace of its own;
		// strata runs in another, whose /proc shows neither the holder
		// nor its open file.
		// It lets go when its stdin closes.
		holder := exec.Command("unshare", "-p", "-f", "--mount-proc", "sh", "-c", `exec 3<>"$1"; echo open; read x; exit 0`, "sh", path)
		in, err := holder.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { in.Close(); holder.Wait() }()
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "open\n" {
			t.Fatalf("the holder did not open the LV: %q %v", line, err)
		}
		hidden := s
		hidden.t, hidden.wrap = t, []string{"unshare", "-p", "-f", "--mount-proc"}
		refused(t, hidden, "device-mapper counts 1 open")
		in.Close()
		if err := holder.Wait(); err != nil {
			t.Fatalf("the holder: %v", err)
		}
		lv := strings.TrimPrefix(path, "/dev/"+conformanceVG+"/")
		if l, err := (&lvm.Client{}).LV(context.Background(), conformanceVG, lv); err != nil || l.DeviceOpen {
			t.Fatalf("the LV after its holder let go: %+v %v", l, err)
		}
	})

	t.Run("ByALoopDevice", func(t *testing.T) {
		// busybox's losetup: -f names a free device, then attach.
		raw, err := exec.Command("losetup", "-f").CombinedOutput()
		if err != nil {
			t.Fatalf("losetup -f: %v %s", err, raw)
		}
		loop := strings.TrimSpace(string(raw))
		if out, err := exec.Command("losetup", loop, path).CombinedOutput(); err != nil {
			t.Fatalf("losetup %s %s: %v %s", loop, path, err, out)
		}
		defer exec.Command("losetup", "-d", loop).Run()
		s.t = t
		refused(t, s, "loop device "+loop)
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Fatalf("losetup -d: %v %s", err, out)
		}
	})

	t.Run("MountedAndReleased", func(t *testing.T) {
		if out, err := exec.Command("mke2fs", "-q", path).CombinedOutput(); err != nil {
			t.Fatalf("mke2fs: %v %s", err, out)
		}
		if err := syscall.Mount(path, "/mnt", "ext2", 0, ""); err != nil {
			t.Fatalf("mount: %v", err)
		}
		mounted := true
		defer func() {
			if mounted {
				syscall.Unmount("/mnt", 0)
			}
		}()
		s.t = t
		refusedAt := func(holder string) {
			for _, args := range [][]string{{"volume", "delete", "held"}, {"snapshot", "rollback", "--volume", "held", "a"}} {
				_, errOut, code := s.run(nil, args...)
				if code != 5 || !strings.Contains(errOut, `volume "held"`) || !strings.Contains(errOut, holder) {
					t.Fatalf("strata %s while the LV is mounted: exit %d:\n%s", strings.Join(args, " "), code, errOut)
				}
			}
		}
		refusedAt("claimed")
		if err := syscall.Unmount("/mnt", 0); err != nil {
			t.Fatal(err)
		}
		mounted = false
		// Released: the rollback (which holds the LV open itself while
		// it works) and then the delete go through.
		s.ok("snapshot", "rollback", "--volume", "held", "a")
		if got := readDev(t, path, 0, mib); !bytes.Equal(got, fill('A', mib)) {
			t.Fatal("the rollback after the release did not restore the point")
		}
		var points []struct {
			ID int `json:"id"`
		}
		if err := json.Unmarshal([]byte(s.ok("-o", "json", "snapshot", "list", "--volume", "held")), &points); err != nil {
			t.Fatal(err)
		}
		for _, p := range points {
			s.ok("snapshot", "delete", "--volume", "held", strconv.Itoa(p.ID))
		}
		s.ok("volume", "delete", "held")
		if _, err := (&lvm.Client{}).LV(context.Background(), conformanceVG, strings.TrimPrefix(path, "/dev/"+conformanceVG+"/")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the LV of the deleted volume: %v", err)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
