package qemu_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qmp"
)

// A QEMU that stops answering in the middle of a live point (here
// SIGSTOPped while the guest is paused) does not hang the point: the
// resume is given up after its deadline with an error that says the guest
// is left paused, and the resume strata sent runs once QEMU answers again.
func TestLivePointWithAQEMUThatStopsAnsweringDoesNotHang(t *testing.T) {
	e := newEnv(t)
	g := e.guest("hang", boottest.Halt, nil)
	st := e.start(g, boot.StartOptions{})
	t.Cleanup(func() { syscall.Kill(st.PID, syscall.SIGCONT); e.d.Kill(context.Background(), g) })
	waitSerial(t, g, marker("hang"), 1)
	mon, err := e.d.Monitor(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	req := boot.LiveRequest{ID: "t1", MaxPause: 100 * time.Millisecond, Disks: []boot.LiveDisk{{
		Path: g.Def.Disks[0].Path, Method: boot.LiveClone,
		Clone: func() error { return syscall.Kill(st.PID, syscall.SIGSTOP) },
	}}}
	start := time.Now()
	_, err = boot.TakeLive(context.Background(), mon, req)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "it is paused") {
		t.Fatalf("a live point whose QEMU stopped answering: %v", err)
	}
	if took > 30*time.Second {
		t.Fatalf("the point took %s to give up", took)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
	syscall.Kill(st.PID, syscall.SIGCONT)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		raw, err := mon.Execute(context.Background(), "query-status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), `"running"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not run again once QEMU answered: %s", raw)
		}
	}
}

// A live point of a guest whose QEMU dies during the pause reports that
// QEMU went away (the resume is not retried against nothing).
func TestLivePointOfAGuestThatDiesSaysSo(t *testing.T) {
	e := newEnv(t)
	g := e.guest("dies", boottest.Halt, nil)
	st := e.start(g, boot.StartOptions{})
	waitSerial(t, g, marker("dies"), 1)
	mon, err := e.d.Monitor(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	req := boot.LiveRequest{ID: "t2", Disks: []boot.LiveDisk{{
		Path: g.Def.Disks[0].Path, Method: boot.LiveClone,
		Clone: func() error {
			syscall.Kill(st.PID, syscall.SIGKILL)
			return nil
		},
	}}}
	_, err = boot.TakeLive(context.Background(), mon, req)
	if err == nil || !errors.Is(err, qmp.ErrClosed) || !strings.Contains(err.Error(), "went away") {
		t.Fatalf("a live point whose QEMU died: %v", err)
	}
	if s := e.waitStopped(g); s.LastStop == nil || s.LastStop.Reason != boot.ReasonDied {
		t.Fatalf("status after QEMU died: %+v", s)
	}
}
