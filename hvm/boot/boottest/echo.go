package boottest

// EchoSector returns a 512-byte boot sector that writes marker to COM1 and
// then echoes every byte it receives on COM1, for ever: a guest whose
// serial console answers, to test an interactive console.
func EchoSector(marker string) []byte {
	b := []byte{0xfa}               // cli
	b = append(b, 0xba, 0xf8, 0x03) // mov dx, 0x3f8
	for _, c := range []byte(marker) {
		b = append(b, 0xb0, c, 0xee) // mov al, c; out dx, al
	}
	b = append(b,
		// wait:
		0xba, 0xfd, 0x03, // mov dx, 0x3fd (line status)
		0xec,       // in al, dx
		0xa8, 0x01, // test al, 1 (data ready)
		0x74, 0xf8, // jz wait
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xec,       // in al, dx
		0xee,       // out dx, al
		0xeb, 0xf1, // jmp wait
	)
	if len(b) > 510 {
		panic("boottest: marker too long for a boot sector")
	}
	b = append(b, make([]byte, 510-len(b))...)
	return append(b, 0x55, 0xaa)
}
