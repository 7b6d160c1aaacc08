package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// The command writes each mode's CD source and, given a strata binary, the
// bootable CD that strata's own iso build makes of it; an unknown mode is
// refused before anything is built.
func TestWritesCDSourcesAndStrataBuiltISOs(t *testing.T) {
	dir := t.TempDir()
	strata := filepath.Join(dir, "strata")
	if out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", strata, "github.com/strata-vm/strata/cmd/strata").CombinedOutput(); err != nil {
		t.Fatalf("build strata: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	if _, err := build(context.Background(), "", out, []string{"bogus"}, "", "", false); err == nil {
		t.Fatal("an unknown mode was accepted")
	}
	r, err := build(context.Background(), boottest.DefaultCacheDir(), out, []string{boottest.ModeInstall, boottest.ModePatch}, strata, "", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{boottest.ModeInstall, boottest.ModePatch} {
		cfg, err := os.ReadFile(filepath.Join(r.Sources[m], "isolinux", "isolinux.cfg"))
		if err != nil || !strings.Contains(string(cfg), "strata.mode="+m) {
			t.Fatalf("%s: isolinux.cfg %q, %v", m, cfg, err)
		}
		if r.ISOs[m] != filepath.Join(out, m+".iso") {
			t.Fatalf("%s: iso %q", m, r.ISOs[m])
		}
		if fi, err := os.Stat(r.ISOs[m]); err != nil || fi.Size() < 1<<20 {
			t.Fatalf("%s: %v", m, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".strata-home-*")); len(left) != 0 {
		t.Fatalf("throwaway homes left: %v", left)
	}
}
