package main_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// lintFindings runs guest lint --warn-only and returns the findings.
func lintFindings(t *testing.T, home, guest string) []findingJSON {
	t.Helper()
	var fs []findingJSON
	jsonOf(t, home, &fs, "guest", "lint", "--warn-only", guest)
	return fs
}

func errorFindings(fs []findingJSON) []string {
	var out []string
	for _, f := range fs {
		if f.Severity == "error" {
			out = append(out, f.ID+": "+f.Message)
		}
	}
	return out
}

// The reference's XP flow, by hand: ACPI and APIC off for text-mode Setup
// (phase 1, stopping at its reboot), on before the first graphical boot,
// then the install recorded. No step has an error finding, and guest lint
// exits 0 at the end; changing the HAL afterwards is an error, and lint
// then exits 7 (0 with --warn-only).
func TestReferenceXPFlowEndsWithoutLintErrors(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "xp-sys", "raw", "")
	ok(t, home, "guest", "define", "xp", "--disk", "xp-sys", "--cdrom", "", "--memory", "512", "--os", "winxp", "--boot", "dc")
	// Installing from CD with ACPI on is warned about, not an error.
	fs := lintFindings(t, home, "xp")
	if !strings.Contains(idsOf(fs), "xp-install-acpi") || len(errorFindings(fs)) > 0 {
		t.Errorf("define, boot from CD with ACPI on: %s %v", idsOf(fs), errorFindings(fs))
	}
	steps := [][]string{
		{"acpi=0", "apic=0", "on_reboot=destroy"},           // phase 1: text-mode Setup
		{"acpi=1", "apic=1", "boot=c", "on_reboot=restart"}, // before the first graphical boot
	}
	for _, step := range steps {
		ok(t, home, append([]string{"guest", "set", "xp"}, step...)...)
		fs := lintFindings(t, home, "xp")
		if e := errorFindings(fs); len(e) > 0 {
			t.Errorf("after set %v: %v", step, e)
		}
		if strings.Contains(idsOf(fs), "xp-install-acpi") && step[0] == "acpi=0" {
			t.Errorf("xp-install-acpi with ACPI off: %s", idsOf(fs))
		}
	}
	ok(t, home, "guest", "installed", "xp")
	ok(t, home, "guest", "lint", "xp")
	var g struct {
		Install struct {
			By   string `json:"by"`
			ACPI bool   `json:"acpi"`
		} `json:"install"`
	}
	jsonOf(t, home, &g, "guest", "show", "xp")
	if g.Install.By != "installed" || !g.Install.ACPI {
		t.Errorf("install record: %+v", g.Install)
	}
	ok(t, home, "guest", "set", "xp", "acpi=0")
	fails(t, home, 7, []string{"error severity", "hal-changed", "--warn-only"}, "guest", "lint", "xp")
	if fs := lintFindings(t, home, "xp"); !strings.Contains(idsOf(fs), "hal-changed") {
		t.Errorf("--warn-only: %s", idsOf(fs))
	}
	// A record for settings Setup saw other than those defined now.
	ok(t, home, "guest", "installed", "xp", "--acpi=false")
	ok(t, home, "guest", "lint", "xp")
}

// A clone of a golden frozen from an installed Windows guest: the clone's
// record says it has new hardware identity, as information; no error.
func TestCloneLintHasNoErrors(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "w-sys", "qcow2", "")
	ok(t, home, "guest", "define", "w", "--disk", "w-sys", "--memory", "512", "--os", "winxp", "--nic", "bridge=xenbr0", "--boot", "c")
	ok(t, home, "guest", "installed", "w")
	ok(t, home, "golden", "create", "w-gold", "--from", "w")
	ok(t, home, "clone", "w-gold", "lab")
	ok(t, home, "guest", "lint", "lab")
	fs := lintFindings(t, home, "lab")
	var clone *findingJSON
	for i := range fs {
		if fs[i].ID == "clone-identity" {
			clone = &fs[i]
		}
	}
	if clone == nil || clone.Severity != "info" || !strings.Contains(clone.Message, "w-gold") || strings.Contains(idsOf(fs), "mac-changed") {
		t.Errorf("clone findings: %+v", fs)
	}
}

func idsOf(fs []findingJSON) string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	return strings.Join(ids, ",")
}
