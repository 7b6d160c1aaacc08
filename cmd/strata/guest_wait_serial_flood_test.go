package main_test

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// start --wait-serial on a guest flooding its serial port reads only what
// the log gained at each look: its CPU time stays a fraction of the time
// it waits, however much the guest writes (it read the whole log every
// 2 ms: quadratic in the log's size).
func TestWaitSerialOnAFloodingGuestStaysCheap(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "fl", "STRATA-FLOOD ", boottest.Flood)
	cmd := exec.Command(strataBinary(t), "--home", home, "guest", "start", "fl", "--wait-serial", "NEVER-PRINTED", "--wait-timeout", "5s")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	defer ok(t, home, "guest", "kill", "fl")
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 7 || !strings.Contains(string(out), "printed no line matching") {
		t.Fatalf("start --wait-serial for a line never printed: %v: %s", err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	t.Logf("waited %s, CPU %s", wall.Round(time.Millisecond), cpu.Round(time.Millisecond))
	if cpu > wall/3 {
		t.Fatalf("start --wait-serial used %s of CPU in %s", cpu, wall)
	}
}
