package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// The counter guest (hvm/boot/boottest) writes n to disk A, then to disk
// B, for ever, and prints COUNT lines (a value both disks hold) and, at
// boot, the values it finds. A pair of disks captured at one instant has
// A == B or A == B+1; anything else is a torn point.

// counterGuest defines guest name on two volumes of pool (format raw or
// qcow2) laid out as the counter guest, and starts it.
func counterGuest(t *testing.T, home, name, pool, format string) {
	t.Helper()
	counterGuestWith(t, home, name, pool, format, "driver=qemu")
}

// counterGuestWith is counterGuest with the definition's settings given
// (guest set KEY=VALUE), the driver among them.
func counterGuestWith(t *testing.T, home, name, pool, format string, settings ...string) {
	t.Helper()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	paths := map[string]string{}
	for _, d := range []string{"a", "b"} {
		args := []string{"volume", "create", name + "-" + d, "--size", "1M", "--format", format}
		if pool != "" {
			args = append(args, "--pool", pool)
		}
		ok(t, home, args...)
		var v struct{ Path string }
		jsonOf(t, home, &v, "volume", "info", name+"-"+d)
		paths[d] = v.Path
	}
	if format == "raw" {
		if err := boottest.WriteCounterDisks(paths["a"], paths["b"]); err != nil {
			t.Fatal(err)
		}
	} else {
		dir := t.TempDir()
		ra, rb := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
		if err := boottest.WriteCounterDisks(ra, rb); err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{ra: paths["a"], rb: paths["b"]} {
			if out, err := exec.Command("qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", src, dst).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img convert: %v: %s", err, out)
			}
		}
	}
	ok(t, home, "guest", "define", name, "--disk", name+"-a", "--disk", name+"-b", "--memory", "16", "--boot", "c", "--os", "other")
	ok(t, home, append([]string{"guest", "set", name}, settings...)...)
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", name) })
	ok(t, home, "guest", "start", name, "--wait-serial", "^COUNT ")
}

// counterLines reads the counter guest's serial log of this run.
func counterLines(t *testing.T, home, name string) []boottest.CounterLine {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(home, "run", guestID(t, home, name), "serial.log"))
	lines, err := boottest.ParseCounterLog(b)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func lastCount(t *testing.T, home, name string) uint64 {
	t.Helper()
	lines := counterLines(t, home, name)
	for i := len(lines) - 1; i >= 0; i-- {
		if !lines[i].Boot {
			return lines[i].Count
		}
	}
	return 0
}

// countAbove waits for a COUNT line above v and returns it (a TCG guest on
// a loaded machine counts slowly: up to a minute, returning at once).
func countAbove(t *testing.T, home, name string, v uint64) uint64 {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c := lastCount(t, home, name); c > v {
			return c
		}
	}
	t.Fatalf("guest %s printed no COUNT above %d within a minute", name, v)
	return 0
}

// window is what the guest counted around one point: its disks held a
// value in [lo, hi] when the point was taken.
type window struct {
	id     int
	lo, hi uint64
}

// takeCounterPoints takes n live points of the counting guest and
// returns each point's window and its pause.
func takeCounterPoints(t *testing.T, home, name string, n int) ([]window, []float64) {
	t.Helper()
	var ws []window
	var pauses []float64
	for i := 0; i < n; i++ {
		lo := lastCount(t, home, name)
		var p livePoint
		jsonOf(t, home, &p, "snapshot", "create", name)
		if !p.Live || p.PauseMS == nil || p.Consistency != "crash" {
			t.Fatalf("point %d: %+v", i+1, p)
		}
		hi := countAbove(t, home, name, lastCount(t, home, name))
		ws = append(ws, window{p.ID, lo, hi})
		pauses = append(pauses, *p.PauseMS)
	}
	return ws, pauses
}

// checkRollbacks rolls the stopped guest back to each point, boots it and
// checks what it finds on its disks: one instant, inside the window.
func checkRollbacks(t *testing.T, home, name string, ws []window) {
	t.Helper()
	ok(t, home, "guest", "kill", name)
	for _, w := range ws {
		ok(t, home, "snapshot", "rollback", name, fmt.Sprint(w.id))
		ok(t, home, "guest", "start", name, "--wait-serial", "^COUNTER A=")
		var boot *boottest.CounterLine
		// (--wait-serial may see the line before its end.)
		for deadline := time.Now().Add(5 * time.Second); boot == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			for _, l := range counterLines(t, home, name) {
				if l.Boot {
					boot = &l
					break
				}
			}
		}
		ok(t, home, "guest", "kill", name)
		if boot == nil {
			t.Fatalf("point %d: the guest printed no COUNTER line", w.id)
		}
		if !boottest.CounterConsistent(boot.A, boot.B) {
			t.Errorf("point %d is torn: disk A holds %d, disk B %d", w.id, boot.A, boot.B)
		}
		if boot.B < w.lo || boot.A > w.hi {
			t.Errorf("point %d holds A=%d B=%d, outside what the guest counted around it [%d, %d]", w.id, boot.A, boot.B, w.lo, w.hi)
		}
	}
}

func logPauses(t *testing.T, what string, ms []float64) {
	t.Helper()
	s := slices.Clone(ms)
	slices.Sort(s)
	t.Logf("%s: %d live points, pause median %.1f ms, max %.1f ms", what, len(s), s[len(s)/2], s[len(s)-1])
}

// Twenty live points of a guest counting on two qcow2 disks (one QMP
// transaction of internal snapshots): rolled back to each, the guest finds
// both disks from one instant, inside the window of that point.
func TestLivePointsOfACountingGuestAreOfOneInstantQcow2(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "cq", "", "qcow2")
	ws, pauses := takeCounterPoints(t, home, "cq", 20)
	logPauses(t, "qcow2-internal, 2 disks", pauses)
	checkRollbacks(t, home, "cq", ws)
}

// The same on raw disks in a pool on XFS (reflink=1): each point clones
// both images (FICLONE) while the guest is paused.
func TestLivePointsOfACountingGuestAreOfOneInstantReflink(t *testing.T) {
	home := shortHome(t)
	mnt := storagetest.LoopFS(t, "xfs", 512<<20)
	ok(t, home, "pool", "add", "xfs", "--path", filepath.Join(mnt, "pool"))
	counterGuest(t, home, "cr", "xfs", "raw")
	ws, pauses := takeCounterPoints(t, home, "cr", 20)
	logPauses(t, "reflink, 2 disks", pauses)
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "show", "cr", "1")
	if p.Method != "reflink" {
		t.Fatalf("points on XFS: method %q, want reflink", p.Method)
	}
	checkRollbacks(t, home, "cr", ws)
}

// Full-copy live points of raw disks on a filesystem without reflink are
// point-in-time copies QEMU makes while the guest counts on: each point's
// two files hold one instant.
func TestLiveFullCopyPointsAreOfOneInstant(t *testing.T) {
	home := shortHome(t)
	mnt := storagetest.LoopFS(t, "ext4", 128<<20)
	ok(t, home, "pool", "add", "ext4", "--path", filepath.Join(mnt, "pool"))
	counterGuest(t, home, "cc", "ext4", "raw")
	ws, pauses := takeCounterPoints(t, home, "cc", 3)
	logPauses(t, "copy, 2 disks", pauses)
	for _, w := range ws {
		var p livePoint
		jsonOf(t, home, &p, "snapshot", "show", "cc", fmt.Sprint(w.id))
		if p.Method != "copy" || len(p.Disks) != 2 {
			t.Fatalf("point %d: %+v", w.id, p)
		}
		a, okA, errA := boottest.ReadCounterFile(p.Disks[0].Ref)
		b, okB, errB := boottest.ReadCounterFile(p.Disks[1].Ref)
		if !okA || !okB || errA != nil || errB != nil || a.Disk != 'A' || b.Disk != 'B' {
			t.Fatalf("point %d's copies: %+v %v %v, %+v %v %v", w.id, a, okA, errA, b, okB, errB)
		}
		if !boottest.CounterConsistent(a.Value, b.Value) || b.Value < w.lo || a.Value > w.hi {
			t.Errorf("point %d's copies hold A=%d B=%d (window [%d, %d])", w.id, a.Value, b.Value, w.lo, w.hi)
		}
	}
}
