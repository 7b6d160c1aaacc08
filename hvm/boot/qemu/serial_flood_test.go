package qemu_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/boot/qemu"
	qemuargv "github.com/strata-vm/strata/hvm/qemu"
)

// A guest that writes to its serial port without end does not fill the
// state home's disk: the serial log stays near its bound, holds the
// latest output, and says that it was cut.
func TestSerialFloodKeepsTheLogBounded(t *testing.T) {
	e := newEnv(t)
	const max = 64 << 10
	e.d = qemu.New(qemu.Config{Home: e.home, Network: qemuargv.NetNone, WatcherArgv: watcherArgv, SerialLogMax: max})
	g := e.guest("flood", boottest.Flood, nil)
	e.start(g, boot.StartOptions{})
	// Several times the bound at the rate TCG writes (hundreds of KiB/s).
	deadline := time.Now().Add(20 * time.Second)
	var cut bool
	for time.Now().Before(deadline) && !cut {
		b, _ := os.ReadFile(g.Run.Path(qemu.SerialLog))
		cut = strings.Contains(string(b), "[strata: the serial log passed")
		time.Sleep(50 * time.Millisecond)
	}
	if !cut {
		t.Fatal("the serial log of a flooding guest was never cut")
	}
	time.Sleep(time.Second)
	for i := 0; i < 10; i++ {
		st, err := os.Stat(g.Run.Path(qemu.SerialLog))
		if err != nil {
			t.Fatal(err)
		}
		// The watcher looks every 100 ms: what TCG writes in that time
		// on top of the bound.
		if st.Size() > 2*max+(512<<10) {
			t.Fatalf("serial log of a flooding guest: %d bytes, bound %d", st.Size(), max)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := e.status(g); s.State != boot.Running {
		t.Fatalf("the flooding guest: %+v", s)
	}
}
