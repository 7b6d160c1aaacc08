package lvm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// recordDir is where recordings go (STRATA_LVM_RECORD=1).
const recordDir = "../../testdata/lvm"

// lineWriter hands the guest's output to t.Log line by line.
type lineWriter struct{ t *testing.T }

func (w lineWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// The real LVM, in a TCG guest (the host has no device-mapper): this
// package's tests compiled statically, run by the LVM run kit's /init
// with two 256 MiB scratch disks; every TestGuest* must pass there. With
// STRATA_LVM_RECORD=1 the commands they recorded are written to
// testdata/lvm for the host-side parsing tests.
func TestRealLVMInAGuest(t *testing.T) {
	if os.Getenv(guestEnv) != "" {
		t.Skip("already in the guest")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	k, err := boottest.BuildRunKit(ctx, "", boottest.LVMSpec)
	if err != nil {
		t.Fatalf("building the LVM test guest: %v", err)
	}
	t.Logf("LVM guest kit (%s, lvm2 %s) built=%t in %v", k.KernelPackage, k.Packages["lvm2"], k.Built, time.Since(start).Round(time.Millisecond))
	bin := filepath.Join(t.TempDir(), "lvm.test")
	start = time.Now()
	if err := boottest.GoTestBinary(ctx, ".", bin, "urfave_cli_no_docs"); err != nil {
		t.Fatal(err)
	}
	t.Logf("test binary built in %v", time.Since(start).Round(time.Millisecond))
	runCtx, cancelRun := context.WithTimeout(ctx, 6*time.Minute)
	defer cancelRun()
	res, err := k.Run(runCtx, boottest.RunOptions{
		Program: bin,
		Args:    []string{"-test.v", "-test.count=1", "-test.run", "^TestGuest"},
		Env:     []string{guestEnv + "=1"},
		Disks:   []int64{256 << 20, 256 << 20},
		Output:  lineWriter{t},
	})
	if err != nil {
		if res != nil {
			t.Logf("guest console:\n%s", res.Console)
		}
		t.Fatalf("LVM guest: %v", err)
	}
	t.Logf("LVM guest: booted in %v (kernel uptime %v), tests ran in %v, %v in all", res.Boot.Round(time.Millisecond), res.Uptime.Round(time.Millisecond), (res.Total - res.Boot).Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if res.ExitCode != 0 || !strings.Contains(res.Output, "--- PASS: TestGuestRealLVM") {
		t.Fatalf("the guest's tests failed (exit code %d); console:\n%s", res.ExitCode, res.Console)
	}
	var recs []Recording
	for _, l := range strings.Split(res.Output, "\n") {
		if j, ok := strings.CutPrefix(l, recordPrefix); ok {
			var r Recording
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				t.Fatalf("recording %q: %v", j, err)
			}
			recs = append(recs, r)
		}
	}
	if len(recs) < 10 {
		t.Fatalf("the guest recorded %d commands", len(recs))
	}
	if os.Getenv("STRATA_LVM_RECORD") == "" {
		return
	}
	for _, r := range recs {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(filepath.Join(recordDir, r.Name+".json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d recordings to %s", len(recs), recordDir)
}
