package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A guest whose QEMU dies while a memory point pauses it is reported as
// gone, not as a pause too long with advice to raise --max-pause; nothing
// is recorded and no state file is left.
func TestGuestDyingDuringAMemoryPointIsReportedAsGone(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "md", "", "raw")
	r := runIn(t, home, []string{"STRATA_TEST_KILL_GUEST_AT=create:live-paused"}, "snapshot", "create", "md", "--memory")
	if r.code == 0 || !strings.Contains(r.stderr, "went away") || strings.Contains(r.stderr, "--max-pause") || strings.Contains(r.stderr, "pause too long") {
		t.Fatalf("a memory point whose guest died: exit %d: %s", r.code, r.stderr)
	}
	if out := ok(t, home, "--output", "json", "snapshot", "list", "md"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after the guest died: %s", out)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(volumePath(t, home, "md-a")), ".strata-points", "*")); len(left) != 0 {
		t.Fatalf("point files left: %v", left)
	}
}

// rollback --memory checks the point's state file before it stops the
// guest or touches a disk: a state file cut short, replaced by a symbolic
// link or gone is refused (exit 7) with nothing changed: no pre-rollback
// point, the disks as they were, the guest still running.
func TestRollbackMemoryRefusesABadStateFileBeforeChangingAnything(t *testing.T) {
	home := shortHome(t)
	counterGuest(t, home, "mb", "", "raw")
	p, _ := takeMemoryPoint(t, home, "mb")
	good, err := os.ReadFile(p.Memory.Path)
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string]func(){
		"cut short": func() { os.Truncate(p.Memory.Path, 4096) },
		"a symbolic link": func() {
			os.Remove(p.Memory.Path)
			os.Symlink("/etc/passwd", p.Memory.Path)
		},
		"gone":        func() { os.Remove(p.Memory.Path) },
		"not a state": func() { os.WriteFile(p.Memory.Path, make([]byte, len(good)), 0o600) },
	}
	for what, fn := range damage {
		fn()
		before := lastCount(t, home, "mb")
		r := fails(t, home, 7, []string{"nothing was changed", "without --memory"}, "snapshot", "rollback", "mb", fmt.Sprint(p.ID), "--memory", "--restart", "--timeout", "1s")
		t.Logf("state %s: %s", what, strings.TrimSpace(r.stderr))
		var all []livePoint
		jsonOf(t, home, &all, "snapshot", "list", "mb")
		if len(all) != 1 {
			t.Fatalf("state %s: points after the refused rollback: %+v", what, all)
		}
		if s := statusOf(t, home, "mb"); s.State != "running" {
			t.Fatalf("state %s: the guest after the refused rollback: %+v", what, s)
		}
		countAbove(t, home, "mb", before) // counts on, never rolled back
		os.Remove(p.Memory.Path)
		if err := os.WriteFile(p.Memory.Path, good, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The state put back as it was: the rollback goes through.
	ok(t, home, "snapshot", "rollback", "mb", fmt.Sprint(p.ID), "--memory", "--restart", "--timeout", "1s")
	if s := statusOf(t, home, "mb"); s.State != "running" {
		t.Fatalf("after rollback --memory: %+v", s)
	}
}
