package boottest

// The counter guest: a test guest for restore points of running guests. Its
// boot sector counts for ever and writes every value to a record on two
// disks, first disk A (BIOS drive 0x80, the boot disk) and then disk B
// (0x81), so that the pair of disks taken at one instant satisfies
// A == B or A == B+1 (CounterConsistent). Any other pair was taken at two
// different instants: a torn restore point.
//
// The record (CounterRecordLBA, one 512-byte sector on both disks):
//
//	offset 0   9 bytes  CounterMagic ("STRATACNT")
//	offset 9   1 byte   the disk it was written to: 'A' or 'B'
//	offset 10  6 bytes  zero
//	offset 16  8 bytes  the counter, little-endian uint64
//	offset 24  488 bytes zero
//
// On COM1 (0x3f8) the guest prints, each line ending in "\r\n":
//
//	COUNTER A=<16 hex digits> B=<16 hex digits>   once, at boot: the records found (0 without one)
//	COUNT <16 hex digits>                          the value now on both disks, at most once per BIOS tick (about 55 ms)
//	COUNTER ERROR read|write drive=<hex> status=<hex>   a failed INT 13h; the guest then halts
//
// It counts on from max(A, B), so after a rollback the first COUNT value
// is just above the point's counter, and a rollback to an older point shows
// as a restart from an older value.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/hvm"
)

const (
	// CounterMagic starts the counter record.
	CounterMagic = "STRATACNT"
	// CounterRecordLBA is the sector that holds the record on both disks
	// (byte offset CounterRecordLBA*512); sector 0 of disk A is the
	// program, sector 0 of disk B is never touched.
	CounterRecordLBA = 1
	// CounterDiskSize is the size WriteCounterDisks gives a new disk.
	CounterDiskSize = 1 << 20

	counterSectorSize = 512
	counterValueAt    = 16 // offset of the counter in the record
	counterDiskAt     = 9  // offset of the disk letter in the record

	// Where the program keeps its data (all below 0x9000, far from the
	// BIOS): the records read from A and B at boot, the record it writes,
	// the BIOS tick of the last COUNT line.
	counterBufA     = 0x7e00
	counterBufB     = 0x8000
	counterRec      = 0x8200
	counterLastTick = 0x8400
	biosTicks       = 0x046c // BIOS data area: timer ticks since midnight, 18.2 a second
)

// CounterProgram is the 512-byte boot sector of disk A (its LBA 0). It
// reads the records of drives 0x80 and 0x81 by INT 13h (CHS 0/0/2, which
// every geometry has), prints the COUNTER line, and then loops: add one to
// the counter, write the record to 0x80, then to 0x81 (INT 13h AH=03h; each
// write has completed in QEMU when the call returns), and print a COUNT line
// when the BIOS tick count has changed since the last one. A failed read or
// write prints a COUNTER ERROR line and halts.
//
// Long by nature: one hand-assembled real-mode program written out as its
// listing, one instruction a line, its labels spanning the whole of it.
func CounterProgram() []byte {
	var a realModeAsm
	le := func(v int) (byte, byte) { return byte(v), byte(v >> 8) }
	addr := func(op []byte, v int) { lo, hi := le(v); a.emit(append(op, lo, hi)...) }

	a.emit(0xfa)             // cli
	a.emit(0x31, 0xc0)       // xor ax,ax
	a.emit(0x8e, 0xd8)       // mov ds,ax
	a.emit(0x8e, 0xc0)       // mov es,ax
	a.emit(0x8e, 0xd0)       // mov ss,ax
	a.emit(0xbc, 0x00, 0x7c) // mov sp,0x7c00
	a.emit(0xfb)             // sti: the BIOS timer ticks while we count
	a.emit(0xfc)             // cld
	a.emit(0xbe)             // mov si,crlf: the BIOS leaves its "Booting from ..." open
	a.abs16("crlf")
	a.emit(0xe8) // call puts
	a.rel16("puts")

	// The record to write: zeros, the magic, the counter at +16.
	addr([]byte{0xbf}, counterRec) // mov di,rec
	a.emit(0xb9, 0x00, 0x01)       // mov cx,256
	a.emit(0x31, 0xc0)             // xor ax,ax
	a.emit(0xf3, 0xab)             // rep stosw
	a.emit(0xbe)                   // mov si,magic
	a.abs16("magic")
	addr([]byte{0xbf}, counterRec)              // mov di,rec
	a.emit(0xb9, byte(len(CounterMagic)), 0x00) // mov cx,len(magic)
	a.emit(0xf3, 0xa4)                          // rep movsb

	// The records on both disks.
	a.emit(0xb2, 0x80)              // mov dl,0x80
	addr([]byte{0xbb}, counterBufA) // mov bx,bufA
	a.emit(0xe8)                    // call readrec
	a.rel16("readrec")
	a.emit(0xb2, 0x81)              // mov dl,0x81
	addr([]byte{0xbb}, counterBufB) // mov bx,bufB
	a.emit(0xe8)                    // call readrec
	a.rel16("readrec")

	a.emit(0xbe) // mov si,msgA
	a.abs16("msgA")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	addr([]byte{0xbe}, counterBufA+counterValueAt) // mov si,bufA+16
	a.emit(0xe8)                                   // call hex64
	a.rel16("hex64")
	a.emit(0xbe) // mov si,msgB
	a.abs16("msgB")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	addr([]byte{0xbe}, counterBufB+counterValueAt) // mov si,bufB+16
	a.emit(0xe8)                                   // call hex64
	a.rel16("hex64")
	a.emit(0xbe) // mov si,crlf
	a.abs16("crlf")
	a.emit(0xe8) // call puts
	a.rel16("puts")

	// Count on from max(A, B): EDX:EAX = A; B wins when greater.
	addr([]byte{0x66, 0xa1}, counterBufA+counterValueAt)         // mov eax,[bufA+16]
	addr([]byte{0x66, 0x8b, 0x16}, counterBufA+counterValueAt+4) // mov edx,[bufA+20]
	addr([]byte{0x66, 0x3b, 0x16}, counterBufB+counterValueAt+4) // cmp edx,[bufB+20]
	a.emit(0x77)                                                 // ja useA
	a.rel8("useA")
	a.emit(0x72) // jb useB
	a.rel8("useB")
	addr([]byte{0x66, 0x3b, 0x06}, counterBufB+counterValueAt) // cmp eax,[bufB+16]
	a.emit(0x73)                                               // jae useA
	a.rel8("useA")
	a.label("useB")
	addr([]byte{0x66, 0xa1}, counterBufB+counterValueAt)         // mov eax,[bufB+16]
	addr([]byte{0x66, 0x8b, 0x16}, counterBufB+counterValueAt+4) // mov edx,[bufB+20]
	a.label("useA")
	addr([]byte{0x66, 0xa3}, counterRec+counterValueAt)         // mov [rec+16],eax
	addr([]byte{0x66, 0x89, 0x16}, counterRec+counterValueAt+4) // mov [rec+20],edx
	addr([]byte{0xa1}, biosTicks)                               // mov ax,[ticks]
	addr([]byte{0xa3}, counterLastTick)                         // mov [lasttick],ax

	a.label("loop")
	addr([]byte{0x66, 0x83, 0x06}, counterRec+counterValueAt) // add dword [rec+16],1
	a.emit(0x01)
	addr([]byte{0x66, 0x83, 0x16}, counterRec+counterValueAt+4) // adc dword [rec+20],0
	a.emit(0x00)
	addr([]byte{0xc6, 0x06}, counterRec+counterDiskAt) // mov byte [rec+9],'A'
	a.emit('A')
	a.emit(0xb2, 0x80) // mov dl,0x80
	a.emit(0xe8)       // call writerec
	a.rel16("writerec")
	addr([]byte{0xc6, 0x06}, counterRec+counterDiskAt) // mov byte [rec+9],'B'
	a.emit('B')
	a.emit(0xb2, 0x81) // mov dl,0x81
	a.emit(0xe8)       // call writerec
	a.rel16("writerec")
	addr([]byte{0xa1}, biosTicks)             // mov ax,[ticks]
	addr([]byte{0x3b, 0x06}, counterLastTick) // cmp ax,[lasttick]
	a.emit(0x74)                              // je loop
	a.rel8("loop")
	addr([]byte{0xa3}, counterLastTick) // mov [lasttick],ax
	a.emit(0xbe)                        // mov si,msgCount
	a.abs16("msgCount")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	addr([]byte{0xbe}, counterRec+counterValueAt) // mov si,rec+16
	a.emit(0xe8)                                  // call hex64
	a.rel16("hex64")
	a.emit(0xbe) // mov si,crlf
	a.abs16("crlf")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.emit(0xeb) // jmp loop
	a.rel8("loop")

	// readrec: read the record of drive DL into BX; without the magic,
	// zero its counter (a fresh disk counts as 0).
	a.label("readrec")
	a.emit(0xb8, 0x01, 0x02) // mov ax,0x0201: read 1 sector
	a.emit(0xb9, 0x02, 0x00) // mov cx,0x0002: cylinder 0, sector 2 (LBA 1)
	a.emit(0x30, 0xf6)       // xor dh,dh: head 0
	a.emit(0xcd, 0x13)       // int 0x13
	a.emit(0x72)             // jc readfail
	a.rel8("readfail")
	a.emit(0xbe) // mov si,magic
	a.abs16("magic")
	a.emit(0x89, 0xdf)                          // mov di,bx
	a.emit(0xb9, byte(len(CounterMagic)), 0x00) // mov cx,len(magic)
	a.emit(0xf3, 0xa6)                          // repe cmpsb
	a.emit(0x74)                                // je ret
	a.rel8("readret")
	a.emit(0x8d, 0x7f, counterValueAt) // lea di,[bx+16]
	a.emit(0xb9, 0x04, 0x00)           // mov cx,4
	a.emit(0x31, 0xc0)                 // xor ax,ax
	a.emit(0xf3, 0xab)                 // rep stosw
	a.label("readret")
	a.emit(0xc3) // ret

	// writerec: write the record to drive DL.
	a.label("writerec")
	a.emit(0xb8, 0x01, 0x03)       // mov ax,0x0301: write 1 sector
	a.emit(0xb9, 0x02, 0x00)       // mov cx,0x0002
	a.emit(0x30, 0xf6)             // xor dh,dh
	addr([]byte{0xbb}, counterRec) // mov bx,rec
	a.emit(0xcd, 0x13)             // int 0x13
	a.emit(0x72)                   // jc writefail
	a.rel8("writefail")
	a.emit(0xc3) // ret

	a.label("readfail")
	a.emit(0xbe) // mov si,msgRead
	a.abs16("msgRead")
	a.emit(0xeb) // jmp fail
	a.rel8("fail")
	a.label("writefail")
	a.emit(0xbe) // mov si,msgWrite
	a.abs16("msgWrite")
	// fail: print the message, the drive (DL) and the BIOS status (AH), halt.
	a.label("fail")
	a.emit(0x50) // push ax
	a.emit(0x52) // push dx
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.emit(0x5a)       // pop dx
	a.emit(0x88, 0xd0) // mov al,dl
	a.emit(0xe8)       // call hexbyte
	a.rel16("hexbyte")
	a.emit(0xbe) // mov si,msgStatus
	a.abs16("msgStatus")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.emit(0x58)       // pop ax
	a.emit(0x88, 0xe0) // mov al,ah
	a.emit(0xe8)       // call hexbyte
	a.rel16("hexbyte")
	a.emit(0xbe) // mov si,crlf
	a.abs16("crlf")
	a.emit(0xe8) // call puts
	a.rel16("puts")
	a.label("halt")
	a.emit(0xfa, 0xf4) // cli; hlt
	a.emit(0xeb)       // jmp halt
	a.rel8("halt")

	// hex64: print the little-endian uint64 at SI as 16 hex digits.
	a.label("hex64")
	a.emit(0x83, 0xc6, 0x07) // add si,7
	a.emit(0xb9, 0x08, 0x00) // mov cx,8
	a.label("hexloop")
	a.emit(0x8a, 0x04) // mov al,[si]
	a.emit(0x4e)       // dec si
	a.emit(0xe8)       // call hexbyte
	a.rel16("hexbyte")
	a.emit(0xe2) // loop hexloop
	a.rel8("hexloop")
	a.emit(0xc3) // ret

	// hexbyte: print AL as two hex digits; nibble, then putc, fall through.
	a.label("hexbyte")
	a.emit(0x50)             // push ax
	a.emit(0xc0, 0xe8, 0x04) // shr al,4
	a.emit(0xe8)             // call nibble
	a.rel16("nibble")
	a.emit(0x58) // pop ax
	a.label("nibble")
	a.emit(0x24, 0x0f) // and al,0x0f
	a.emit(0x04, '0')  // add al,'0'
	a.emit(0x3c, '9')  // cmp al,'9'
	a.emit(0x76)       // jbe putc
	a.rel8("putc")
	a.emit(0x04, 'a'-'9'-1) // add al,'a'-'9'-1
	// putc: write AL to COM1 once its transmitter holding register is empty.
	a.label("putc")
	a.emit(0x52)             // push dx
	a.emit(0x50)             // push ax
	a.emit(0xba, 0xfd, 0x03) // mov dx,0x3fd: line status
	a.label("thre")
	a.emit(0xec)       // in al,dx
	a.emit(0xa8, 0x20) // test al,0x20
	a.emit(0x74)       // jz thre
	a.rel8("thre")
	a.emit(0x58)             // pop ax
	a.emit(0xba, 0xf8, 0x03) // mov dx,0x3f8
	a.emit(0xee)             // out dx,al
	a.emit(0x5a)             // pop dx
	a.emit(0xc3)             // ret

	// puts: print the NUL-terminated bytes at SI.
	a.label("puts")
	a.emit(0xac)       // lodsb
	a.emit(0x84, 0xc0) // test al,al
	a.emit(0x74)       // jz putsret
	a.rel8("putsret")
	a.emit(0xe8) // call putc
	a.rel16("putc")
	a.emit(0xeb) // jmp puts
	a.rel8("puts")
	a.label("putsret")
	a.emit(0xc3) // ret

	a.label("magic")
	a.emit([]byte(CounterMagic)...) // no NUL: only compared and copied by length
	a.label("msgA")
	a.emit([]byte("COUNTER A=\x00")...)
	a.label("msgB")
	a.emit([]byte(" B=\x00")...)
	a.label("msgCount")
	a.emit([]byte("COUNT \x00")...)
	a.label("msgRead")
	a.emit([]byte("COUNTER ERROR read drive=\x00")...)
	a.label("msgWrite")
	a.emit([]byte("COUNTER ERROR write drive=\x00")...)
	a.label("msgStatus")
	a.emit([]byte(" status=\x00")...)
	a.label("crlf")
	a.emit('\r', '\n', 0)
	return a.sector(0x7c00)
}

// WriteCounterDisks makes the raw files at pathA and pathB (created when
// missing, grown to CounterDiskSize when smaller, never shrunk) the two
// disks of a fresh counter guest: disk A boots CounterProgram, and both
// hold a record of 0, so the guest starts counting from 0. Disk B's sector
// 0 is left as it is: B need not be bootable.
//
// The records are written rather than left zero so that a qcow2 image
// converted from these files (qemu-img convert) already has the record's
// cluster allocated: QEMU keeps a new cluster's qcow2 metadata in memory
// until a flush, which this guest never sends, so the first write to an
// unallocated cluster is lost when QEMU is killed.
func WriteCounterDisks(pathA, pathB string) error {
	if err := writeCounterDisk(pathA, 'A', CounterProgram()); err != nil {
		return err
	}
	return writeCounterDisk(pathB, 'B', nil)
}

func writeCounterDisk(path string, disk byte, boot []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() < CounterDiskSize {
		err = f.Truncate(CounterDiskSize)
	}
	if err == nil && boot != nil {
		_, err = f.WriteAt(boot, 0)
	}
	if err == nil {
		rec := make([]byte, counterSectorSize)
		copy(rec, CounterMagic)
		rec[counterDiskAt] = disk
		_, err = f.WriteAt(rec, CounterRecordLBA*counterSectorSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write counter disk %s: %w", path, err)
	}
	return nil
}

// CounterGuest returns a minimal definition of a counter guest (as Guest
// does for one disk): disk A as hda (BIOS drive 0x80, booted) and disk B as
// hdb (0x81), both of format ("raw" or "qcow2"); 16 MiB, one vCPU, no
// NICs, defaults filled. Add a Serial spec to see its lines.
func CounterGuest(name, diskA, diskB, format string) *hvm.Guest {
	g := &hvm.Guest{
		Name:   name,
		Memory: hvm.Int(16),
		Boot:   "c",
		Disks: []hvm.Disk{
			{Path: diskA, Vdev: "hda", Format: format},
			{Path: diskB, Vdev: "hdb", Format: format},
		},
	}
	if err := g.FillDefaults(); err != nil {
		panic(err)
	}
	return g
}

// CounterRecord is a record read from a disk.
type CounterRecord struct {
	// Disk is the disk the guest wrote it to: 'A' or 'B'. A record of the
	// wrong letter means the disks were swapped.
	Disk byte
	// Value is the counter.
	Value uint64
}

// ReadCounterRecord reads the record of a raw disk image (for qcow2,
// convert it to raw first, e.g. qemu-img convert -O raw, or read
// CounterRecordLBA with qemu-img dd). ok is false when the disk holds no
// record (a fresh disk: the guest counts it as 0).
func ReadCounterRecord(r io.ReaderAt) (rec CounterRecord, ok bool, err error) {
	b := make([]byte, counterSectorSize)
	if _, err := r.ReadAt(b, CounterRecordLBA*counterSectorSize); err != nil {
		return CounterRecord{}, false, fmt.Errorf("read the counter record: %w", err)
	}
	if !bytes.HasPrefix(b, []byte(CounterMagic)) {
		return CounterRecord{}, false, nil
	}
	rec = CounterRecord{Disk: b[counterDiskAt], Value: binary.LittleEndian.Uint64(b[counterValueAt:])}
	if rec.Disk != 'A' && rec.Disk != 'B' {
		return CounterRecord{}, false, fmt.Errorf("counter record names disk %q: want 'A' or 'B'", rec.Disk)
	}
	return rec, true, nil
}

// ReadCounter returns the counter on a raw disk image; ok is false (and
// the value 0) when the disk holds no record.
func ReadCounter(r io.ReaderAt) (value uint64, ok bool, err error) {
	rec, ok, err := ReadCounterRecord(r)
	return rec.Value, ok, err
}

// ReadCounterFile is ReadCounterRecord of the raw image at path.
func ReadCounterFile(path string) (CounterRecord, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return CounterRecord{}, false, err
	}
	defer f.Close()
	rec, ok, err := ReadCounterRecord(f)
	if err != nil {
		return rec, ok, fmt.Errorf("%s: %w", path, err)
	}
	return rec, ok, nil
}

// CounterConsistent reports whether counters a (disk A) and b (disk B)
// can have been on the two disks at one instant: the guest writes A before
// B, so A == B (between two values) or A == B+1 (between A's write and
// B's).
func CounterConsistent(a, b uint64) bool { return a == b || a != 0 && a-1 == b }

// CounterLine is one line the counter guest printed on COM1.
type CounterLine struct {
	// Boot marks the line printed at boot ("COUNTER A=... B=..."); A and B
	// are the counters it found on the disks (0 without a record).
	Boot bool
	A, B uint64
	// Count is the value on both disks when a COUNT line was printed.
	Count uint64
}

// ParseCounterLine parses a COUNTER or COUNT line (trailing "\r" and
// spaces ignored). ok is false for any other line, including one cut off
// before its last digit: the guest prints all 16 digits of every value.
func ParseCounterLine(line string) (l CounterLine, ok bool) {
	line = strings.TrimRight(line, "\r\n ")
	if rest, found := strings.CutPrefix(line, "COUNTER A="); found {
		a, b, found := strings.Cut(rest, " B=")
		va, oka := parseCounterHex(a)
		vb, okb := parseCounterHex(b)
		if !found || !oka || !okb {
			return CounterLine{}, false
		}
		return CounterLine{Boot: true, A: va, B: vb}, true
	}
	if rest, found := strings.CutPrefix(line, "COUNT "); found {
		v, ok := parseCounterHex(rest)
		return CounterLine{Count: v}, ok
	}
	return CounterLine{}, false
}

func parseCounterHex(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// ParseCounterLog returns the counter lines of a serial log in order,
// skipping other output (the BIOS's) and a last line without its newline
// (the guest may have been stopped while printing it). A COUNTER ERROR line
// is returned as an error, with the lines before it.
func ParseCounterLog(log []byte) ([]CounterLine, error) {
	var lines []CounterLine
	log = log[:bytes.LastIndexByte(log, '\n')+1] // without the unfinished last line
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		text := sc.Text()
		if i := strings.Index(text, "COUNTER ERROR"); i >= 0 {
			return lines, fmt.Errorf("counter guest: %s", strings.TrimSpace(text[i:]))
		}
		if l, ok := ParseCounterLine(text); ok {
			lines = append(lines, l)
		}
	}
	return lines, nil
}
