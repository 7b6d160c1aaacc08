package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

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
