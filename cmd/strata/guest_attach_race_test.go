package main_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// One volume attached to two running guests at the same moment: one
// guest gets it, and the other is refused as in use (exit 5) with the
// message that names the holder, never QEMU's own lock error from a
// device_add that lost the race after the in-use check passed.
func TestRacingAttachesOfOneVolumeRefuseTheLoserAsInUse(t *testing.T) {
	home := shortHome(t)
	for _, g := range []string{"ra", "rb"} {
		bootSectorGuest(t, home, g, "STRATA-"+strings.ToUpper(g), boottest.Halt)
		ok(t, home, "guest", "start", g, "--network", "none", "--wait-serial", "STRATA-"+strings.ToUpper(g))
		t.Cleanup(func() { runIn(t, home, nil, "guest", "kill", g) })
	}
	for i := 0; i < 5; i++ {
		vol := fmt.Sprintf("sh%d", i)
		ok(t, home, "volume", "create", vol, "--size", "1M")
		var rs [2]result
		var wg sync.WaitGroup
		for k, g := range []string{"ra", "rb"} {
			wg.Add(1)
			go func() { defer wg.Done(); rs[k] = runIn(t, home, nil, "guest", "attach", g, "--disk", vol) }()
		}
		wg.Wait()
		won := 0
		for _, r := range rs {
			switch {
			case r.code == 0:
				won++
			case r.code != 5 || strings.Contains(r.stderr, "qmp "):
				t.Fatalf("round %d: the losing attach exited %d: %s", i, r.code, r.stderr)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d attaches of one volume succeeded: %+v", i, won, rs)
		}
	}
}
