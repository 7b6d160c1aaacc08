package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// domState is libvirt's own word for the domain's state (virsh domstate),
// asked without strata: a strata command on the guest would recover the
// interrupted point itself.
func domState(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("virsh", "-c", "qemu:///system", "domstate", name).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh domstate %s: %v: %s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitDomRunning waits until libvirt runs the domain again, and returns
// how long that took.
func waitDomRunning(t *testing.T, name string, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		s := domState(t, name)
		if s == "running" {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("the domain is %q %s after strata died mid-point (want running again within %s)", s, time.Since(start).Round(time.Millisecond), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGuardsGone waits until no point guard of home runs: the guard of
// a point whose strata died has finished or undone it then.
func waitGuardsGone(t *testing.T, home string, bound time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(bound); ; time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("pgrep", "-f", "--", "--home "+home+" .*snapshot __guard").Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		if time.Now().After(deadline) {
			guardLogs(t, home)
			t.Fatalf("point guards still run %s after their point: pids %s", bound, out)
		}
	}
}

// guardLogs logs what the point guards of home said.
func guardLogs(t *testing.T, home string) {
	logs, _ := filepath.Glob(filepath.Join(home, "run", "*", "guard.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		t.Logf("%s:\n%s", l, b)
	}
}

// A strata killed (SIGKILL) while a live point through libvirt keeps the
// guest paused: the point's guard sees it die and resumes the domain at
// once, without anyone running strata again, then undoes the half point
// (its internal snapshots go, no record, doctor clean without --repair);
// the guest counts on. Killed before the pause (the point recorded), the
// point is undone too and the guest never stops. The guard of a point that
// finishes leaves with it.
func TestKilledLivePointThroughLibvirtResumesTheGuest(t *testing.T) {
	home, name := libvirtCounterGuest(t, "qcow2", 30)
	for _, step := range []string{"create:live-paused", "create:recorded"} {
		before := lastCount(t, home, name)
		r := runIn(t, home, []string{"STRATA_CRASH_AT=" + step}, "snapshot", "create", name, "--name", "torn")
		if r.code == 0 {
			t.Fatalf("%s: the killed point exited 0", step)
		}
		took := waitDomRunning(t, name, 5*time.Second)
		t.Logf("%s: the domain runs again %s after strata died", step, took.Round(time.Millisecond))
		waitGuardsGone(t, home, 30*time.Second)
		// The guard's log, cumulative: it resumed the guest once, for the
		// point killed during the pause (none was paused before it).
		b, _ := os.ReadFile(filepath.Join(home, "run", guestID(t, home, name), "guard.log"))
		if resumed := strings.Count(string(b), "resumed the guest"); resumed != map[string]int{"create:live-paused": 1, "create:recorded": 1}[step] {
			t.Fatalf("%s: the guard said %d times that it resumed the guest:\n%s", step, resumed, b)
		}
		if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
			t.Fatalf("%s: doctor (no --repair) after the guard's recovery: exit %d, %+v", step, code, fs)
		}
		if out := ok(t, home, "--output", "json", "snapshot", "list", name); strings.TrimSpace(out) != "[]" {
			t.Fatalf("%s: points after the guard's recovery: %s", step, out)
		}
		for _, d := range []string{name + "-a", name + "-b"} {
			if snaps := internalSnapshots(t, volumePath(t, home, d)); len(snaps) != 0 {
				guardLogs(t, home)
				t.Fatalf("%s: internal snapshots of %s left by the killed point: %v", step, d, snaps)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(home, "run", guestID(t, home, name), "hold.json")); len(b) != 0 {
			t.Fatalf("%s: the pause hold is left: %s", step, b)
		}
		countAbove(t, home, name, before)
		if s := statusOf(t, home, name); s.State != "running" {
			t.Fatalf("%s: the guest after the guard's recovery: %+v", step, s)
		}
	}
	// A point that finishes: its guard exits with it (no guard left
	// behind for the next one to meet).
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", name, "--name", "whole")
	if !p.Live || p.PauseMS == nil {
		t.Fatalf("a live point through libvirt after the guard's recovery: %+v", p)
	}
	waitGuardsGone(t, home, 5*time.Second)
}

// A strata killed while a live point through libvirt keeps the guest
// paused, at a moment another process holds the catalog (a long import,
// an etcd that does not answer): the guard resumes the domain at once all
// the same, from what it read of the guest when it started (it waited
// for the catalog before), and undoes the point once the catalog is free.
func TestKilledLivePointResumesTheGuestWhileTheCatalogIsHeld(t *testing.T) {
	home, name := libvirtCounterGuest(t, "qcow2", 33)
	before := lastCount(t, home, name)
	cmd := exec.Command(strataBinary(t), "--home", home, "snapshot", "create", name, "--name", "torn")
	cmd.Env = append(os.Environ(), "STRATA_STOP_AT=create:live-paused")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, cmd.Process.Pid, 60*time.Second)
	// libvirt learns of the pause from QEMU's event: a moment later.
	for deadline := time.Now().Add(5 * time.Second); domState(t, name) != "paused"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			guardLogs(t, home)
			why, _ := exec.Command("virsh", "-c", "qemu:///system", "domstate", "--reason", name).CombinedOutput()
			t.Logf("libvirt's reason: %s", why)
			t.Fatalf("the domain is %q 5 s after the point's strata stopped mid-pause", domState(t, name))
		}
	}
	// What a bbolt writer holds for its transaction: readers wait for it.
	db, err := os.OpenFile(filepath.Join(home, "catalog.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := syscall.Flock(int(db.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	took := waitDomRunning(t, name, 5*time.Second)
	t.Logf("the domain runs again %s after strata died, the catalog held", took.Round(time.Millisecond))
	syscall.Flock(int(db.Fd()), syscall.LOCK_UN)
	waitGuardsGone(t, home, 60*time.Second)
	if out := ok(t, home, "--output", "json", "snapshot", "list", name); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after the guard's recovery: %s", out)
	}
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor (no --repair) after the guard's recovery: exit %d, %+v", code, fs)
	}
	countAbove(t, home, name, before)
}

// waitStopped waits until process pid is stopped (STRATA_STOP_AT).
func waitStopped(t *testing.T, pid int, bound time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(bound); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatalf("strata ended before its stop: %v", err)
		}
		// The state follows the command's name in parentheses.
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "T" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("strata did not reach its stop within %s", bound)
		}
	}
}

// A strata killed once libvirt has saved the guest's memory (the domain is
// off, its RAM in the point's state file): the point's guard finishes the
// point (its disks taken now, the guest not having run since) and libvirt
// starts the guest from its memory, without anyone running strata again;
// the guest counts on without a boot, the point is ready with its memory.
func TestKilledMemoryPointThroughLibvirtIsFinishedByItsGuard(t *testing.T) {
	home, name := libvirtCounterGuest(t, "qcow2", 35)
	countAbove(t, home, name, 0)
	before := lastCount(t, home, name)
	if r := runIn(t, home, []string{"STRATA_CRASH_AT=create:memory-saved"}, "snapshot", "create", name, "--memory", "--max-pause", "60s"); r.code == 0 {
		t.Fatal("the killed memory point exited 0")
	}
	took := waitDomRunning(t, name, 60*time.Second)
	t.Logf("the domain runs again from its memory %s after strata died", took.Round(time.Millisecond))
	waitGuardsGone(t, home, 30*time.Second)
	var pts []memoryPoint
	jsonOf(t, home, &pts, "snapshot", "list", name)
	if len(pts) != 1 || pts[0].Consistency != "memory" || pts[0].Memory == nil || pts[0].Memory.Bytes <= 0 {
		guardLogs(t, home)
		t.Fatalf("points after the guard finished the killed memory point: %+v", pts)
	}
	countAbove(t, home, name, before)
	for _, l := range counterLines(t, home, name) {
		if l.Boot {
			t.Fatalf("the guest booted (COUNTER A=%d B=%d): it should have continued from its memory", l.A, l.B)
		}
	}
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor (no --repair) after the guard finished the point: exit %d, %+v", code, fs)
	}
}
