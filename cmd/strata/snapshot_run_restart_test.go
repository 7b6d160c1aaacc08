package main_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// snapshot run --rollback-on-failure of a running guest: without
// --restart it is refused before anything is taken or run (a running
// guest cannot be rolled back in place); with --restart the failed
// command is followed by the stop, rollback, start sequence of rollback
// --restart, the guest runs again on its pre point's disks, and strata
// exits with the command's own code.
func TestSnapshotRunRollbackOnFailureOfARunningGuest(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "rr", "", "raw")
	marker := t.TempDir() + "/ran"
	fails(t, home, 5, []string{"is running", "--restart"}, "snapshot", "run", "rr", "--rollback-on-failure", "--", "/bin/sh", "-c", "touch "+marker+"; exit 3")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the refused run ran its command")
	}
	if out := ok(t, home, "--output", "json", "snapshot", "list", "rr"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a refused run: %s", out)
	}
	fails(t, home, 2, []string{"--rollback-on-failure"}, "snapshot", "run", "rr", "--restart", "--", "/bin/true")

	lo := lastCount(t, home, "rr")
	r := runIn(t, home, nil, "snapshot", "run", "rr", "--rollback-on-failure", "--restart", "--timeout", "1s", "--", "/bin/sh", "-c", "exit 3")
	if r.code != 3 {
		t.Fatalf("snapshot run --restart of a failing command: exit %d (want the command's 3): %s", r.code, r.stderr)
	}
	var pts []struct {
		Kind   string
		Live   bool
		Method string
	}
	jsonOf(t, home, &pts, "snapshot", "list", "rr")
	var kinds []string
	for _, p := range pts {
		kinds = append(kinds, p.Kind)
	}
	t.Logf("points of the run: %v", kinds)
	switch {
	case len(pts) > 0 && pts[0].Method == "copy":
		// Full copies: pre live, then the post point, which is the
		// rollback's undo point, of the stopped guest (no second copy
		// of the same state as a pre-rollback point).
		if strings.Join(kinds, ",") != "pre,post" || !pts[0].Live || pts[1].Live {
			t.Fatalf("points of the run: %+v", pts)
		}
	// pre and post live, then the pre-rollback point of the stopped guest.
	case strings.Join(kinds, ",") != "pre,post,pre-rollback" || !pts[0].Live || !pts[1].Live:
		t.Fatalf("points of the run: %+v", pts)
	}
	if s := statusOf(t, home, "rr"); s.State != "running" {
		t.Fatalf("the guest after the run's rollback: %+v", s)
	}
	// It booted again, from the pre point's disks: what it finds there
	// is what it had counted when the pre point was taken.
	var boot *boottest.CounterLine
	for deadline := time.Now().Add(15 * time.Second); boot == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range counterLines(t, home, "rr") {
			if l.Boot {
				boot = &l
				break
			}
		}
	}
	if boot == nil {
		t.Fatal("the guest did not boot again after the run's rollback")
	}
	if !boottest.CounterConsistent(boot.A, boot.B) || boot.B < lo {
		t.Fatalf("after the rollback the guest found A=%d B=%d (the pre point was taken above %d)", boot.A, boot.B, lo)
	}
}
