package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// bootTimeout bounds each boot of the tiny Linux guest (about 6 s from
// its CD under TCG, more on a loaded machine).
const bootTimeout = 3 * time.Minute

// linuxKit builds (or takes from the cache) the tiny Linux guest: a Debian
// cloud kernel and a busybox initramfs, downloaded at build time.
func linuxKit(t *testing.T) *boottest.Kit {
	t.Helper()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := boottest.LinuxKit(ctx, "")
	if err != nil {
		t.Fatalf("build the test guest: %v", err)
	}
	return k
}

// installCD makes the kit's CD for mode with strata's own iso build.
func installCD(t *testing.T, home string, k *boottest.Kit, mode, name string, extra ...string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), mode)
	if err := k.ISOSource(mode, src, extra...); err != nil {
		t.Fatal(err)
	}
	ok(t, home, boottest.ISOBuildArgs(src, name)...)
}

// boot starts a guest, waits for a serial line and for the guest to stop
// by itself, and logs how long that took.
func boot(t *testing.T, home, guest, line string) {
	t.Helper()
	start := time.Now()
	ok(t, home, "guest", "start", guest, "--wait-serial", regexpQuote(line), "--wait-timeout", bootTimeout.String())
	waitState(t, home, guest, "stopped", bootTimeout)
	t.Logf("boot of %s to %q and power-off: %s", guest, line, time.Since(start).Round(10*time.Millisecond))
}

func regexpQuote(s string) string {
	r := strings.NewReplacer(".", `\.`, "(", `\(`, ")", `\)`, "[", `\[`, "]", `\]`, "*", `\*`, "+", `\+`, "?", `\?`)
	return r.Replace(s)
}

// The admin's story with a real guest, through the strata binary only: an
// install CD built by strata, a two-phase install (phase 1 boots from the
// CD, writes the system onto the disk and reboots, which with
// on_reboot=destroy stops it; phase 2 starts by itself from the disk, with
// the phase-2 definition), a restore point, a bad patch, a rollback after
// which the guest boots the installed system again, and linked clones of a
// golden image that boot it too without writing to the golden.
func TestInstallPatchRollbackAndCloneARealGuest(t *testing.T) {
	k := linuxKit(t)
	home := shortHome(t)
	installCD(t, home, k, boottest.ModeInstall, "installer", boottest.EndWithReboot)
	installCD(t, home, k, boottest.ModePatch, "patcher")
	ok(t, home, "volume", "create", "tiny-sys", "--size", "64M")
	ok(t, home, "guest", "define", "tiny", "--disk", "tiny-sys", "--memory", "256", "--os", "linux", "--driver", "qemu")

	start := time.Now()
	r := runIn(t, home, nil, "guest", "install", "tiny", "--media", "installer", "--snapshot", "--phase-timeout", bootTimeout.String())
	if r.code != 0 {
		t.Fatalf("guest install: exit %d\n%s", r.code, r.stderr)
	}
	t.Logf("install, both phases: %s", time.Since(start).Round(10*time.Millisecond))
	var rec struct {
		State  string
		Point  int
		Phases []struct {
			Phase  int
			Result string
			Stop   struct{ Reason string }
		}
	}
	jsonOf(t, home, &rec, "guest", "install", "tiny", "--status")
	if rec.State != "done" || rec.Point == 0 || len(rec.Phases) != 2 ||
		rec.Phases[0].Result != "ok" || rec.Phases[0].Stop.Reason != "reboot" ||
		rec.Phases[1].Result != "ok" || rec.Phases[1].Stop.Reason != "poweroff" {
		t.Fatalf("install status: %+v", rec)
	}
	// Phase 2 ran from the disk: the disk's own boot printed the marker.
	waitSerialLog(t, home, "tiny", boottest.InstalledMarker, time.Second)
	var def struct {
		Boot      string
		Lifecycle struct {
			OnReboot string `json:"on_reboot"`
		}
		Install *struct {
			Memory int
			By     string `json:"by"`
		}
	}
	jsonOf(t, home, &def, "guest", "show", "tiny")
	if def.Boot != "c" || def.Lifecycle.OnReboot == "destroy" || def.Install == nil || def.Install.Memory != 256 || def.Install.By != "install" {
		t.Fatalf("the phase-2 definition: %+v", def)
	}

	// A bad patch from its CD overwrites the installed system.
	ok(t, home, "guest", "set", "tiny", "disks.1.media=patcher", "boot=dc")
	boot(t, home, "tiny", boottest.PatchApplied)
	ok(t, home, "guest", "set", "tiny", "boot=c")
	boot(t, home, "tiny", boottest.BadPatchMarker)

	// Roll back: the disk and the definition (the install CD, boot from
	// the disk) as they were installed.
	ok(t, home, "snapshot", "rollback", "tiny", "installed")
	boot(t, home, "tiny", boottest.InstalledMarker)

	// Golden image and linked clones: each boots the installed system,
	// and what one writes reaches neither the golden nor the other.
	ok(t, home, "golden", "create", "tiny-gold", "--from", "tiny@installed")
	ok(t, home, "clone", "tiny-gold", "lab", "--count", "2")
	ok(t, home, "guest", "set", "lab-1", "disks.1.media=patcher", "boot=dc")
	boot(t, home, "lab-1", boottest.PatchApplied)
	ok(t, home, "guest", "set", "lab-1", "boot=c")
	boot(t, home, "lab-1", boottest.BadPatchMarker)
	boot(t, home, "lab-2", boottest.InstalledMarker)
	ok(t, home, "clone", "tiny-gold", "lab-3")
	boot(t, home, "lab-3", boottest.InstalledMarker)
}

// An installer that hangs in phase 1 is ended after --phase-timeout and
// leaves the install at phase 1 with the reason and the guest's last
// serial lines; a second install needs --media to start over.
func TestInstallThatHangsInPhase1SaysWhy(t *testing.T) {
	k := linuxKit(t)
	home := shortHome(t)
	// This "installer" waits for a power button nobody presses.
	installCD(t, home, k, boottest.ModeWait, "broken")
	ok(t, home, "volume", "create", "f-sys", "--size", "16M")
	ok(t, home, "guest", "define", "f", "--disk", "f-sys", "--memory", "256", "--os", "linux", "--driver", "qemu")
	// An earlier system's install record: phase 1 drops it (Setup
	// replaces that system), a failed phase 1 gives it back.
	ok(t, home, "guest", "installed", "f", "--vcpus", "2")
	r := runIn(t, home, nil, "guest", "install", "f", "--media", "broken", "--phase-timeout", "25s")
	if r.code == 0 {
		t.Fatalf("an install whose phase 1 hangs or fails succeeded:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "phase 1") || !strings.Contains(r.stderr, "install failed") || !strings.Contains(r.stderr, "timed out") || !strings.Contains(r.stderr, boottest.WaitingForPowerButton) {
		t.Fatalf("install failure message: %s", r.stderr)
	}
	var rec struct {
		State, Error string
		Phases       []struct {
			Phase  int
			Result string
			Stop   *struct {
				Reason     string
				SerialTail []string `json:"serial_tail"`
			}
		}
	}
	jsonOf(t, home, &rec, "guest", "install", "f", "--status")
	if rec.State != "failed" || len(rec.Phases) != 1 || rec.Phases[0].Result != "failed" || !strings.Contains(rec.Error, "phase 1") {
		t.Fatalf("failed install status: %+v", rec)
	}
	if s := statusOf(t, home, "f"); s.State != "stopped" {
		t.Fatalf("after a failed install the guest is %s", s.State)
	}
	var def struct {
		Install *struct {
			VCPUs int    `json:"vcpus"`
			By    string `json:"by"`
		} `json:"install"`
	}
	jsonOf(t, home, &def, "guest", "show", "f")
	if def.Install == nil || def.Install.VCPUs != 2 || def.Install.By != "installed" {
		t.Errorf("after a failed phase 1 the earlier install record is %+v", def.Install)
	}
	fails(t, home, 7, []string{"failed", "--media"}, "guest", "install", "f")
}

// --unattend puts the answer file on a CD of its own as autounattend.xml
// in a second CD-ROM drive, where Windows Setup looks for it: read back
// from the image's Joliet tree (what Windows reads) and its ISO9660 tree
// by xorriso. XP-era Setup, which reads only a floppy, is refused, and
// nothing changes.
func TestInstallWithAnAnswerFile(t *testing.T) {
	k := linuxKit(t)
	home := shortHome(t)
	installCD(t, home, k, boottest.ModeInstall, "installer")
	answer := filepath.Join(t.TempDir(), "my answers.xml")
	body := "<unattend xmlns=\"urn:schemas-microsoft-com:unattend\"/>\n"
	if err := os.WriteFile(answer, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "volume", "create", "xp-sys", "--size", "16M")
	ok(t, home, "guest", "define", "xp", "--disk", "xp-sys", "--memory", "256", "--os", "winxp", "--driver", "qemu")
	before := snapshotState(t, home)
	fails(t, home, 8, []string{"WINNT.SIF", "floppy", "I386"}, "guest", "install", "xp", "--media", "installer", "--xp", "--unattend", answer)
	if after := snapshotState(t, home); after != before {
		t.Fatalf("a refused install changed the home:\n%s\n---\n%s", before, after)
	}

	ok(t, home, "volume", "create", "w-sys", "--size", "64M")
	ok(t, home, "guest", "define", "w", "--disk", "w-sys", "--memory", "256", "--os", "windows", "--driver", "qemu")
	ok(t, home, "guest", "install", "w", "--media", "installer", "--unattend", answer, "--phase-timeout", bootTimeout.String())
	var g struct {
		Disks []struct {
			Vdev, Media string
			CDROM       bool
		}
	}
	jsonOf(t, home, &g, "guest", "show", "w")
	if len(g.Disks) != 3 || g.Disks[2].Vdev != "hdd" || g.Disks[2].Media != "w-unattend-1" || !g.Disks[2].CDROM {
		t.Fatalf("the answer file CD in the guest: %+v", g.Disks)
	}
	var m struct{ Path string }
	jsonOf(t, home, &m, "iso", "info", "w-unattend-1")
	joliet := sh(t, "xorriso", "-read_fs", "norock", "-indev", m.Path, "-find", "/", "-type", "f")
	if !strings.Contains(joliet, "'/autounattend.xml'") {
		t.Fatalf("Joliet tree of the answer file CD:\n%s", joliet)
	}
	out := filepath.Join(t.TempDir(), "x")
	sh(t, "xorriso", "-osirrox", "on", "-read_fs", "norock", "-indev", m.Path, "-extract", "/autounattend.xml", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != body {
		t.Fatalf("the answer file read back: %q %v", b, err)
	}
}
