package lvm_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/boot/boottest/guesttest"
)

// recordDir is where recordings go (STRATA_LVM_RECORD=1).
const recordDir = "../../testdata/lvm"

// The real LVM, in a TCG guest (the host has no device-mapper): this
// package's tests compiled statically and run by the LVM run kit with two
// 256 MiB scratch disks (the command layer's tests) and a 512 MiB one
// (the driver conformance suite, thick and thin); every TestGuest* must
// pass there, in one boot. With
// STRATA_LVM_RECORD=1 the commands they recorded are written to
// testdata/lvm for the host-side parsing tests.
func TestRealLVMInAGuest(t *testing.T) {
	extra := filepath.Join(t.TempDir(), "extra")
	if err := os.WriteFile(extra, []byte(extraContent), 0o750); err != nil {
		t.Fatal(err)
	}
	// The strata binary the scenarios run (TestGuestStrataOnLVM).
	bin := filepath.Join(t.TempDir(), "strata")
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", bin, "../../cmd/strata")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building strata: %v\n%s", err, out)
	}
	// STRATA_LVM_GUEST_RUN narrows the guest's tests while working on
	// some (e.g. ^TestGuestStrata); then only those are required.
	pattern, names := "^TestGuest", []string{"TestGuestRealLVM", "TestGuestSeesTheFilesItWasGiven", "TestGuestLVMDriverConformance", "TestGuestStrataOnLVM", "TestGuestLVInUse"}
	if p := os.Getenv("STRATA_LVM_GUEST_RUN"); p != "" {
		pattern, names = p, nil
	}
	res := guesttest.Run(t, boottest.LVMSpec, guesttest.Options{Run: pattern, Disks: []int64{256 << 20, 256 << 20, 512 << 20},
		Files: map[string]string{extraPath: extra, strings.TrimPrefix(strataBin, "/"): bin}, Timeout: 25 * time.Minute})
	for _, name := range names {
		if !strings.Contains(res.Output, "--- PASS: "+name) {
			t.Fatalf("%s did not pass in the guest", name)
		}
	}
	if names == nil {
		return
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
