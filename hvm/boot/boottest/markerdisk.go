package boottest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
)

// The marker disk is what the test guest's install mode leaves on its
// target disk: a bootable raw disk whose sector 0 is MarkerBootSector and
// whose sector 1 holds one marker line ("STRATA-MARKER: installed-1\n",
// NUL-padded). Booted by itself, the boot sector reads sector 1 through the
// BIOS, prints it to COM1 and powers the machine off, so a test learns what
// is on a disk from the disk's own boot in well under a second.
const (
	// MarkerPrefix starts every marker line on a marker disk. The Linux
	// guest never prints it: a serial log that holds it came from a disk's
	// own boot.
	MarkerPrefix = "STRATA-MARKER: "
	// InstalledMarker is what a disk installed by the install mode prints
	// when it boots (with the default strata.marker).
	InstalledMarker = MarkerPrefix + "installed-1"
	// BadPatchMarker is what a disk prints after the patch mode ran on it
	// (with the default strata.marker).
	BadPatchMarker = MarkerPrefix + "bad-patch"

	// MarkerWaiting is what a waiting marker disk (WriteMarkerDisk with
	// wait) prints after its marker; it then runs until the ACPI power
	// button is pressed, prints MarkerPowerButton and powers off.
	MarkerWaiting     = "STRATA-BOOTSECTOR: waiting for the power button"
	MarkerPowerButton = "STRATA-BOOTSECTOR: power button pressed"

	markerSectorSize = 512
	// markerWaitFlag in the last byte of the marker sector makes the disk
	// wait for the power button instead of powering off at once.
	markerWaitFlag = 'W'
)

// MarkerBootSector is the 512-byte real-mode boot sector of a marker disk.
// It reads sector 1 of the boot drive (INT 13h, CHS 0/0/2, which any
// geometry has), writes a line break and then its bytes up to the first
// NUL to COM1 (0x3f8, waiting for the transmitter as a real UART needs).
// When the sector's last byte is 'W' it prints MarkerWaiting, enables the
// ACPI power button event (PM1a enable, 0x602) and idles in the BIOS's
// INT 15h wait until the button's status bit (PM1a status, 0x600) is set.
// Then it powers off via ACPI (PM1a control at 0x604 with SLP_EN and SLP_TYP 0, which is S5 on
// QEMU's pc and q35 machines as SeaBIOS sets them up); where that does not
// stop the machine it writes 0 to isa-debug-exit (port 0xf4, QEMU exit code
// 1 when that device is present) and halts. A read error prints
// "STRATA-BOOTSECTOR: cannot read the marker sector" instead.
//
// Long by nature: one hand-assembled real-mode program written out as its
// listing, one instruction a line, its labels spanning the whole of it.
func MarkerBootSector() []byte {
	var a realModeAsm
	a.emit(0xfa)             // cli
	a.emit(0x31, 0xc0)       // xor ax,ax
	a.emit(0x8e, 0xd8)       // mov ds,ax
	a.emit(0x8e, 0xc0)       // mov es,ax
	a.emit(0x8e, 0xd0)       // mov ss,ax
	a.emit(0xbc, 0x00, 0x7c) // mov sp,0x7c00
	a.emit(0xfb)             // sti
	a.emit(0xfc)             // cld
	// A line of its own: the BIOS leaves its "Booting from ..." open.
	a.emit(0x52) // push dx: the boot drive in DL, which puts clobbers
	a.emit(0xbe) // mov si,crlf
	a.abs16("crlf")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.emit(0x5a) // pop dx
	// DL still holds the boot drive the BIOS passed.
	a.emit(0xb8, 0x01, 0x02) // mov ax,0x0201: read 1 sector
	a.emit(0xb9, 0x02, 0x00) // mov cx,0x0002: cylinder 0, sector 2
	a.emit(0x30, 0xf6)       // xor dh,dh: head 0
	a.emit(0xbb, 0x00, 0x7e) // mov bx,0x7e00
	a.emit(0xcd, 0x13)       // int 0x13
	a.emit(0x72)             // jc fail
	a.rel8("fail")
	a.emit(0xbe, 0x00, 0x7e) // mov si,0x7e00
	a.emit(0xe8)             // call puts
	a.rel16("puts")
	a.emit(0x80, 0x3e, 0xff, 0x7f, markerWaitFlag) // cmp byte [0x7fff],'W'
	a.emit(0x75)                                   // jne poweroff
	a.rel8("poweroff")
	a.emit(0xbe) // mov si,waitmsg
	a.abs16("waitmsg")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.emit(0xba, 0x02, 0x06) // mov dx,0x602: PM1a enable
	a.emit(0xb8, 0x00, 0x01) // mov ax,0x0100: PWRBTN_EN
	a.emit(0xef)             // out dx,ax
	a.label("idle")
	a.emit(0xb4, 0x86)       // mov ah,0x86: wait CX:DX microseconds (the BIOS halts meanwhile)
	a.emit(0x31, 0xc9)       // xor cx,cx
	a.emit(0xba, 0x50, 0xc3) // mov dx,50000
	a.emit(0xcd, 0x15)       // int 0x15
	a.emit(0xba, 0x00, 0x06) // mov dx,0x600: PM1a status
	a.emit(0xed)             // in ax,dx
	a.emit(0xf6, 0xc4, 0x01) // test ah,1: PWRBTN_STS
	a.emit(0x74)             // jz idle
	a.rel8("idle")
	a.emit(0xbe) // mov si,pressedmsg
	a.abs16("pressedmsg")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.label("poweroff")
	a.emit(0xba, 0x04, 0x06) // mov dx,0x604: PM1a control
	a.emit(0xb8, 0x00, 0x20) // mov ax,0x2000: SLP_EN, SLP_TYP 0 (S5)
	a.emit(0xef)             // out dx,ax
	a.emit(0x30, 0xc0)       // xor al,al
	a.emit(0xe6, 0xf4)       // out 0xf4,al: isa-debug-exit
	a.label("halt")
	a.emit(0xfa, 0xf4) // cli; hlt
	a.emit(0xeb)       // jmp halt
	a.rel8("halt")
	a.label("fail")
	a.emit(0xbe) // mov si,failmsg
	a.abs16("failmsg")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.emit(0xeb) // jmp poweroff
	a.rel8("poweroff")
	// puts: write the NUL-terminated bytes at SI to COM1, stopping at
	// 0x8000 (the end of the marker sector) whatever the sector holds.
	a.label("puts")
	a.emit(0x81, 0xfe, 0x00, 0x80) // cmp si,0x8000
	a.emit(0x73)                   // jae ret
	a.rel8("ret")
	a.emit(0xac)       // lodsb
	a.emit(0x84, 0xc0) // test al,al
	a.emit(0x74)       // jz ret
	a.rel8("ret")
	a.emit(0x88, 0xc4)       // mov ah,al
	a.emit(0xba, 0xfd, 0x03) // mov dx,0x3fd: line status
	a.label("wait")
	a.emit(0xec)       // in al,dx
	a.emit(0xa8, 0x20) // test al,0x20: transmitter holding register empty
	a.emit(0x74)       // jz wait
	a.rel8("wait")
	a.emit(0x88, 0xe0)       // mov al,ah
	a.emit(0xba, 0xf8, 0x03) // mov dx,0x3f8
	a.emit(0xee)             // out dx,al
	a.emit(0xeb)             // jmp puts
	a.rel8("puts")
	a.label("ret")
	a.emit(0xc3) // ret
	a.label("waitmsg")
	a.emit([]byte(MarkerWaiting + "\r\n\x00")...)
	a.label("pressedmsg")
	a.emit([]byte(MarkerPowerButton + "\r\n\x00")...)
	a.label("failmsg") // no NUL: it ends in crlf's bytes
	a.emit([]byte("STRATA-BOOTSECTOR: cannot read the marker sector")...)
	a.label("crlf")
	a.emit('\r', '\n', 0)
	return a.sector(0x7c00)
}

// MarkerSector is sector 1 of a marker disk holding MarkerPrefix+value;
// with wait, the disk waits for the ACPI power button after printing it.
func MarkerSector(value string, wait bool) ([]byte, error) {
	line := MarkerPrefix + value + "\n"
	if len(line) >= markerSectorSize-1 || strings.ContainsAny(value, "\x00\n") {
		return nil, fmt.Errorf("marker %q: must be one line of under %d bytes", value, markerSectorSize-len(MarkerPrefix)-2)
	}
	s := make([]byte, markerSectorSize)
	copy(s, line)
	if wait {
		s[markerSectorSize-1] = markerWaitFlag
	}
	return s, nil
}

// WriteMarkerDisk makes path (created if missing, never shrunk) a marker
// disk printing MarkerPrefix+value when it boots (and with wait, running
// until the ACPI power button): what the install mode writes, for tests
// that need an installed disk without booting Linux.
func WriteMarkerDisk(path, value string, wait bool) error {
	ms, err := MarkerSector(value, wait)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(append(MarkerBootSector(), ms...), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadDiskMarker returns the marker line of a raw marker disk (without its
// newline), or an error saying what the disk holds instead.
func ReadDiskMarker(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 2*markerSectorSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(b[:markerSectorSize], MarkerBootSector()) {
		return "", fmt.Errorf("%s: sector 0 is not the marker boot sector", path)
	}
	line, _, _ := bytes.Cut(b[markerSectorSize:], []byte{'\n'})
	if !bytes.HasPrefix(line, []byte(MarkerPrefix)) {
		return "", fmt.Errorf("%s: sector 1 holds no marker line", path)
	}
	return string(line), nil
}

// realModeAsm is just enough of an assembler to keep the boot sector
// readable: bytes with labels and jump fixups.
type realModeAsm struct {
	code   []byte
	labels map[string]int
	fixups []asmFixup
}

type asmFixup struct {
	at    int
	label string
	kind  int // 1: rel8, 2: rel16, 3: abs16
}

func (a *realModeAsm) emit(b ...byte) { a.code = append(a.code, b...) }

func (a *realModeAsm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.code)
}

func (a *realModeAsm) rel8(l string) {
	a.fixups = append(a.fixups, asmFixup{len(a.code), l, 1})
	a.emit(0)
}

func (a *realModeAsm) rel16(l string) {
	a.fixups = append(a.fixups, asmFixup{len(a.code), l, 2})
	a.emit(0, 0)
}

func (a *realModeAsm) abs16(l string) {
	a.fixups = append(a.fixups, asmFixup{len(a.code), l, 3})
	a.emit(0, 0)
}

// sector resolves the fixups for code loaded at origin and returns the
// 512-byte sector with the 0x55 0xaa signature. A bad label or a jump out
// of range is a bug in this file: it panics.
func (a *realModeAsm) sector(origin int) []byte {
	for _, f := range a.fixups {
		target, ok := a.labels[f.label]
		if !ok {
			panic("boottest: boot sector label " + f.label + " undefined")
		}
		switch f.kind {
		case 1:
			d := target - (f.at + 1)
			if d < -128 || d > 127 {
				panic("boottest: boot sector jump to " + f.label + " out of range")
			}
			a.code[f.at] = byte(int8(d))
		case 2:
			binary.LittleEndian.PutUint16(a.code[f.at:], uint16(int16(target-(f.at+2))))
		case 3:
			binary.LittleEndian.PutUint16(a.code[f.at:], uint16(origin+target))
		}
	}
	if len(a.code) > 510 {
		panic("boottest: boot sector code too long")
	}
	s := make([]byte, 512)
	copy(s, a.code)
	s[510], s[511] = 0x55, 0xaa
	return s
}
