package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// livePoint is what the tests read of a point's JSON.
type livePoint struct {
	ID          int
	Live        bool
	Consistency string
	PauseMS     *float64 `json:"pause_ms"`
	Method      string
	Disks       []struct {
		Volume, Method, Ref string
	}
}

// liveGuest defines and starts guest NAME with a qcow2 boot disk (a boot
// sector that prints marker and halts) and a raw data disk, and returns
// the two images' paths.
func liveGuest(t *testing.T, home, name, marker string) (qcow2, raw string) {
	t.Helper()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	ok(t, home, "volume", "create", name+"-sys", "--size", "16M", "--format", "qcow2")
	ok(t, home, "volume", "create", name+"-data", "--size", "8M")
	var sys, data struct{ Path string }
	jsonOf(t, home, &sys, "volume", "info", name+"-sys")
	jsonOf(t, home, &data, "volume", "info", name+"-data")
	bootRaw := filepath.Join(t.TempDir(), "boot.raw")
	if err := boottest.WriteDisk(bootRaw, boottest.BootSector(marker, boottest.Halt)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", bootRaw, sys.Path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	if err := os.WriteFile(data.Path, []byte(strings.Repeat("data disk ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(data.Path, 8<<20); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "guest", "define", name, "--disk", name+"-sys", "--disk", name+"-data", "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu")
	ok(t, home, "guest", "start", name, "--wait-serial", marker)
	t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", name) })
	return sys.Path, data.Path
}

// internalSnapshots lists the internal snapshots of a qcow2 image (read
// with -U: the guest may hold it).
func internalSnapshots(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info struct{ Snapshots []struct{ Name string } }
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range info.Snapshots {
		names = append(names, s.Name)
	}
	return names
}

func pointFiles(t *testing.T, raw string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(filepath.Dir(raw), ".strata-points"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// A point of a running guest is taken through its QEMU in one pause: the
// qcow2 disk gets an internal snapshot, the raw disk a point-in-time copy,
// the point says it is live and crash-consistent and how long the guest
// was paused, and the guest runs on. Deleting it while the guest runs
// removes both; a point of the stopped guest is "offline".
func TestLivePointOfARunningGuest(t *testing.T) {
	home := shortHome(t)
	sys, raw := liveGuest(t, home, "lv", "STRATA-LV")
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "lv", "--name", "before-patch")
	if !p.Live || p.Consistency != "crash" || p.PauseMS == nil || *p.PauseMS <= 0 || *p.PauseMS >= 1000 {
		t.Fatalf("live point: %+v", p)
	}
	t.Logf("pause: %.1f ms", *p.PauseMS)
	if p.Method != "mixed" || len(p.Disks) != 2 || p.Disks[0].Method != "qcow2-internal" || p.Disks[1].Method != "copy" {
		t.Fatalf("methods: %+v", p)
	}
	if s := statusOf(t, home, "lv"); s.State != "running" {
		t.Fatalf("the guest after a live point: %+v", s)
	}
	if snaps := internalSnapshots(t, sys); len(snaps) != 1 || snaps[0] != p.Disks[0].Ref {
		t.Fatalf("internal snapshots of the qcow2 disk: %v, want [%s]", snaps, p.Disks[0].Ref)
	}
	// Tagged by QMP with the point's number and name, as offline ones.
	if !strings.HasPrefix(p.Disks[0].Ref, fmt.Sprintf("strata-%d-before-patch-", p.ID)) {
		t.Fatalf("the live point's internal snapshot is tagged %q, want strata-%d-before-patch-UID", p.Disks[0].Ref, p.ID)
	}
	want, _ := os.ReadFile(raw)
	got, err := os.ReadFile(p.Disks[1].Ref)
	if err != nil || string(got) != string(want) {
		t.Fatalf("the raw disk's copy differs from the disk (%v)", err)
	}
	show := ok(t, home, "snapshot", "show", "lv", "before-patch")
	if !strings.Contains(show, "crash") || !strings.Contains(show, "guest paused") {
		t.Fatalf("snapshot show does not say how the point was taken:\n%s", show)
	}

	ok(t, home, "snapshot", "delete", "lv", "before-patch")
	if snaps := internalSnapshots(t, sys); len(snaps) != 0 {
		t.Fatalf("internal snapshots left after the delete: %v", snaps)
	}
	if files := pointFiles(t, raw); len(files) != 0 {
		t.Fatalf("point files left after the delete: %v", files)
	}
	if s := statusOf(t, home, "lv"); s.State != "running" {
		t.Fatalf("the guest after deleting a point: %+v", s)
	}

	ok(t, home, "guest", "kill", "lv")
	var off livePoint
	jsonOf(t, home, &off, "snapshot", "create", "lv")
	if off.Live || off.Consistency != "offline" || off.PauseMS != nil {
		t.Fatalf("point of a stopped guest: %+v", off)
	}
}

// A pause longer than --max-pause is undone: the guest runs, and nothing
// is recorded or left behind.
func TestLivePointOverMaxPauseLeavesNothing(t *testing.T) {
	home := shortHome(t)
	sys, raw := liveGuest(t, home, "mp", "STRATA-MP")
	fails(t, home, 7, []string{"--max-pause", "nothing was recorded"}, "snapshot", "create", "mp", "--max-pause", "1ns")
	if out := ok(t, home, "--output", "json", "snapshot", "list", "mp"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a refused live point: %s", out)
	}
	if snaps := internalSnapshots(t, sys); len(snaps) != 0 {
		t.Fatalf("internal snapshots left: %v", snaps)
	}
	if files := pointFiles(t, raw); len(files) != 0 {
		t.Fatalf("point files left: %v", files)
	}
	if s := statusOf(t, home, "mp"); s.State != "running" {
		t.Fatalf("the guest after a refused live point: %+v", s)
	}
	fails(t, home, 2, []string{"--max-pause"}, "snapshot", "create", "mp", "--max-pause", "0s")
}

// --quiesce needs a guest agent strata can reach; without one the point
// is refused, not silently taken crash-consistent.
func TestLivePointQuiesceWithoutAgentIsRefused(t *testing.T) {
	home := shortHome(t)
	liveGuest(t, home, "qa", "STRATA-QA")
	fails(t, home, 8, []string{"guest agent", "crash-consistent"}, "snapshot", "create", "qa", "--quiesce")
	if out := ok(t, home, "--output", "json", "snapshot", "list", "qa"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after a refused --quiesce: %s", out)
	}
}

// A strata killed while the guest is paused for a live point does not
// leave it paused: its watcher resumes it within a moment, with no
// strata command run; the next command on the guest undoes the point
// (its internal snapshot and copy go), and the guest runs on.
func TestKilledLivePointIsUndoneAndTheGuestRunsAgain(t *testing.T) {
	home := shortHome(t)
	sys, raw := liveGuest(t, home, "kl", "STRATA-KL")
	r := runIn(t, home, []string{"STRATA_CRASH_AT=create:live-paused"}, "snapshot", "create", "kl", "--name", "torn")
	if r.code == 0 {
		t.Fatalf("the killed point exited 0: %s", r.stderr)
	}
	waitState(t, home, "kl", "running", 5*time.Second)
	var p livePoint
	jsonOf(t, home, &p, "snapshot", "create", "kl", "--name", "next")
	if p.ID != 2 || !p.Live {
		t.Fatalf("the next point: %+v", p)
	}
	var all []livePoint
	jsonOf(t, home, &all, "snapshot", "list", "kl")
	if len(all) != 1 || all[0].ID != 2 {
		t.Fatalf("points after recovery: %+v", all)
	}
	if snaps := internalSnapshots(t, sys); len(snaps) != 1 || snaps[0] != p.Disks[0].Ref {
		t.Fatalf("internal snapshots after recovery: %v", snaps)
	}
	if files := pointFiles(t, raw); len(files) != 1 {
		t.Fatalf("point files after recovery: %v", files)
	}
	if s := statusOf(t, home, "kl"); s.State != "running" {
		t.Fatalf("the guest after recovery: %+v", s)
	}
}

// A guest whose QEMU dies while it is paused for a live point is not
// resumed (there is nothing to resume) and the point is undone as a
// stopped guest's: nothing recorded, no internal snapshot, no file.
func TestGuestDyingDuringALivePointLeavesNoPoint(t *testing.T) {
	home := shortHome(t)
	sys, raw := liveGuest(t, home, "gd", "STRATA-GD")
	r := runIn(t, home, []string{"STRATA_TEST_KILL_GUEST_AT=create:live-paused"}, "snapshot", "create", "gd")
	if r.code == 0 || !strings.Contains(r.stderr, "went away") {
		t.Fatalf("a point whose guest died: exit %d: %s", r.code, r.stderr)
	}
	if out := ok(t, home, "--output", "json", "snapshot", "list", "gd"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("points after the guest died: %s", out)
	}
	if snaps := internalSnapshots(t, sys); len(snaps) != 0 {
		t.Fatalf("internal snapshots left: %v", snaps)
	}
	if files := pointFiles(t, raw); len(files) != 0 {
		t.Fatalf("point files left: %v", files)
	}
	if s := statusOf(t, home, "gd"); s.State != "stopped" || s.LastStop == nil || s.LastStop.Reason != "died" {
		t.Fatalf("status after the guest died during a point: %+v", s)
	}
}

// --memory and --quiesce exclude each other (the saved RAM would hold the
// freeze), refused before anything happens.
func TestMemoryAndQuiesceExcludeEachOther(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "mq", "--size", "1M")
	ok(t, home, "guest", "define", "mq", "--disk", "mq", "--memory", "16", "--os", "other")
	fails(t, home, 2, []string{"--memory and --quiesce exclude each other"}, "snapshot", "create", "mq", "--memory", "--quiesce")
}
