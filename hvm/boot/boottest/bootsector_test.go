package boottest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/qmp"
)

// Each boot sector does what it says under the QEMU command line alone.
func TestBootSectorsUnderQEMU(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	for _, tc := range []struct {
		name   string
		action boottest.Action
		exits  bool
		code   int
	}{
		{"poweroff", boottest.PowerOff, true, 0},
		{"reboot", boottest.Reboot, true, 0}, // -no-reboot turns the reset into an exit
		{"debug-exit", boottest.DebugExit, true, 33},
		{"halt", boottest.Halt, false, 0},
		{"power-button", boottest.PowerButton, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := filepath.Join(dir, "disk.raw")
			if err := boottest.WriteDisk(disk, boottest.BootSector("MARK-"+tc.name+"\r\n", tc.action)); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "qmp.sock")
			cmd := exec.Command("qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "16", "-display", "none",
				"-monitor", "none", "-serial", "file:"+filepath.Join(dir, "serial"), "-no-reboot",
				"-drive", "file="+disk+",format=raw,if=ide", "-boot", "c",
				"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-qmp", "unix:"+sock+",server=on,wait=off")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer cmd.Process.Kill()
			// A guest that ends must end, one that stays must have
			// printed its marker and still run: waits are bounds (a
			// loaded machine runs TCG slowly), not the expected time.
			exited := func(err error) {
				var ee *exec.ExitError
				code := 0
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				if !tc.exits || code != tc.code {
					t.Fatalf("QEMU exited (%v), want exits=%v code %d", err, tc.exits, tc.code)
				}
			}
			if tc.exits {
				select {
				case err := <-done:
					exited(err)
				case <-time.After(time.Minute):
					t.Fatal("QEMU still runs after a minute")
				}
			} else {
				for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if b, _ := os.ReadFile(filepath.Join(dir, "serial")); strings.Contains(string(b), "MARK-"+tc.name) {
						break
					}
				}
				select {
				case err := <-done:
					exited(err)
				case <-time.After(200 * time.Millisecond):
				}
			}
			b, _ := os.ReadFile(filepath.Join(dir, "serial"))
			if !strings.Contains(string(b), "MARK-"+tc.name) {
				t.Fatalf("serial: %q", b)
			}
			if tc.action != boottest.PowerButton {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := qmp.Dial(ctx, sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Execute(ctx, "system_powerdown", nil); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Fatal("the power button did not power the guest off")
			}
		})
	}
}
