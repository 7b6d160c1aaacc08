package boot

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Only the end of file on the guard's pipe says that the strata taking
// the point died: a stray byte (someone writing the pipe through
// /proc/PID/fd) neither resumes the guest nor ends the guard, and the
// point's own byte still ends it.
func TestGuardTakesOnlyTheEndOfItsPipeForDeath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write string
		close bool
		gone  bool
	}{
		{"stray bytes then done", "x\x00", false, false},
		{"stray bytes then strata dies", "zz", true, true},
		{"done", "d", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			// The guard's own descriptor, which AwaitHolder closes.
			fd, err := syscall.Dup(int(pr.Fd()))
			pr.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv(GuardFDEnv, strconv.Itoa(fd))
			if _, err := pw.WriteString(tc.write); err != nil {
				t.Fatal(err)
			}
			type res struct {
				gone bool
				err  error
			}
			got := make(chan res, 1)
			go func() {
				g, err := AwaitHolder(context.Background(), time.Hour, nil)
				got <- res{g, err}
			}()
			if tc.write != "d" {
				select {
				case r := <-got:
					t.Fatalf("the guard ended on stray bytes alone: gone %v err %v", r.gone, r.err)
				case <-time.After(100 * time.Millisecond):
				}
				if tc.close {
					pw.Close()
				} else {
					pw.WriteString("d")
				}
			}
			select {
			case r := <-got:
				if r.err != nil || r.gone != tc.gone {
					t.Errorf("gone %v err %v, want gone %v", r.gone, r.err, tc.gone)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the guard did not end")
			}
			pw.Close()
		})
	}
}

// StartGuard returns once the guard says it is ready (GuardReady): a guest
// is paused only when its guard can resume it without the catalog. A
// guard that dies before it says so does not hold strata up.
func TestStartGuardWaitsUntilTheGuardIsReady(t *testing.T) {
	if mode := os.Getenv("STRATA_TEST_GUARD"); mode != "" {
		if mode == "slow" {
			time.Sleep(300 * time.Millisecond)
			GuardReady()
		}
		os.Exit(0)
	}
	for _, tc := range []struct {
		mode     string
		min, max time.Duration
	}{
		{"slow", 300 * time.Millisecond, 5 * time.Second},
		{"dies", 0, 2 * time.Second},
	} {
		t.Setenv("STRATA_TEST_GUARD", tc.mode)
		start := time.Now()
		g, err := StartGuard([]string{os.Args[0], "-test.run=^TestStartGuardWaitsUntilTheGuardIsReady$"}, t.TempDir()+"/guard.log")
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		g.Done()
		if took < tc.min || took > tc.max {
			t.Fatalf("a guard that %s: StartGuard returned after %v, want %v to %v", tc.mode, took, tc.min, tc.max)
		}
	}
}
