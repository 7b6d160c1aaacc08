package main_test

import (
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// What a guest writes to its serial port reaches the admin's terminal
// only as text: escape sequences (a window title, a cleared screen, a
// clipboard write) and other control bytes are shown escaped, in
// start --wait-serial's line and in the stop record's serial tail.
func TestSerialOutputReachesTheTerminalAsText(t *testing.T) {
	home := shortHome(t)
	const evil = "STRATA-ESC \x1b]0;owned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07 \x00\x08 end\r\n"
	bootSectorGuest(t, home, "esc", evil, boottest.PowerOff)
	r := runIn(t, home, nil, "guest", "start", "esc", "--wait-serial", "STRATA-ESC")
	if r.code != 0 {
		t.Fatalf("start: exit %d: %s", r.code, r.stderr)
	}
	s := waitState(t, home, "esc", "stopped", 30*time.Second)
	if s.LastStop == nil || len(s.LastStop.SerialTail) == 0 {
		t.Fatalf("no serial tail: %+v", s)
	}
	for what, text := range map[string]string{"start --wait-serial": r.stderr, "serial tail": strings.Join(s.LastStop.SerialTail, "\n")} {
		if !strings.Contains(text, "STRATA-ESC") {
			t.Errorf("%s lost the line: %q", what, text)
		}
		if strings.ContainsAny(text, "\x1b\x07\x00\x08") {
			t.Errorf("%s passes the guest's control bytes to the terminal: %q", what, text)
		}
	}
}
