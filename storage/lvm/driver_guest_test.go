package lvm_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/drivertest"
	"github.com/strata-vm/strata/storage/lvm"
)

// The driver's STRATA_CRASH_AT steps: a thin rollback's restored LV made
// and recorded, the live LV moved to its pre-rollback point, the
// restored LV renamed to the live name; a thick rollback halfway through
// its copy and after it.
var (
	thinCrashSteps  = []string{"rollback:thin-made", "rollback:thin-recorded", "rollback:thin-moved", "rollback:thin-renamed"}
	thickCrashSteps = []string{"rollback:thick-copying", "rollback:thick-copied"}
)

// conformanceVG is the VG the conformance suite runs in: the third
// scratch disk, with a thin pool for the thin half.
const (
	conformanceVG   = "cvg"
	conformanceThin = "cthin"
)

// vgReady makes the conformance VG and its thin pool on the third
// scratch disk, unless they are there.
func vgReady(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	c := &lvm.Client{}
	if _, err := c.VG(ctx, conformanceVG); err == nil {
		return
	}
	disks := strings.Fields(os.Getenv(boottest.DisksEnv))
	if len(disks) < 3 {
		t.Fatalf("want a third scratch disk for the conformance suite, have %q", disks)
	}
	if err := c.CreateVG(ctx, conformanceVG, disks[2]); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateThinPool(ctx, lvm.ThinPoolOptions{VG: conformanceVG, Name: conformanceThin, Size: 192 * mib, ErrorWhenFull: true}); err != nil {
		t.Fatal(err)
	}
}

// TestGuestLVMDriverConformance runs the driver conformance suite
// (storage/drivertest) on real LVM: a thick pool (classic snapshots,
// copies) and a thin pool (thin snapshots, rename-away), crashes
// included. Its crash cases run this binary again as a child, which
// must not set anything up: the pools are made lazily.
func TestGuestLVMDriverConformance(t *testing.T) {
	inGuest(t)
	ctx := context.Background()
	for _, kind := range []struct {
		name  string
		thin  string
		steps []string
	}{{"thick", "", thickCrashSteps}, {"thin", conformanceThin, thinCrashSteps}} {
		t.Run(kind.name, func(t *testing.T) {
			start := time.Now()
			drivertest.Run(t, drivertest.Config{Driver: lvm.Driver{}, CrashSteps: kind.steps,
				Pool: func(t *testing.T) storage.Pool {
					vgReady(t)
					p := storage.Pool{Name: "conformance-" + kind.name, Driver: lvm.Name, LVM: &storage.LVMPool{VG: conformanceVG, ThinPool: kind.thin}, Created: time.Now().UTC()}
					if err := (lvm.Driver{}).AddPool(ctx, &p); err != nil {
						t.Fatal(err)
					}
					return p
				}})
			t.Logf("%s pool: the suite took %v", kind.name, time.Since(start).Round(time.Millisecond))
			if os.Getenv("STRATA_DRIVERTEST_CHILD") != "" {
				return // a crash case's child: the parent checks
			}
			// Every case removes what it made: nothing of strata's is left.
			lvs, err := (&lvm.Client{}).LVs(ctx, conformanceVG)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lvs {
				if _, _, ok := lvm.ParseLVName(l.Name); ok {
					t.Errorf("the suite left logical volume %s (%s)", l.Name, l.Attr.Raw)
				}
			}
		})
	}
}
