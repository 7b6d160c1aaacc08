package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// qemuThatKillsStrata returns a PATH whose qemu-system-x86_64 starts the
// real QEMU (paused, as strata asks) and kills the strata that ran it
// with SIGKILL: a `guest start` killed after it launched QEMU but before
// it recorded state.json.
func qemuThatKillsStrata(t *testing.T) string {
	t.Helper()
	real, err := lookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	dir := t.TempDir()
	script := "#!/bin/sh\n" + real + " \"$@\" &\nkill -9 $PPID\nwait\n"
	if err := os.WriteFile(filepath.Join(dir, "qemu-system-x86_64"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return "PATH=" + dir + ":" + os.Getenv("PATH")
}

func lookPath(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// A `guest start` killed (kill -9) between QEMU's start and state.json
// leaves a paused QEMU holding the guest's disks. strata finds its own
// orphan and ends it (it never ran the guest: it was started paused and
// never continued): the next disk operation, status and start work, and
// no QEMU is left holding the image.
func TestKilledStartLeavesNoOrphanQEMU(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "or", "STRATA-OR", boottest.PowerButton)
	r := runIn(t, home, []string{qemuThatKillsStrata(t)}, "guest", "start", "or", "--driver", "qemu")
	if r.code == 0 {
		t.Fatalf("the killed start exited 0: %s", r.stderr)
	}
	orphan := orphanPID(t, home, "or")
	if _, err := os.Stat("/proc/" + orphan); err != nil {
		t.Fatalf("the orphan QEMU %s is not running: %v", orphan, err)
	}

	// The next disk operation is not refused for ever by the orphan.
	ok(t, home, "snapshot", "create", "or", "--name", "after-crash")
	if s := statusOf(t, home, "or"); s.State != "stopped" {
		t.Fatalf("status after a killed start: %+v", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + orphan); err != nil {
			break
		}
		if st, _ := os.ReadFile("/proc/" + orphan + "/stat"); strings.Contains(string(st), ") Z ") {
			break // ended, not reaped by its parent
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan QEMU %s still runs", orphan)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok(t, home, "guest", "start", "or", "--wait-serial", "STRATA-OR")
	ok(t, home, "guest", "stop", "or", "--timeout", "30s")
}

// A start right after a killed one is not held up by the killed start's
// watcher (which waits for its guest's state.json and would take the next
// start's events socket: QEMU serves one client there, and the start then
// waited 10 s for its own watcher and failed).
func TestStartRightAfterAKilledStartIsNotHeldUp(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "ag", "STRATA-AG", boottest.PowerButton)
	env := qemuThatKillsStrata(t)
	for i := 0; i < 4; i++ {
		if r := runIn(t, home, []string{env}, "guest", "start", "ag", "--driver", "qemu"); r.code == 0 {
			t.Fatalf("the killed start exited 0: %s", r.stderr)
		}
		if i%2 == 0 {
			// The next start at once: the orphan may hold its pidfile
			// without its pid in it yet.
			orphanPID(t, home, "ag")
		}
		start := time.Now()
		ok(t, home, "guest", "start", "ag")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("start after a killed start took %s", d)
		}
		ok(t, home, "guest", "kill", "ag")
	}
}

// orphanPID waits for the QEMU a killed start left to write its pidfile
// (the start was killed as it launched QEMU) and returns its pid.
func orphanPID(t *testing.T, home, guest string) string {
	t.Helper()
	pidFile := filepath.Join(home, "run", guestID(t, home, guest), "qemu.pid")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(pidFile)
		if pid := strings.TrimSpace(string(b)); err == nil && pid != "" {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed start left no QEMU behind (the test needs one): %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// qemuOf lists the QEMU processes whose command line names home.
func qemuOf(t *testing.T, home string) []string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "qemu-system") || !strings.Contains(string(b), home+"/") {
			continue
		}
		if st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); strings.Contains(string(st), ") Z ") {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// `rollback --memory` killed (kill -9) while its QEMU loads the saved
// memory, or after it recorded state.json but before it let the guest
// run, leaves a QEMU that never ran the guest (inmigrate, or paused with
// the memory loaded) holding its disks. Its state record is not complete
// (it still says starting): the next command ends it as an orphan of a
// killed start, status says stopped, no QEMU is left, and the rollback
// run again resumes the guest.
func TestRollbackMemoryKilledWhileQEMUResumesLeavesTheGuestStopped(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "rk", "STRATA-RK", boottest.Halt)
	ok(t, home, "guest", "start", "rk", "--wait-serial", "STRATA-RK")
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", "rk") })
	ok(t, home, "snapshot", "create", "rk", "--name", "mem", "--memory", "--max-pause", "30s")
	ok(t, home, "guest", "kill", "rk")
	for _, step := range []string{"start:launched", "start:recorded"} {
		r := runIn(t, home, []string{"STRATA_CRASH_AT=" + step}, "snapshot", "rollback", "rk", "mem", "--memory")
		if r.code == 0 {
			t.Fatalf("%s: the killed rollback exited 0: %s", step, r.stderr)
		}
		if len(qemuOf(t, home)) == 0 {
			t.Fatalf("%s: the killed rollback left no QEMU (the test needs one)", step)
		}
		if s := statusOf(t, home, "rk"); s.State != "stopped" {
			t.Fatalf("%s: status after a rollback --memory killed before the guest ran: %+v", step, s)
		}
		for deadline := time.Now().Add(5 * time.Second); len(qemuOf(t, home)) > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: QEMU %v still runs after status said stopped", step, qemuOf(t, home))
			}
		}
	}
	ok(t, home, "snapshot", "rollback", "rk", "mem", "--memory")
	if s := statusOf(t, home, "rk"); s.State != "running" {
		t.Fatalf("status after the rollback: %+v", s)
	}
}
