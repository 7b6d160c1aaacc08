// Command strata-soak tries to make strata lose data, and counts what it
// loses. It drives the real strata binary with a throwaway state home:
//
//   - kill trials: on a guest with a qcow2 disk, a raw disk with full-copy
//     points and a raw disk on XFS with reflink points, it runs snapshot
//     create / rollback / delete, golden create, clone, guest flatten,
//     volume import --copy and iso capture, and interrupts each at a
//     random instant (SIGKILL of strata alone, SIGKILL of its process group
//     as a power cut would, SIGTERM, a Ctrl-C's SIGINT to the group) or at
//     a named step (STRATA_CRASH_AT); then strata doctor --repair, and a
//     check that every point, golden, clone, volume and iso is either as
//     it was or (for the interrupted one) absent or exactly right. Every
//     few trials it rolls back to every point and compares each disk's
//     guest-visible bytes and the definition with what they were when the
//     point was taken.
//   - concurrency rounds: several strata processes at once on shared
//     targets; the catalog must then hold exactly what the commands that
//     exited 0 made.
//   - ENOSPC rounds: copies into a small loop-mounted ext4 that cannot
//     hold them, refused by the free-space check or (past it) running into
//     a real ENOSPC, and a writer filling the disk during a copy: nothing
//     lost, nothing half-made left.
//
// It prints trials, kills and losses (points lost or wrong) and exits 1
// on any loss. make soak runs it; a short run is a Go test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.Strata, "strata", "", "strata binary (default: build ./cmd/strata)")
	flag.StringVar(&cfg.Dir, "dir", "", "scratch directory (default: a temp dir under /var/tmp)")
	flag.IntVar(&cfg.Trials, "trials", 0, "kill trials to run (0: run for -duration)")
	flag.DurationVar(&cfg.Duration, "duration", 0, "how long to run (0: run -trials)")
	flag.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: from the clock); the report prints it")
	flag.IntVar(&cfg.VerifyEvery, "verify-every", 10, "roll back to every point after this many trials")
	flag.IntVar(&cfg.MixEvery, "mix-every", 40, "a concurrency round after this many trials")
	flag.IntVar(&cfg.EnospcEvery, "enospc-every", 80, "an ENOSPC round after this many trials")
	flag.IntVar(&cfg.MixWorkers, "mix-workers", 4, "strata processes at once in a concurrency round")
	flag.IntVar(&cfg.MixOps, "mix-ops", 15, "commands each worker runs in a concurrency round")
	flag.IntVar(&cfg.GuestWrites, "guest-writes", 30, "percent of interrupted snapshot operations after which the guest writes before recovery")
	opsFlag := flag.String("ops", "", "only these kill-trial operations, comma-separated (e.g. 'snapshot rollback,clone'; default: all)")
	hows := flag.String("signals", "", "only these ways of interrupting, comma-separated: kill9, kill9-group, term, int-group, crash-at, none (default: all)")
	quiet := flag.Bool("q", false, "print only the summary, not a line per trial")
	flag.Parse()
	if *opsFlag != "" {
		cfg.Ops = strings.Split(*opsFlag, ",")
		for _, o := range cfg.Ops {
			if !slices.ContainsFunc(ops, func(x op) bool { return x.name == o }) {
				fmt.Fprintf(os.Stderr, "strata-soak: unknown operation %q in -ops\n", o)
				os.Exit(2)
			}
		}
	}
	if *hows != "" {
		cfg.Hows = strings.Split(*hows, ",")
		for _, h := range cfg.Hows {
			if !slices.Contains([]string{"kill9", "kill9-group", "term", "int-group", "crash-at", "none"}, h) {
				fmt.Fprintf(os.Stderr, "strata-soak: unknown way %q in -signals\n", h)
				os.Exit(2)
			}
		}
	}
	if cfg.Trials == 0 && cfg.Duration == 0 {
		cfg.Duration = 30 * time.Minute
	}
	if !*quiet {
		cfg.Log = os.Stderr
	}
	// A Ctrl-C ends the run between trials, and the mounts and loop
	// devices are cleaned up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Strata == "" {
		bin, err := buildStrata("./cmd/strata")
		if err != nil {
			fmt.Fprintln(os.Stderr, "strata-soak:", err)
			os.Exit(2)
		}
		defer os.RemoveAll(filepath.Dir(bin))
		cfg.Strata = bin
	}
	rep, err := Run(ctx, cfg)
	if rep != nil {
		rep.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata-soak:", err)
		os.Exit(2)
	}
	if len(rep.Losses) > 0 {
		os.Exit(1)
	}
}

// buildStrata builds the strata command in pkg into a temp dir.
func buildStrata(pkg string) (string, error) {
	dir, err := os.MkdirTemp("", "strata-soak-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "strata")
	if out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build strata: %v: %s", err, out)
	}
	return bin, nil
}

// errNoLoopFS: the machine cannot give the soak its loop-mounted
// filesystems (not root, no loop devices, no XFS).
var errNoLoopFS = errors.New("cannot loop-mount the filesystems the soak needs")

// Run runs a soak and returns its report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	for _, n := range []*int{&cfg.VerifyEvery, &cfg.MixEvery, &cfg.EnospcEvery} {
		if *n <= 0 {
			*n = 1 << 30
		}
	}
	e := &env{cfg: cfg, ctx: ctx, rng: rand.New(rand.NewPCG(cfg.Seed, 0x50a4)), rep: &Report{Seed: cfg.Seed}}
	if err := e.prepare(); err != nil {
		return nil, err
	}
	defer e.cleanup()
	start := time.Now()
	defer func() { e.rep.Duration = time.Since(start) }()

	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root", errNoLoopFS)
	}
	xfs, err := e.loopFS("xfs", "xfs", 1<<30)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoLoopFS, err)
	}
	small, err := e.loopFS("small", "ext4", 96<<20)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoLoopFS, err)
	}
	w, err := newWorld(e, xfs)
	if err != nil {
		return e.rep, fmt.Errorf("set-up: %v", err)
	}
	e.logf("soak: seed %d, scratch %s", cfg.Seed, e.dir)
	e.soak(w, xfs, small, start)
	return e.rep, nil
}

// prepare checks the tools and makes the scratch directory (removed by
// cleanup).
func (e *env) prepare() error {
	for _, tool := range []string{"qemu-img", "qemu-io", "xorriso", "losetup", "mkfs.xfs", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make soak installs it)", tool)
		}
	}
	dir := e.cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("/var/tmp", "strata-soak-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	e.dir = dir
	e.cleanups = append(e.cleanups, func() { os.RemoveAll(dir) })
	return nil
}

// soak runs the trials, with a verification, a concurrency round and an
// ENOSPC round at their intervals, until the trials, the time or ctx
// end; a run that was not cancelled ends with each kind of check.
func (e *env) soak(w *world, xfs, small string, start time.Time) {
	cfg := e.cfg
	mixes, enospcs := 0, 0
	lastVerify, lastMix, lastEnospc := 0, 0, 0
	for n := 1; ; n++ {
		if e.ctx.Err() != nil || (cfg.Trials > 0 && n > cfg.Trials) || (cfg.Duration > 0 && time.Since(start) > cfg.Duration) {
			break
		}
		w.runTrial()
		if n%cfg.VerifyEvery == 0 {
			w.verifyAll(fmt.Sprintf("verification after trial %d (seed %d)", w.trial, cfg.Seed))
			lastVerify = n
		}
		if n%cfg.MixEvery == 0 {
			mixes++
			e.mixRound(mixes, xfs)
			lastMix = n
		}
		if n%cfg.EnospcEvery == 0 {
			enospcs++
			e.enospcRound(enospcs, small, w.iso)
			lastEnospc = n
		}
	}
	if e.ctx.Err() != nil {
		return
	}
	if lastVerify != w.trial {
		w.verifyAll(fmt.Sprintf("final verification (seed %d)", cfg.Seed))
	}
	if lastMix != w.trial || mixes == 0 {
		e.mixRound(mixes+1, xfs)
	}
	if lastEnospc != w.trial || enospcs == 0 {
		e.enospcRound(enospcs+1, small, w.iso)
	}
}
