package qemu_test

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage"
)

// The runtime directory lives in the state home, which outlives a host
// reboot: a state.json from an earlier boot may name a pid that a process
// of this boot has, started at the same tick after boot (services start
// in the same order every boot). That process is not the guest's: it is
// never signalled, and the guest is reported stopped.
func TestStateFromAnEarlierBootIsNeverTrusted(t *testing.T) {
	e := newEnv(t)
	g := e.guest("earlier", boottest.Halt, nil)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	start, err := boot.ProcStart(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	fake := func() {
		if err := g.Run.WriteState(boot.RunState{Driver: boot.QEMU, PID: other.Process.Pid, PIDStart: start,
			BootID: "00000000-0000-0000-0000-000000000000", Started: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	fake()
	if err := e.d.Kill(context.Background(), g); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("kill: %v", err)
	}
	fake()
	if _, err := e.d.Stop(context.Background(), g, boot.StopOptions{Force: true}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("stop: %v", err)
	}
	fake()
	if s := e.status(g); s.State != boot.Stopped || s.LastStop == nil || s.LastStop.Reason != boot.ReasonDied {
		t.Fatalf("status %+v", s)
	}
	fake()
	if rs, _ := e.d.Running(context.Background()); len(rs) != 0 {
		t.Fatalf("running %+v", rs)
	}
	if !boot.SameProcess(other.Process.Pid, start) {
		t.Fatal("the other process was signalled")
	}
	// A guest started in this boot records it, and is live.
	g.Run.ClearState()
	e.start(g, boot.StartOptions{})
	st, _ := g.Run.ReadState()
	if st == nil || st.BootID == "" || st.BootID != boot.BootID() {
		t.Fatalf("state of a started guest: %+v", st)
	}
	if s := e.status(g); s.State != boot.Running {
		t.Fatalf("status of a started guest: %+v", s)
	}
}
