package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

type installView struct {
	Boot      string
	Features  map[string]any
	Lifecycle map[string]string
	Disks     []map[string]any
}

func installDef(t *testing.T, home, name string) string {
	t.Helper()
	var g installView
	jsonOf(t, home, &g, "guest", "show", name)
	b, _ := json.Marshal(struct {
		Boot     string
		ACPI     any
		APIC     any
		OnReboot string
	}{g.Boot, g.Features["acpi"], g.Features["apic"], g.Lifecycle["on_reboot"]})
	return string(b)
}

// An install whose phase 1 fails (here: its disk is missing) gives the
// guest its definition back: boot order, on_reboot, ACPI and APIC as the
// admin defined them. A second install then records those, not phase 1's
// (boot from the CD, on_reboot destroy, and with --xp ACPI and APIC
// off), which it would otherwise make the guest's for good.
func TestFailedInstallGivesTheDefinitionBack(t *testing.T) {
	home := shortHome(t)
	disk := bootSectorGuest(t, home, "fi", "STRATA-FI", boottest.PowerOff)
	ok(t, home, "guest", "set", "fi", "on_reboot=restart")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("setup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "iso", "build", src, "setup")
	before := installDef(t, home, "fi")
	// Phase 1 cannot start: the guest's disk went away.
	if err := os.Rename(disk, disk+".away"); err != nil {
		t.Fatal(err)
	}
	fails(t, home, 3, []string{"install failed", "hda", "missing"}, "guest", "install", "fi", "--media", "setup", "--xp")
	if after := installDef(t, home, "fi"); after != before {
		t.Fatalf("a failed install left the definition changed:\nbefore %s\nafter  %s", before, after)
	}
	var rec struct{ State string }
	jsonOf(t, home, &rec, "guest", "install", "fi", "--status")
	if rec.State != "failed" {
		t.Fatalf("install record after the failure: %+v", rec)
	}

}

// Install media that is not a disc image (a directory, a file that holds
// no ISO9660 or UDF filesystem, whatever its name) is refused before
// anything changes.
func TestInstallRefusesMediaThatIsNotADiscImage(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "nm", "STRATA-NM", boottest.PowerOff)
	dir := t.TempDir()
	notISO := filepath.Join(dir, "setup.iso")
	if err := os.WriteFile(notISO, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshotState(t, home)
	fails(t, home, 2, []string{dir, "not a regular file"}, "guest", "install", "nm", "--media", dir)
	fails(t, home, 2, []string{notISO, "not an ISO image"}, "guest", "install", "nm", "--media", notISO)
	fails(t, home, 3, []string{"nosuch"}, "guest", "install", "nm", "--media", "nosuch")
	if after := snapshotState(t, home); after != before {
		t.Fatalf("a refused install changed the home:\n%s\n---\n%s", before, after)
	}
}

// Two installs of one guest at once: the second is refused as busy
// (exit 6) and changes nothing; the first goes on to its end. (The second
// took the first's running phase for its own, or found the guest not yet
// started and marked the install failed under it.)
func TestConcurrentInstallsRunOne(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "ci", "STRATA-CI", boottest.PowerButton)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("setup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "iso", "build", src, "setup")
	first := exec.Command(strataBinary(t), "--home", home, "guest", "install", "ci", "--media", "setup", "--phase-timeout", "2m")
	var out strings.Builder
	first.Stderr = &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	waitState(t, home, "ci", "running", 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, strataBinary(t), "--home", home, "guest", "install", "ci", "--media", "setup")
	b, err := second.CombinedOutput()
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 6 || !strings.Contains(string(b), "busy") {
		t.Fatalf("a second install while one runs: %v: %s", err, b)
	}
	var rec struct{ State string }
	jsonOf(t, home, &rec, "guest", "install", "ci", "--status")
	if rec.State != "phase-1" {
		t.Fatalf("install record after a refused second install: %+v", rec)
	}

	// Phase 1 ends when the guest shuts down, phase 2 likewise.
	ok(t, home, "guest", "stop", "ci", "--timeout", "30s")
	deadline := time.Now().Add(30 * time.Second)
	for {
		jsonOf(t, home, &rec, "guest", "install", "ci", "--status")
		if rec.State == "phase-2" && statusOf(t, home, "ci").State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase 2 did not start: %+v; %s", rec, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ok(t, home, "guest", "stop", "ci", "--timeout", "30s")
	if err := first.Wait(); err != nil {
		t.Fatalf("the first install: %v: %s", err, out.String())
	}
}
