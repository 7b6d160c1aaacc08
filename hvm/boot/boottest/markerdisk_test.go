package boottest_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// kitBootTimeout bounds every boot: a TCG boot of the Linux guest takes
// about 5 s, of a marker disk well under 1 s; a loaded 2-core machine is
// slower, a hung guest never ends.
const kitBootTimeout = 2 * time.Minute

// kitBoot boots QEMU (pc machine, TCG, no defaults, no reboot, COM1 to a
// file) with args until the guest powers off, logs how long it took and
// returns what the guest printed on COM1.
func kitBoot(t *testing.T, name string, args ...string) string {
	t.Helper()
	serial := filepath.Join(t.TempDir(), name+".serial")
	ctx, cancel := context.WithTimeout(context.Background(), kitBootTimeout)
	defer cancel()
	argv := append([]string{"-machine", "pc", "-accel", "tcg", "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
		"-serial", "file:" + serial}, args...)
	start := time.Now()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", argv...).CombinedOutput()
	took := time.Since(start)
	got, _ := os.ReadFile(serial)
	if ctx.Err() != nil {
		t.Fatalf("boot %s: the guest did not power off within %v; serial:\n%s", name, kitBootTimeout, got)
	}
	if err != nil {
		t.Fatalf("boot %s: qemu-system-x86_64 %s: %v\n%s\nserial:\n%s", name, strings.Join(argv, " "), err, out, got)
	}
	t.Logf("boot %s: %v", name, took.Round(time.Millisecond))
	return string(got)
}

func rawDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func diskOnly(disk string) []string {
	return []string{"-drive", "file=" + disk + ",format=raw,if=ide,index=0", "-boot", "c"}
}

// A marker disk boots by itself on both of QEMU's PC machines, prints its
// marker line on COM1 and powers the machine off (QEMU exits 0 through
// ACPI, not through a timeout or isa-debug-exit).
func TestMarkerDiskBootsByItselfAndPrintsItsMarker(t *testing.T) {
	disk := rawDisk(t, 64<<20)
	if err := boottest.WriteMarkerDisk(disk, "installed-1", false); err != nil {
		t.Fatal(err)
	}
	if m, err := boottest.ReadDiskMarker(disk); err != nil || m != boottest.InstalledMarker {
		t.Fatalf("ReadDiskMarker = %q, %v", m, err)
	}
	for _, machine := range []string{"pc", "q35"} {
		got := kitBoot(t, "marker-"+machine, append(diskOnly(disk), "-machine", machine)...)
		if !strings.Contains(got, "\n"+boottest.InstalledMarker+"\n") {
			t.Fatalf("%s: no line %q on COM1:\n%q", machine, boottest.InstalledMarker, got)
		}
	}
}

// Booted from a disk without its marker sector, the boot sector says so
// and still powers off.
func TestMarkerBootSectorReportsAnUnreadableMarkerSector(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "short.img")
	if err := os.WriteFile(disk, boottest.MarkerBootSector(), 0o644); err != nil {
		t.Fatal(err)
	}
	got := kitBoot(t, "short-disk", diskOnly(disk)...)
	if !strings.Contains(got, "STRATA-BOOTSECTOR: cannot read the marker sector") || strings.Contains(got, boottest.MarkerPrefix) {
		t.Fatalf("COM1:\n%q", got)
	}
}

func TestMarkerDiskRefusesBadMarkersAndReadsOnlyMarkerDisks(t *testing.T) {
	for _, bad := range []string{"two\nlines", strings.Repeat("x", 500), "nul\x00"} {
		if _, err := boottest.MarkerSector(bad, false); err == nil {
			t.Errorf("MarkerSector(%q) accepted", bad)
		}
	}
	s := boottest.MarkerBootSector()
	if len(s) != 512 || !bytes.Equal(s[510:], []byte{0x55, 0xaa}) {
		t.Fatalf("boot sector of %d bytes ending % x", len(s), s[510:])
	}
	zero := rawDisk(t, 1<<20)
	if m, err := boottest.ReadDiskMarker(zero); err == nil {
		t.Fatalf("an empty disk read as marker %q", m)
	}
}
