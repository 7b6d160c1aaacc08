package main_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// twoDiskGuest defines guest g: a system disk booting a boot sector that
// prints STRATA-<marker> and waits for the power button, and a data disk
// starting with <marker>-data. It returns the data disk's path.
func twoDiskGuest(t *testing.T, home, g string) (sys, data string) {
	t.Helper()
	sys = bootSectorGuest(t, home, g+"-sys", "STRATA-A", boottest.PowerButton)
	ok(t, home, "guest", "delete", g+"-sys")
	ok(t, home, "volume", "create", g+"-data", "--size", "1M")
	var v struct{ Path string }
	jsonOf(t, home, &v, "volume", "info", g+"-data")
	writeAt(t, v.Path, []byte("A-data"))
	ok(t, home, "guest", "define", g, "--disk", g+"-sys", "--disk", g+"-data", "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu")
	return sys, v.Path
}

func head(t *testing.T, path string, n int) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot rollback --restart of a running guest stops it cleanly, rolls
// every disk back and starts it again with the same driver; without
// --restart it is refused and nothing changes.
func TestRollbackRestartOfARunningGuest(t *testing.T) {
	home := shortHome(t)
	sys, data := twoDiskGuest(t, home, "web")
	ok(t, home, "snapshot", "create", "web", "--name", "good")
	writeBootSector(t, sys, "STRATA-B", boottest.PowerButton)
	writeAt(t, data, []byte("B-data"))
	ok(t, home, "guest", "start", "web", "--wait-serial", "STRATA-B")

	before := snapshotState(t, home)
	fails(t, home, 5, []string{`guest "web" is running`, "--restart"}, "snapshot", "rollback", "web", "good")
	if after := snapshotState(t, home); after != before {
		t.Fatalf("a refused rollback changed the home:\n%s\n---\n%s", before, after)
	}
	if s := statusOf(t, home, "web"); s.State != "running" {
		t.Fatalf("a refused rollback touched the guest: %+v", s)
	}

	var res struct {
		To          struct{ ID int }
		PreRollback struct{ ID int } `json:"pre_rollback"`
	}
	jsonOf(t, home, &res, "snapshot", "rollback", "web", "good", "--restart", "--timeout", "30s")
	if res.To.ID != 1 || res.PreRollback.ID != 2 {
		t.Fatalf("rollback --restart result: %+v", res)
	}
	s := statusOf(t, home, "web")
	if s.State != "running" || s.Driver != "qemu" {
		t.Fatalf("after rollback --restart: %+v", s)
	}
	waitSerialLog(t, home, "web", "STRATA-A", 30*time.Second)
	if got := head(t, data, 6); got != "A-data" {
		t.Fatalf("data disk after rollback --restart: %q", got)
	}
	ok(t, home, "guest", "stop", "web", "--timeout", "30s")
}

// A strata killed at any step of rollback --restart leaves the guest
// stopped, and the next start boots it on disks that are all rolled back
// or all as they were: never on a half-restored set.
func TestRollbackRestartKilledNeverBootsAHalfRestoredGuest(t *testing.T) {
	for _, step := range []string{"rollback:guest-stopped", "rollback:pre-point", "rollback:copy-made", "rollback:disk-1", "rollback:before-start"} {
		t.Run(strings.ReplaceAll(step, ":", "-"), func(t *testing.T) {
			home := shortHome(t)
			sys, data := twoDiskGuest(t, home, "web")
			ok(t, home, "snapshot", "create", "web", "--name", "good")
			writeBootSector(t, sys, "STRATA-B", boottest.PowerButton)
			writeAt(t, data, []byte("B-data"))
			ok(t, home, "guest", "start", "web", "--wait-serial", "STRATA-B")

			r := runIn(t, home, []string{"STRATA_CRASH_AT=" + step}, "snapshot", "rollback", "web", "good", "--restart", "--timeout", "30s")
			if r.code != -1 && r.code != 137 {
				t.Fatalf("with STRATA_CRASH_AT=%s: exit %d (want killed): %s", step, r.code, r.stderr)
			}
			if s := statusOf(t, home, "web"); s.State != "stopped" {
				t.Fatalf("killed at %s, the guest is %s: it must stay stopped", step, s.State)
			}
			ok(t, home, "guest", "start", "web")
			line := waitSerialLog(t, home, "web", "STRATA-[AB]", 30*time.Second)
			want := "A-data"
			if line == "STRATA-B" {
				want = "B-data"
			}
			if got := head(t, data, 6); got != want {
				t.Fatalf("killed at %s: the guest booted %s but its data disk holds %q: a half-restored guest", step, line, got)
			}
			ok(t, home, "guest", "stop", "web", "--timeout", "30s")
			if out := ok(t, home, "doctor"); strings.Contains(out, "interrupted") {
				t.Fatalf("doctor after recovery:\n%s", out)
			}
		})
	}
}
