package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
)

// Not a timed test: it logs, for the benchmark, the time from
// Start to the guest's first serial line against the same QEMU command
// line run directly (goal: at most 1.1x), and the time a status of a
// running guest takes (goal: under 20 ms).
func TestStartToFirstSerialLineOverhead(t *testing.T) {
	e := newEnv(t)
	g := e.guest("bench", boottest.Halt, nil)
	const rounds = 5
	var viaDriver, direct, status []time.Duration
	for i := 0; i < rounds; i++ {
		t0 := time.Now()
		e.start(g, boot.StartOptions{})
		waitSerial(t, g, marker("bench"), 1)
		viaDriver = append(viaDriver, time.Since(t0))
		for j := 0; j < 10; j++ {
			t1 := time.Now()
			if s := e.status(g); s.State != boot.Running {
				t.Fatalf("status %s", s.State)
			}
			status = append(status, time.Since(t1))
		}
		if err := e.d.Kill(context.Background(), g); err != nil {
			t.Fatal(err)
		}

		argv, err := qemuargv.Argv(g.Def, qemuargv.Options{Accel: "tcg", Network: qemuargv.NetNone})
		if err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(e.home, "direct.log")
		os.Remove(log)
		argv = append(argv, "-monitor", "none", "-serial", "file:"+log)
		t0 = time.Now()
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for {
			b, _ := os.ReadFile(log)
			if strings.Contains(string(b), marker("bench")) {
				break
			}
			if time.Since(t0) > 15*time.Second {
				t.Fatal("no marker from the direct run")
			}
			time.Sleep(time.Millisecond)
		}
		direct = append(direct, time.Since(t0))
		cmd.Process.Kill()
		cmd.Wait()
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	t.Logf("start to first serial line: driver %v, QEMU directly %v (median of %d): %.2fx; status of a running guest: %v (median of %d)",
		med(viaDriver), med(direct), rounds, float64(med(viaDriver))/float64(med(direct)), med(status), len(status))
}
