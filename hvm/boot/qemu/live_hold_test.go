package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// Resume always happens: a guest a live point paused, whose strata died
// before it resumed it (its pause hold names a process that is gone), is
// resumed by the guest's watcher within a moment, and the hold goes; so
// is one whose live holder hung past its hold's deadline. A guest its
// admin paused (no hold), or one a live strata holds within its deadline,
// stays paused.
func TestWatcherResumesAGuestAnInterruptedPointLeftPaused(t *testing.T) {
	e := newEnv(t)
	g := e.guest("held", boottest.Halt, nil)
	e.start(g, boot.StartOptions{})
	t.Cleanup(func() { e.d.Kill(context.Background(), g) })
	waitSerial(t, g, marker("held"), 1)
	ctx := context.Background()

	stays := func(why string) {
		t.Helper()
		time.Sleep(time.Second)
		if s := e.status(g); s.State != boot.Paused {
			t.Fatalf("%s: the guest is %s, want paused", why, s.State)
		}
	}
	resumed := func(why string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); e.status(g).State != boot.Running; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the guest is still %s after 5 s", why, e.status(g).State)
			}
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if h, _ := g.Run.ReadHold(); h == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the hold is still there after the resume", why)
			}
		}
	}

	// The admin's pause.
	if err := e.d.Pause(ctx, g); err != nil {
		t.Fatal(err)
	}
	stays("paused by its admin")

	// A point's pause whose strata died.
	dead := exec.Command("sleep", "10")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	start, err := boot.ProcStart(dead.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dead.Process.Kill()
	dead.Wait()
	if err := boot.WriteRuntimeJSON(g.Run.Path(boot.HoldFile), boot.PauseHold{PID: dead.Process.Pid, Start: start, BootID: boot.BootID(), Point: "p1", Paused: true}); err != nil {
		t.Fatal(err)
	}
	if note := boot.HoldNote(&boot.PauseHold{PID: dead.Process.Pid, Start: start, BootID: boot.BootID(), Paused: true}, boot.Paused); note == "" {
		t.Fatal("no note for a guest a dead strata's point holds paused")
	}
	resumed("held by a dead strata")

	// A live holder within its deadline, then past it.
	if err := e.d.Pause(ctx, g); err != nil {
		t.Fatal(err)
	}
	me, _ := boot.ProcStart(os.Getpid())
	h := boot.PauseHold{PID: os.Getpid(), Start: me, BootID: boot.BootID(), Point: "p2", Paused: true, Deadline: time.Now().Add(time.Hour)}
	if err := boot.WriteRuntimeJSON(g.Run.Path(boot.HoldFile), h); err != nil {
		t.Fatal(err)
	}
	stays("held by a live strata")
	h.Deadline = time.Now().Add(-time.Second)
	if err := boot.WriteRuntimeJSON(g.Run.Path(boot.HoldFile), h); err != nil {
		t.Fatal(err)
	}
	resumed("held past its deadline")
}
