package main_test

import (
	"encoding/json"
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

// An install whose phase 1 fails (here: its CD is missing) gives the
// guest its definition back: boot order, on_reboot, ACPI and APIC as the
// admin defined them. A second install then records those, not phase 1's
// (boot from the CD, on_reboot destroy, and with --xp ACPI and APIC
// off), which it would otherwise make the guest's for good.
func TestFailedInstallGivesTheDefinitionBack(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "fi", "STRATA-FI", boottest.PowerOff)
	ok(t, home, "guest", "set", "fi", "on_reboot=restart")
	before := installDef(t, home, "fi")
	fails(t, home, 3, []string{"/nonexistent/setup.iso", "missing"}, "guest", "install", "fi", "--media", "/nonexistent/setup.iso", "--xp")
	if after := installDef(t, home, "fi"); after != before {
		t.Fatalf("a failed install left the definition changed:\nbefore %s\nafter  %s", before, after)
	}
	var rec struct{ State string }
	jsonOf(t, home, &rec, "guest", "install", "fi", "--status")
	if rec.State != "failed" {
		t.Fatalf("install record after the failure: %+v", rec)
	}
}
