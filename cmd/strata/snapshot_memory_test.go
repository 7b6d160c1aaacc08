package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage/storagetest"
)

// memoryPoint is what the tests read of a memory point's JSON.
type memoryPoint struct {
	livePoint
	Memory *struct {
		Path   string
		Bytes  int64
		Driver string
	}
}

// takeMemoryPoint takes a --memory point of the counting guest and
// returns it with the window of values the guest's RAM can hold.
func takeMemoryPoint(t *testing.T, home, name string) (memoryPoint, window) {
	t.Helper()
	return takeMemoryPointVia(t, home, name, "qemu")
}

// takeMemoryPointVia is takeMemoryPoint of a guest the driver runs.
func takeMemoryPointVia(t *testing.T, home, name, driver string) (memoryPoint, window) {
	t.Helper()
	lo := countAbove(t, home, name, 0)
	var p memoryPoint
	jsonOf(t, home, &p, "snapshot", "create", name, "--memory", "--max-pause", "30s")
	hi := countAbove(t, home, name, lastCount(t, home, name))
	if !p.Live || p.Consistency != "memory" || p.PauseMS == nil || p.Memory == nil || p.Memory.Bytes <= 0 || p.Memory.Driver != driver {
		t.Fatalf("memory point: %+v memory %+v", p, p.Memory)
	}
	st, err := os.Stat(p.Memory.Path)
	if err != nil || st.Size() != p.Memory.Bytes || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file %s: %v %v", p.Memory.Path, st, err)
	}
	t.Logf("memory point of a 16 MiB guest (%s): paused %.1f ms, state %d bytes", driver, *p.PauseMS, p.Memory.Bytes)
	return p, window{p.ID, lo, hi}
}

// checkResumed waits for the resumed guest's COUNT lines and checks that
// it continued from the point's RAM: no boot line (COUNTER A=), and its
// first count just above what it had counted when the point was taken.
func checkResumed(t *testing.T, home, name string, w window) uint64 {
	t.Helper()
	var lines []boottest.CounterLine
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if lines = counterLines(t, home, name); len(lines) >= 3 {
			break
		}
	}
	if len(lines) < 3 {
		t.Fatalf("the resumed guest printed %d counter lines", len(lines))
	}
	for _, l := range lines {
		if l.Boot {
			t.Fatalf("the guest booted after rollback --memory (COUNTER A=%d B=%d): it should have resumed", l.A, l.B)
		}
	}
	// A COUNT line is printed about every 100 increments: the first
	// after resuming is within a few lines of the saved value.
	first := lines[0].Count
	if first < w.lo || first > w.hi+1000 {
		t.Fatalf("the resumed guest counts on from %d; the point was taken while it counted in [%d, %d]", first, w.lo, w.hi)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Count <= lines[i-1].Count {
			t.Fatalf("COUNT lines after resume go backwards: %d then %d", lines[i-1].Count, lines[i].Count)
		}
	}
	return first
}

// A memory point of a guest counting on two raw disks (full-copy points,
// QEMU's copy and the RAM in one pause): the guest counts on, then
// `rollback --memory --restart` stops it, rolls both disks back and
// resumes it from the point's RAM: it counts on from the saved value,
// without a boot, and its two disks agree with each other and with it.
func TestMemoryPointRollbackResumesARunningGuestWithoutBoot(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "mm", "", "raw")
	p, w := takeMemoryPoint(t, home, "mm")
	later := countAbove(t, home, "mm", w.hi+3000)
	fails(t, home, 5, []string{"--restart"}, "snapshot", "rollback", "mm", fmt.Sprint(p.ID), "--memory")
	ok(t, home, "snapshot", "rollback", "mm", fmt.Sprint(p.ID), "--memory", "--restart", "--timeout", "1s")
	if s := statusOf(t, home, "mm"); s.State != "running" {
		t.Fatalf("after rollback --memory: %+v", s)
	}
	first := checkResumed(t, home, "mm", w)
	if first >= later {
		t.Fatalf("the resumed guest counts from %d, not below %d it had reached before the rollback", first, later)
	}
	ok(t, home, "guest", "kill", "mm")
	var recs []uint64
	for _, d := range []string{"mm-a", "mm-b"} {
		var v struct{ Path string }
		jsonOf(t, home, &v, "volume", "info", d)
		r, found, err := boottest.ReadCounterFile(v.Path)
		if err != nil || !found {
			t.Fatalf("%s: no counter record: %v", d, err)
		}
		recs = append(recs, r.Value)
	}
	if !boottest.CounterConsistent(recs[0], recs[1]) || recs[1] < first {
		t.Fatalf("after the resumed guest counted on: disk A %d, disk B %d (it resumed at %d)", recs[0], recs[1], first)
	}
	// show gives the state's size; delete removes the file.
	out := ok(t, home, "snapshot", "show", "mm", fmt.Sprint(p.ID))
	if !strings.Contains(out, "memory:") || !strings.Contains(out, p.Memory.Path) {
		t.Fatalf("snapshot show of a memory point:\n%s", out)
	}
	ok(t, home, "snapshot", "delete", "mm", fmt.Sprint(p.ID))
	if _, err := os.Stat(p.Memory.Path); !os.IsNotExist(err) {
		t.Fatalf("the state file after delete: %v", err)
	}
}

// The same on qcow2 disks (internal snapshots), the guest stopped before
// the rollback: rollback --memory starts it from the point's RAM.
func TestMemoryPointRollbackResumesAStoppedGuestQcow2(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "mq", "", "qcow2")
	p, w := takeMemoryPoint(t, home, "mq")
	countAbove(t, home, "mq", w.hi+2000)
	ok(t, home, "guest", "kill", "mq")
	ok(t, home, "snapshot", "rollback", "mq", fmt.Sprint(p.ID), "--memory")
	checkResumed(t, home, "mq", w)
	if s := statusOf(t, home, "mq"); s.State != "running" {
		t.Fatalf("after rollback --memory: %+v", s)
	}
	// The state file is the point's: doctor finds nothing to remove.
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor after a memory point: exit %d, %+v", code, fs)
	}
	if _, err := os.Stat(p.Memory.Path); err != nil {
		t.Fatalf("the state file after doctor: %v", err)
	}
}

// The guest's RAM (plus a margin) must fit beside the point: checked
// before the guest is paused, refused with the numbers.
func TestMemoryPointRefusedWithoutSpaceForTheRAM(t *testing.T) {
	home := shortHome(t)
	mnt := storagetest.LoopFS(t, "ext4", 40<<20)
	ok(t, home, "pool", "add", "small", "--path", filepath.Join(mnt, "pool"))
	counterGuest(t, home, "ms", "small", "raw")
	fails(t, home, 7, []string{"not enough space", "its RAM is", "free", "without --memory"}, "snapshot", "create", "ms", "--memory")
	if out := ok(t, home, "--output", "json", "snapshot", "list", "ms"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a refused memory point: %s", out)
	}
	if s := statusOf(t, home, "ms"); s.State != "running" {
		t.Fatalf("the guest after a refused memory point: %+v", s)
	}
}

// --memory needs a running guest to take, and a point with memory to
// resume from: both refused with what to do, nothing recorded.
func TestMemoryPointRefusals(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "mr", "", "raw")
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "mr")
	fails(t, home, 7, []string{"no memory state", "without --memory"}, "snapshot", "rollback", "mr", fmt.Sprint(p.ID), "--memory", "--restart")
	if s := statusOf(t, home, "mr"); s.State != "running" {
		t.Fatalf("the guest after a refused rollback --memory: %+v", s)
	}
	fails(t, home, 7, []string{"longer pause", "--max-pause"}, "snapshot", "create", "mr", "--memory", "--max-pause", "1ms")
	ok(t, home, "guest", "pause", "mr")
	fails(t, home, 7, []string{"is paused", "resume it first"}, "snapshot", "create", "mr", "--memory")
	if s := statusOf(t, home, "mr"); s.State != "paused" {
		t.Fatalf("the paused guest after a refused memory point: %+v", s)
	}
	ok(t, home, "guest", "kill", "mr")
	fails(t, home, 7, []string{"not running", "nothing in memory"}, "snapshot", "create", "mr", "--memory")
	var all []livePoint
	jsonOf(t, home, &all, "snapshot", "list", "mr")
	if len(all) != 1 {
		t.Fatalf("points after refusals: %+v", all)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(volumePath(t, home, "mr-a")), ".strata-points", "*.state")); len(left) != 0 {
		t.Fatalf("state files left: %v", left)
	}
}

// A strata killed while QEMU writes the guest's memory: the next command
// on the guest cancels the migration, removes the state file and lets the
// guest run again; the point is gone.
func TestKilledMemoryPointIsUndoneAndTheGuestRuns(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "mk", "", "raw")
	for _, step := range []string{"create:live-paused", "create:memory-saving"} {
		r := runIn(t, home, []string{"STRATA_CRASH_AT=" + step}, "snapshot", "create", "mk", "--memory", "--max-pause", "30s")
		if r.code == 0 {
			t.Fatalf("%s: the killed point exited 0: %s", step, r.stderr)
		}
		// Paused by the dead point until the guest's watcher resumes it
		// (within moments: the pause hold's holder is gone).
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			s := statusOf(t, home, "mk")
			if s.State == "running" {
				break
			}
			if s.State != "paused" || time.Now().After(deadline) {
				t.Fatalf("%s: the guest after strata died mid-point: %+v (want paused, then running again)", step, s)
			}
		}
		// The next command on the guest recovers first.
		var next livePoint
		jsonOf(t, home, &next, "snapshot", "create", "mk")
		var all []livePoint
		jsonOf(t, home, &all, "snapshot", "list", "mk")
		if len(all) != 1 || all[0].ID != next.ID {
			t.Fatalf("%s: points after recovery: %+v", step, all)
		}
		ok(t, home, "snapshot", "delete", "mk", fmt.Sprint(next.ID))
		if s := statusOf(t, home, "mk"); s.State != "running" {
			t.Fatalf("%s: the guest after recovery: %+v", step, s)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(volumePath(t, home, "mk-a")), ".strata-points", "*")); len(left) != 0 {
			t.Fatalf("%s: point files left: %v", step, left)
		}
		before := lastCount(t, home, "mk")
		countAbove(t, home, "mk", before)
	}
	// And a memory point taken after the recoveries works.
	takeMemoryPoint(t, home, "mk")
}

func volumePath(t *testing.T, home, name string) string {
	t.Helper()
	var v struct{ Path string }
	jsonOf(t, home, &v, "volume", "info", name)
	return v.Path
}
