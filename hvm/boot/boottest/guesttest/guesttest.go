// Package guesttest runs a Go package's tests inside a guest booted from
// a boottest run kit, for what only a guest kernel can test (LVM and
// device-mapper): the host test calls Run, the guest's tests check
// InGuest. It is apart from boottest so that programs using the test
// guest (strata-bench, strata-testguest) do not link package testing.
package guesttest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// Env is set to "1" in the environment of tests Run runs
// in a guest; InGuest reports it. Guest-only tests skip without it.
const Env = "STRATA_IN_GUEST"

// InGuest reports whether this process is a test binary Run
// started inside a guest.
func InGuest() bool { return os.Getenv(Env) == "1" }

// Options are a run of the calling package's tests in a run kit's guest.
type Options struct {
	// Run selects the tests (go test -run), e.g. "^TestGuest".
	Run string
	// Env is added to the tests' environment (the package's Env=1 always is).
	Env []string
	// Disks are the sizes of the scratch disks (boottest.RunOptions.Disks).
	Disks []int64
	// Files are more files for the guest (boottest.RunOptions.Files),
	// e.g. {"strata/bin/strata": a static strata built by the test}.
	Files map[string]string
	// Timeout bounds the boot and the tests (default 6 minutes; TCG on
	// a loaded machine is slow). The kit's first build has its own 15.
	Timeout time.Duration
}

// Run compiles the tests of the package in the current
// directory (go test runs in it) statically, boots spec's kit with them
// and g's disks, streams their output to t.Log, and fails t unless they
// all pass (-test.v shows each). It logs the kit, the boot time and the
// time the tests took, and returns the result (its Output holds every
// line the tests printed). Skipped inside a guest.
func Run(t testing.TB, spec boottest.RunKitSpec, g Options) *boottest.RunResult {
	t.Helper()
	if InGuest() {
		t.Skip("already in the guest")
	}
	timeout := g.Timeout
	if timeout == 0 {
		timeout = 6 * time.Minute
	}
	// The kit's first build (15 minutes at most), then the run.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute+timeout)
	defer cancel()
	start := time.Now()
	k, err := boottest.BuildRunKit(ctx, "", spec)
	if err != nil {
		t.Fatalf("building the %s run kit: %v", spec.Name, err)
	}
	var pkgs []string
	for _, p := range spec.Packages {
		pkgs = append(pkgs, p+" "+k.Packages[p])
	}
	t.Logf("%s guest kit (%s; %s) built=%t in %v", spec.Name, k.KernelPackage, strings.Join(pkgs, ", "), k.Built, time.Since(start).Round(time.Millisecond))
	bin := filepath.Join(t.TempDir(), "guest.test")
	start = time.Now()
	if err := boottest.GoTestBinary(ctx, ".", bin, "urfave_cli_no_docs"); err != nil {
		t.Fatal(err)
	}
	t.Logf("test binary built in %v", time.Since(start).Round(time.Millisecond))
	runCtx, cancelRun := context.WithTimeout(ctx, timeout)
	defer cancelRun()
	args := []string{"-test.v", "-test.count=1"}
	if g.Run != "" {
		args = append(args, "-test.run", g.Run)
	}
	res, err := k.Run(runCtx, boottest.RunOptions{
		Program: bin,
		Args:    args,
		Env:     append([]string{Env + "=1"}, g.Env...),
		Disks:   g.Disks,
		Files:   g.Files,
		Output:  logWriter{t},
	})
	if err != nil {
		if res != nil {
			t.Logf("guest console:\n%s", res.Console)
		}
		t.Fatalf("%s guest: %v", spec.Name, err)
	}
	t.Logf("%s guest: booted in %v (kernel uptime %v), tests ran in %v, %v in all", spec.Name, res.Boot.Round(time.Millisecond),
		res.Uptime.Round(time.Millisecond), (res.Total - res.Boot).Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if res.ExitCode != 0 || !strings.Contains(res.Output, "\nPASS\n") {
		t.Fatalf("the tests in the guest failed (exit code %d); console:\n%s", res.ExitCode, res.Console)
	}
	return res
}

// logWriter hands a guest's output to t.Log, line by line.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
