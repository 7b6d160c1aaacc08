package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// libvirtCounterGuest starts the counter guest on two volumes through a
// real libvirtd (QEMU as libvirt-qemu), in a state home libvirt's QEMU
// can pass through; it returns the guest's (and domain's) name.
func libvirtCounterGuest(t *testing.T, format string, display int) (home, name string) {
	t.Helper()
	home, name = libvirtHome(t)
	counterGuestWith(t, home, name, "", format, "driver=libvirt", "vncunused=0", fmt.Sprintf("vncdisplay=%d", 40+(os.Getpid()+display)%50))
	if s := statusOf(t, home, name); s.Driver != "libvirt" || s.State != "running" {
		t.Fatalf("the counter guest through libvirt: %+v", s)
	}
	return home, name
}

// A memory point of a guest run by libvirt (libvirt's save, the disks,
// libvirt's restore): the guest counts on after the point without a
// boot; rollback --memory --restart stops it, rolls both disks back and
// resumes it from the point through libvirt: it counts on from the saved
// value, without a boot, and its two disks agree. The state file is
// root's alone (0600), though libvirt's QEMU wrote it.
func TestMemoryPointThroughLibvirtResumesTheGuestWithoutBoot(t *testing.T) {
	home, name := libvirtCounterGuest(t, "raw", 10)
	p, w := takeMemoryPointVia(t, home, name, "libvirt")
	if st, err := os.Lstat(p.Memory.Path); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("the state file libvirt wrote: %v %v", st, err)
	}
	// The guest continued from its RAM after the point: no boot.
	for _, l := range counterLines(t, home, name) {
		if l.Boot {
			t.Fatalf("the guest booted after a memory point through libvirt (COUNTER A=%d B=%d)", l.A, l.B)
		}
	}
	// Where the pause goes (for the README): libvirt's save, the disks,
	// libvirt's restore.
	r := runIn(t, home, nil, "--log-level", "debug", "--output", "json", "snapshot", "create", name, "--memory", "--max-pause", "30s", "--name", "timed")
	if r.code != 0 {
		t.Fatalf("a second memory point through libvirt: %s", r.stderr)
	}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "memory point through the driver's save") {
			t.Log(l)
		}
	}
	ok(t, home, "snapshot", "delete", name, "timed")
	later := countAbove(t, home, name, w.hi+3000)
	ok(t, home, "snapshot", "rollback", name, fmt.Sprint(p.ID), "--memory", "--restart", "--timeout", "1s")
	if s := statusOf(t, home, name); s.State != "running" || s.Driver != "libvirt" {
		t.Fatalf("after rollback --memory through libvirt: %+v", s)
	}
	first := checkResumed(t, home, name, w)
	if first >= later {
		t.Fatalf("the resumed guest counts from %d, not below %d it had reached before the rollback", first, later)
	}
	ok(t, home, "guest", "kill", name)
	var recs []uint64
	for _, d := range []string{name + "-a", name + "-b"} {
		r, found, err := boottest.ReadCounterFile(volumePath(t, home, d))
		if err != nil || !found {
			t.Fatalf("%s: no counter record: %v", d, err)
		}
		recs = append(recs, r.Value)
	}
	if !boottest.CounterConsistent(recs[0], recs[1]) || recs[1] < first {
		t.Fatalf("after the resumed guest counted on: disk A %d, disk B %d (it resumed at %d)", recs[0], recs[1], first)
	}
	// Stopped, it is started from the point's memory again (no --restart).
	ok(t, home, "snapshot", "rollback", name, fmt.Sprint(p.ID), "--memory")
	checkResumed(t, home, name, w)
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor after memory points through libvirt: exit %d, %+v", code, fs)
	}
	ok(t, home, "guest", "kill", name)
	ok(t, home, "snapshot", "delete", name, fmt.Sprint(p.ID))
	if _, err := os.Stat(p.Memory.Path); !os.IsNotExist(err) {
		t.Fatalf("the state file after delete: %v", err)
	}
	if !strings.HasSuffix(p.Memory.Path, ".state") {
		t.Fatalf("state file %s", p.Memory.Path)
	}
}

// A strata killed at each step of a memory point through libvirt leaves
// what the next snapshot command on the guest finishes or undoes, the
// guest never lost: killed once libvirt has saved it (stopped, its RAM in
// the state file) or while the disks are taken, the point is finished
// (its disks taken now, the guest not having run since) and the guest
// continues from its memory; killed after the restore, the point is
// undone through the monitor. The guest counts on without a boot every
// time. A --max-pause libvirt's save cannot keep aborts the save: the
// guest runs on, nothing is recorded.
func TestKilledMemoryPointThroughLibvirtIsFinishedOrUndone(t *testing.T) {
	home, name := libvirtCounterGuest(t, "qcow2", 20)
	fails(t, home, 7, []string{"longer pause", "--max-pause"}, "snapshot", "create", name, "--memory", "--max-pause", "1ms")
	if s := statusOf(t, home, name); s.State != "running" {
		t.Fatalf("the guest after a memory point over --max-pause: %+v", s)
	}
	if out := ok(t, home, "--output", "json", "snapshot", "list", name); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a memory point over --max-pause: %s", out)
	}
	for _, c := range []struct {
		step string
		kept bool // the point is finished, not undone
	}{
		{"create:memory-saved", true},
		{"create:disk-2", true},
		{"create:memory-restored", false},
	} {
		before := lastCount(t, home, name)
		r := runIn(t, home, []string{"STRATA_CRASH_AT=" + c.step}, "snapshot", "create", name, "--memory", "--max-pause", "60s")
		if r.code == 0 {
			t.Fatalf("%s: the killed point exited 0", c.step)
		}
		// doctor --repair recovers (as the next snapshot command on
		// the guest would); so does guest start, which finds the guest
		// running from its memory afterwards.
		var pts []memoryPoint
		if c.step == "create:memory-saved" {
			fails(t, home, 7, []string{"already running"}, "guest", "start", name)
		} else {
			ok(t, home, "doctor", "--repair")
		}
		jsonOf(t, home, &pts, "snapshot", "list", name)
		if s := statusOf(t, home, name); s.State != "running" || s.Driver != "libvirt" {
			t.Fatalf("%s: the guest after recovery: %+v", c.step, s)
		}
		countAbove(t, home, name, before)
		for _, l := range counterLines(t, home, name) {
			if l.Boot {
				t.Fatalf("%s: the guest booted (COUNTER A=%d B=%d): it should have continued from its memory", c.step, l.A, l.B)
			}
		}
		switch {
		case c.kept && (len(pts) != 1 || pts[0].Consistency != "memory" || pts[0].Memory == nil || pts[0].Memory.Bytes <= 0):
			t.Fatalf("%s: points after recovery: %+v (want the finished memory point)", c.step, pts)
		case !c.kept && len(pts) != 0:
			t.Fatalf("%s: points after recovery: %+v (want none)", c.step, pts)
		}
		for _, p := range pts {
			for _, d := range p.Disks {
				if snaps := internalSnapshots(t, volumePath(t, home, d.Volume)); len(snaps) != 1 {
					t.Fatalf("%s: internal snapshots of %s: %v", c.step, d.Volume, snaps)
				}
			}
			ok(t, home, "snapshot", "delete", name, fmt.Sprint(p.ID))
		}
		if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
			t.Fatalf("%s: doctor after recovery: exit %d, %+v", c.step, code, fs)
		}
	}
	// Killed after the restore, and the guest then stopped by its admin:
	// it ran from its memory, its disks moved on, so the point is undone,
	// never finished with disks of another instant than its RAM.
	if r := runIn(t, home, []string{"STRATA_CRASH_AT=create:memory-restored"}, "snapshot", "create", name, "--memory", "--max-pause", "60s"); r.code == 0 {
		t.Fatal("the killed point exited 0")
	}
	ok(t, home, "guest", "kill", name)
	ok(t, home, "doctor", "--repair")
	if out := ok(t, home, "--output", "json", "snapshot", "list", name); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a point killed after the restore of a guest stopped since: %s", out)
	}
	if s := statusOf(t, home, name); s.State != "stopped" {
		t.Fatalf("the guest its admin stopped after the killed point: %+v", s)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(volumePath(t, home, name+"-a")), ".strata-points", "*")); len(left) != 0 {
		t.Fatalf("point files left: %v", left)
	}
}
