package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A short soak: 30 kill trials (with a rollback to every point after
// each 10), one concurrency round and one ENOSPC round, against the real
// binary. Any point lost or wrong fails it; the report names the trial
// and the seed (STRATA_SOAK_SEED=N replays the same choices).
func TestShortSoakLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak: skipped with -short")
	}
	dir, err := os.MkdirTemp("", "strata-soak-bin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "strata")
	if out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", bin, "../strata").CombinedOutput(); err != nil {
		t.Fatalf("build strata: %v\n%s", err, out)
	}
	var seed uint64
	if s := os.Getenv("STRATA_SOAK_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("STRATA_SOAK_SEED=%q: %v", s, err)
		}
	}
	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Strata: bin, Trials: 30, Seed: seed, VerifyEvery: 10,
		MixWorkers: 3, MixOps: 10, GuestWrites: 30, Log: &log,
	})
	if errors.Is(err, errNoLoopFS) {
		t.Skipf("the soak needs loop-mounted XFS and ext4: %v", err)
	}
	if err != nil {
		t.Fatalf("soak: %v\n%s", err, log.String())
	}
	var sum bytes.Buffer
	rep.Print(&sum)
	t.Log(sum.String())
	if len(rep.Losses) > 0 {
		t.Errorf("the soak lost or damaged %d point(s); trial log:\n%s", len(rep.Losses), log.String())
	}
}
