package boottest_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// kit is the Linux test guest from the shared cache (DefaultCacheDir), so
// that test runs after the first download nothing. A failed download fails
// the test: the kit needs Debian's mirror once, on CI too.
func kit(t *testing.T) *boottest.Kit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	k, err := boottest.LinuxKit(ctx, "")
	if err != nil {
		t.Fatalf("building the Linux test guest: %v", err)
	}
	t.Logf("test guest kit (%s %s, busybox %s) built=%t in %v", k.KernelPackage, k.KernelVersion, k.BusyboxVersion, k.Built, time.Since(start).Round(time.Millisecond))
	return k
}

// strata builds cmd/strata into the test's temporary directory.
func strata(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "strata")
	if out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", bin, "github.com/strata-vm/strata/cmd/strata").CombinedOutput(); err != nil {
		t.Fatalf("build strata: %v\n%s", err, out)
	}
	return bin
}

func cdAndDisk(iso, disk string) []string {
	return []string{"-drive", "file=" + disk + ",format=raw,if=ide,index=0", "-drive", "file=" + iso + ",format=raw,if=ide,index=2,media=cdrom", "-boot", "d"}
}

// linuxSays fails unless the Linux guest printed want and nothing failed;
// it never prints the marker prefix, so the disk's own boot is what shows
// a marker.
func linuxSays(t *testing.T, serial, want string) {
	t.Helper()
	if !strings.Contains(serial, want) || strings.Contains(serial, boottest.GuestFailed) || strings.Contains(serial, boottest.MarkerPrefix) {
		t.Fatalf("want %q from the Linux guest; serial:\n%s", want, serial)
	}
}

// The two-phase install with the real guest: strata's own
// `iso build --boot` makes the install CD; booted from it, the guest makes
// a fresh disk bootable and powers off; the disk then boots by itself (no
// CD, no kernel) and prints the installed marker. The bad patch, from a CD
// made by xorriso, overwrites the marker, and the disk's next boot shows it.
func TestInstallFromStrataBuiltCDMakesADiskThatBootsByItself(t *testing.T) {
	k := kit(t)
	ctx := context.Background()
	work := t.TempDir()
	src := filepath.Join(work, "install-src")
	if err := k.ISOSource(boottest.ModeInstall, src); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	iso, err := boottest.StrataISO(ctx, strata(t), filepath.Join(work, "home"), src, "install")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("strata iso build: %v", time.Since(start).Round(time.Millisecond))

	disk := rawDisk(t, 256<<20)
	linuxSays(t, kitBoot(t, "install-from-cd", cdAndDisk(iso, disk)...), boottest.InstallDone)
	if m, err := boottest.ReadDiskMarker(disk); err != nil || m != boottest.InstalledMarker {
		t.Fatalf("after the install the disk holds %q, %v", m, err)
	}
	if got := kitBoot(t, "installed-disk", diskOnly(disk)...); !strings.Contains(got, boottest.InstalledMarker+"\n") {
		t.Fatalf("the installed disk did not print %q when booted by itself:\n%s", boottest.InstalledMarker, got)
	}

	patchISO := filepath.Join(work, "patch.iso")
	if err := k.XorrisoISO(ctx, boottest.ModePatch, patchISO); err != nil {
		t.Fatal(err)
	}
	linuxSays(t, kitBoot(t, "patch-from-cd", cdAndDisk(patchISO, disk)...), boottest.PatchApplied)
	got := kitBoot(t, "patched-disk", diskOnly(disk)...)
	if !strings.Contains(got, boottest.BadPatchMarker+"\n") || strings.Contains(got, boottest.InstalledMarker) {
		t.Fatalf("the patched disk did not print only %q:\n%s", boottest.BadPatchMarker, got)
	}
}

// Install refuses a disk that holds something else (it would be the wrong
// disk), and leaves it as it was; patch refuses a disk with no installed
// guest.
func TestGuestRefusesDisksItDidNotInstall(t *testing.T) {
	k := kit(t)
	disk := rawDisk(t, 64<<20)
	data := []byte("somebody's partition table")
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, mode := range []string{boottest.ModeInstall, boottest.ModePatch} {
		got := kitBoot(t, mode+"-foreign-disk", append(k.QEMUArgs(mode), "-drive", "file="+disk+",format=raw,if=virtio")...)
		if !strings.Contains(got, boottest.GuestFailed) || strings.Contains(got, boottest.InstallDone) || strings.Contains(got, boottest.PatchApplied) {
			t.Fatalf("%s on a foreign disk:\n%s", mode, got)
		}
		if b, _ := os.ReadFile(disk); !strings.HasPrefix(string(b), string(data)) || strings.Contains(string(b[:1024]), boottest.MarkerPrefix) {
			t.Fatalf("%s changed a foreign disk", mode)
		}
	}
}

// Check mode prints the marker of the disk it finds (booted directly with
// -kernel, on a virtio disk), with a marker of the caller's choosing.
func TestCheckModePrintsTheDiskMarker(t *testing.T) {
	k := kit(t)
	disk := rawDisk(t, 64<<20)
	if err := boottest.WriteMarkerDisk(disk, "golden-7", false); err != nil {
		t.Fatal(err)
	}
	got := kitBoot(t, "check", append(k.QEMUArgs(boottest.ModeCheck), "-drive", "file="+disk+",format=raw,if=virtio")...)
	if !strings.Contains(got, boottest.CheckPrefix+"golden-7") || strings.Contains(got, boottest.GuestFailed) {
		t.Fatalf("check:\n%s", got)
	}
}

// Wait mode powers the guest off when the ACPI power button is pressed
// (QMP system_powerdown), the path `guest stop` takes first.
func TestWaitModePowersOffOnTheACPIPowerButton(t *testing.T) {
	k := kit(t)
	g := kitStart(t, "wait-mode", k.QEMUArgs(boottest.ModeWait)...)
	g.waitFor(t, boottest.WaitingForPowerButton)
	g.pressPowerButton(t)
	if got := g.wait(t); !strings.Contains(got, boottest.PowerButtonPressed) {
		t.Fatalf("no %q:\n%s", boottest.PowerButtonPressed, got)
	}
}

// Install can end in a reboot, as an installer's first phase does (with
// -no-reboot QEMU then exits), and can leave a disk that, booted, prints
// its marker and runs until the power button is pressed.
func TestInstallEndingInARebootLeavesADiskThatRunsUntilThePowerButton(t *testing.T) {
	k := kit(t)
	disk := rawDisk(t, 64<<20)
	got := kitBoot(t, "install-reboot", append(k.QEMUArgs(boottest.ModeInstall, boottest.DiskWaits, boottest.EndWithReboot),
		"-drive", "file="+disk+",format=raw,if=ide,index=0")...)
	linuxSays(t, got, boottest.InstallDone)
	if !strings.Contains(got, "strata-testguest: rebooting") || !strings.Contains(got, "reboot: Restarting system") {
		t.Fatalf("the install did not end in a reboot:\n%s", got)
	}
	g := kitStart(t, "waiting-disk", diskOnly(disk)...)
	g.waitFor(t, boottest.MarkerWaiting)
	if !strings.Contains(g.serial(), boottest.InstalledMarker+"\r\n"+boottest.MarkerWaiting) && !strings.Contains(g.serial(), boottest.InstalledMarker+"\n"+boottest.MarkerWaiting) {
		t.Fatalf("no marker before waiting:\n%q", g.serial())
	}
	time.Sleep(300 * time.Millisecond)
	g.pressPowerButton(t)
	if got := g.wait(t); !strings.Contains(got, boottest.MarkerPowerButton) {
		t.Fatalf("no %q:\n%s", boottest.MarkerPowerButton, got)
	}
}

// startedGuest is a QEMU started in the background with a QMP socket.
type startedGuest struct {
	name, serialPath, qmp string
	start, pressed        time.Time
	exited                chan error
	cancel                context.CancelFunc
}

func kitStart(t *testing.T, name string, args ...string) *startedGuest {
	t.Helper()
	dir := t.TempDir()
	g := &startedGuest{name: name, serialPath: filepath.Join(dir, "serial"), qmp: filepath.Join(dir, "qmp.sock"), exited: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), kitBootTimeout)
	g.cancel = cancel
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", append([]string{"-machine", "pc", "-accel", "tcg", "-m", "256", "-display", "none",
		"-nodefaults", "-no-reboot", "-serial", "file:" + g.serialPath, "-qmp", "unix:" + g.qmp + ",server=on,wait=off"}, args...)...)
	g.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exited <- cmd.Wait() }()
	return g
}

func (g *startedGuest) serial() string {
	b, _ := os.ReadFile(g.serialPath)
	return string(b)
}

// waitFor waits until the guest printed line, failing if it exits or
// reports a failure first.
func (g *startedGuest) waitFor(t *testing.T, line string) {
	t.Helper()
	for {
		s := g.serial()
		if strings.Contains(s, line) {
			t.Logf("boot %s: %q after %v", g.name, line, time.Since(g.start).Round(time.Millisecond))
			return
		}
		if strings.Contains(s, boottest.GuestFailed) {
			t.Fatalf("guest %s failed:\n%s", g.name, s)
		}
		select {
		case err := <-g.exited:
			t.Fatalf("QEMU (%s) exited (%v) before %q:\n%s", g.name, err, line, g.serial())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (g *startedGuest) pressPowerButton(t *testing.T) {
	t.Helper()
	select {
	case err := <-g.exited:
		t.Fatalf("QEMU (%s) exited (%v) before the power button:\n%s", g.name, err, g.serial())
	default:
	}
	g.pressed = time.Now()
	qmpPowerdown(t, g.qmp)
}

// wait waits for QEMU to exit by itself and returns the serial output.
func (g *startedGuest) wait(t *testing.T) string {
	t.Helper()
	if err := <-g.exited; err != nil {
		t.Fatalf("QEMU (%s): %v\n%s", g.name, err, g.serial())
	}
	t.Logf("boot %s: powered off %v after the power button", g.name, time.Since(g.pressed).Round(time.Millisecond))
	return g.serial()
}

// qmpPowerdown presses the power button over QMP, the plain way: greeting,
// capabilities, command.
func qmpPowerdown(t *testing.T, sock string) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("qmp greeting: %v", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := c.Write([]byte(`{"execute":"` + cmd + `"}` + "\n")); err != nil {
			t.Fatal(err)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("qmp %s: %v", cmd, err)
			}
			if strings.Contains(line, `"return"`) {
				break
			}
			if strings.Contains(line, `"error"`) {
				t.Fatalf("qmp %s: %s", cmd, line)
			}
		}
	}
}

// Two processes building the kit into one empty cache at once both get
// the same kit (built in temporary directories and renamed into place);
// the next call finds it without building.
func TestLinuxKitBuildsOnceIntoASharedCache(t *testing.T) {
	cache := t.TempDir()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	kits := make([]*boottest.Kit, 2)
	errs := make([]error, 2)
	for i := range kits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kits[i], errs[i] = boottest.LinuxKit(ctx, cache)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("building the Linux test guest: %v", err)
		}
	}
	t.Logf("two concurrent builds from scratch: %v", time.Since(start).Round(time.Millisecond))
	if kits[0].Dir != kits[1].Dir || !kits[0].Built && !kits[1].Built {
		t.Fatalf("kits %+v and %+v", kits[0], kits[1])
	}
	start = time.Now()
	again, err := boottest.LinuxKit(ctx, cache)
	if err != nil || again.Built || again.Dir != kits[0].Dir {
		t.Fatalf("cached kit %+v, %v", again, err)
	}
	t.Logf("cached: %v", time.Since(start).Round(time.Millisecond))
	ents, _ := os.ReadDir(cache)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || !slices.Contains(names, filepath.Base(kits[0].Dir)) || !slices.Contains(names, "apt-resolved.json") {
		t.Fatalf("cache holds %v, want the kit and apt-resolved.json only", names)
	}
	// Modules come after what they depend on.
	at := func(m string) int { return slices.Index(again.Modules, m) }
	for _, pair := range [][2]string{{"libata.ko", "ata_piix.ko"}, {"scsi_mod.ko", "sd_mod.ko"}, {"cdrom.ko", "sr_mod.ko"}, {"virtio.ko", "virtio_blk.ko"}} {
		if at(pair[0]) < 0 || at(pair[1]) < 0 || at(pair[0]) > at(pair[1]) {
			t.Fatalf("module order %v: %s must come before %s", again.Modules, pair[0], pair[1])
		}
	}
}
