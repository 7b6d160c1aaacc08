// Package boottest helps tests boot real guests quickly: hand-made
// 512-byte boot sectors that print a marker on COM1 and then power off,
// reboot, wait for the ACPI power button or loop for ever. Under QEMU TCG
// such a guest prints its marker in well under a second.
package boottest

import (
	"os"

	"github.com/strata-vm/strata/hvm"
)

// Action is what a boot sector does after printing its marker.
type Action int

// Actions.
const (
	// Halt stops the CPU with interrupts off: the guest ignores the ACPI
	// power button and never ends by itself.
	Halt Action = iota
	// PowerOff powers the machine off through ACPI (S5 on QEMU's pc
	// machine, PM base 0x600 as SeaBIOS sets it): QEMU sees
	// guest-shutdown.
	PowerOff
	// Reboot resets the machine through the keyboard controller
	// (out 0x64, 0xfe): QEMU sees guest-reset.
	Reboot
	// PowerButton waits for the ACPI power button (PM1 status bit 8,
	// polled after every timer tick) and then powers off: a guest that
	// shuts down when asked.
	PowerButton
	// DebugExit writes 0x10 to isa-debug-exit at 0xf4 (QEMU exits with
	// status 33; needs -device isa-debug-exit,iobase=0xf4,iosize=0x04).
	DebugExit
	// Flood writes the marker again and again, for ever, as fast as the
	// CPU goes: a guest flooding its serial port.
	Flood
)

// BootSector returns a 512-byte MBR boot sector that writes marker to
// COM1 (port 0x3f8) and then does then.
func BootSector(marker string, then Action) []byte {
	b := []byte{0xfa}               // cli
	b = append(b, 0xba, 0xf8, 0x03) // mov dx, 0x3f8
	for _, c := range []byte(marker) {
		b = append(b, 0xb0, c, 0xee) // mov al, c; out dx, al
	}
	poweroff := []byte{
		0xba, 0x04, 0x06, // mov dx, 0x604 (PM1a control)
		0xb8, 0x00, 0x20, // mov ax, 0x2000 (SLP_EN, SLP_TYP 0 = S5)
		0xef, // out dx, ax
	}
	switch then {
	case PowerOff:
		b = append(b, poweroff...)
	case Reboot:
		b = append(b, 0xb0, 0xfe, 0xe6, 0x64) // mov al, 0xfe; out 0x64, al
	case PowerButton:
		b = append(b,
			0xba, 0x02, 0x06, // mov dx, 0x602 (PM1 enable)
			0xb8, 0x00, 0x01, // mov ax, 0x100 (power button)
			0xef, // out dx, ax
			0xfb, // sti: the BIOS timer wakes hlt
			// wait:
			0xf4,             // hlt
			0xba, 0x00, 0x06, // mov dx, 0x600 (PM1 status)
			0xed,             // in ax, dx
			0xa9, 0x00, 0x01, // test ax, 0x100
			0x74, 0xf6, // jz wait
			0xfa, // cli
		)
		b = append(b, poweroff...)
	case DebugExit:
		b = append(b, 0xba, 0xf4, 0x00, 0xb0, 0x10, 0xee) // mov dx, 0xf4; mov al, 0x10; out dx, al
	case Flood:
		rel := 4 - (len(b) + 3)                              // back to the marker's first out (after cli; mov dx)
		b = append(b, 0xe9, byte(rel), byte(uint16(rel)>>8)) // jmp near
	}
	b = append(b, 0xfa, 0xf4, 0xeb, 0xfd) // cli; hlt; jmp back to hlt
	if len(b) > 510 {
		panic("boottest: marker too long for a boot sector")
	}
	b = append(b, make([]byte, 510-len(b))...)
	return append(b, 0x55, 0xaa)
}

// WriteDisk writes a raw disk image of 1 MiB at path whose first sector
// is sector.
func WriteDisk(path string, sector []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(sector); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(1 << 20); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Guest returns a minimal definition booting the raw disk at disk: 16 MiB,
// one vCPU, no NICs, VNC on loopback, defaults filled.
func Guest(name, disk string) *hvm.Guest {
	g := &hvm.Guest{
		Name:   name,
		Memory: hvm.Int(16),
		Boot:   "c",
		Disks:  []hvm.Disk{{Path: disk, Vdev: "hda", Format: "raw"}},
	}
	if err := g.FillDefaults(); err != nil {
		panic(err)
	}
	return g
}
