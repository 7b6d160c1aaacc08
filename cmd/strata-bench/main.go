//go:build strata_bench

// Command strata-bench compares strata with the tools admins use instead,
// side by side in one run: each comparison runs every contender in turn,
// round after round, times whole processes (start-up and catalog
// included), and reports medians and the ratio to a reference contender.
// make bench runs it; README.md shows its table.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-vm/strata/storage"
	"golang.org/x/sys/unix"
)

// contender is one way of doing a job. prepare runs untimed before each
// timed run and returns the argv to time; cleanup runs untimed after.
type contender struct {
	name    string
	prepare func(round int) []string
	cleanup func(round int)
	// inProcess, if set, is timed instead of a process (for library
	// throughput, e.g. the config parser).
	inProcess func()
	// until, if set, ends the timed span when text first appears in file
	// (a guest's serial log), whether or not the process has ended; the
	// process is then waited for, untimed, and must succeed.
	until func(round int) (file, text string)
	// sample, if set, runs the job and returns what it measured (a live
	// point's pause), which stands for the contender's time.
	sample func(round int) time.Duration
}

// comparison is one row group of the results table.
type comparison struct {
	title      string
	reference  string // contender the ratios are relative to
	rounds     int
	contenders []contender
	// targets: contender name → the ratio it must stay under (vs reference)
	targets map[string]float64
	// maxMedian: an absolute bound on every contender's median, if set;
	// with boundMax, on every contender's maximum.
	maxMedian time.Duration
	boundMax  bool
	// maxRSS: contender name → a bound on its peak resident memory.
	maxRSS map[string]int64
	// settle: write back all dirty data (sync, untimed) after each run,
	// so that a contender that leaves gigabytes dirty (cp) does not slow
	// down the one after it.
	settle bool
}

type env struct {
	strata string
	dir    string // scratch directory
	home   string // strata state home
	only   string // -only: measure only comparisons whose title contains it
}

// want tells a group whether to set up comparisons with this title (set-up
// can be costly: gigabytes of data, loop mounts).
func (e env) want(title string) bool {
	return e.only == "" || strings.Contains(title, e.only) || strings.Contains(e.only, title)
}

// atExit undoes set-up (mounts, loop devices, scratch files), last first,
// whether the run ends normally or by fatal.
var atExit []func()

func cleanup() {
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	atExit = nil
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "strata-bench: "+format+"\n", args...)
	cleanup()
	os.Exit(1)
}

// run runs argv and fails loudly: a benchmark of a failing command is
// meaningless.
func run(argv ...string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fatal("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// timed runs argv and returns its wall time.
func timed(argv []string) time.Duration {
	cmd := exec.Command(argv[0], argv[1:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		fatal("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return d
}

// timedUntil runs argv and returns the wall time until text appears in
// file (which must not exist yet). The file's directory is watched with
// inotify, so that looking costs the machine nothing while the contenders
// run (a busy loop would take a core from them).
func timedUntil(argv []string, file, text string) time.Duration {
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		fatal("inotify: %v", err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, filepath.Dir(file), unix.IN_CREATE|unix.IN_MODIFY|unix.IN_MOVED_TO); err != nil {
		fatal("inotify on %s: %v", filepath.Dir(file), err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fatal("%s: %v", strings.Join(argv, " "), err)
	}
	var d time.Duration
	buf := make([]byte, 64<<10)
	for deadline := start.Add(time.Minute); ; {
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), text) {
			d = time.Since(start)
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			_ = cmd.Process.Kill()
			fatal("%s: %q did not appear in %s within a minute", strings.Join(argv, " "), text, file)
		}
		fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond)+1); err != nil && err != unix.EINTR {
			fatal("poll: %v", err)
		}
		for {
			if _, err := unix.Read(in, buf); err != nil {
				break // drained (EAGAIN)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		fatal("%s: %v\n%s", strings.Join(argv, " "), err, out.String())
	}
	return d
}

// peakRSS runs argv once more, untimed, under GNU time for its peak
// resident memory. (The rusage Go's exec returns counts the parent's pages
// too: the child shares them until it execs.)
func peakRSS(argv []string) int64 {
	f, err := os.CreateTemp("", "strata-bench-rss-")
	if err != nil {
		fatal("%v", err)
	}
	f.Close()
	defer os.Remove(f.Name())
	run(append([]string{"/usr/bin/time", "-f", "%M", "-o", f.Name()}, argv...)...)
	b, err := os.ReadFile(f.Name())
	if err != nil {
		fatal("%v", err)
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		fatal("GNU time printed %q", b)
	}
	return kb << 10
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type row struct {
	title, contender string
	median           time.Duration
	max              time.Duration // shown and bounded with comparison.boundMax
	ratio            float64
	target           float64
	maxMedian        time.Duration
	isRef            bool
	rss, maxRSS      int64
}

func (c comparison) measure() []row {
	times := make(map[string][]time.Duration)
	rss := make(map[string]int64)
	for round := -1; round < c.rounds; round++ { // round -1 warms caches
		for _, k := range c.contenders {
			var d time.Duration
			if k.inProcess != nil {
				start := time.Now()
				k.inProcess()
				d = time.Since(start)
			} else if k.sample != nil {
				d = k.sample(round)
			} else if round == -1 && c.maxRSS[k.name] > 0 {
				rss[k.name] = peakRSS(k.prepare(round))
			} else if k.until != nil {
				argv := k.prepare(round)
				file, text := k.until(round)
				d = timedUntil(argv, file, text)
			} else {
				d = timed(k.prepare(round))
			}
			if k.cleanup != nil {
				k.cleanup(round)
			}
			if c.settle {
				run("sync")
			}
			if round >= 0 {
				times[k.name] = append(times[k.name], d)
			}
		}
	}
	ref := median(times[c.reference])
	var rows []row
	for _, k := range c.contenders {
		m := median(times[k.name])
		r := row{title: c.title, contender: k.name, median: m, ratio: float64(m) / float64(ref), target: c.targets[k.name], maxMedian: c.maxMedian, isRef: k.name == c.reference, rss: rss[k.name], maxRSS: c.maxRSS[k.name]}
		if c.boundMax {
			r.max = slices.Max(times[k.name])
		}
		rows = append(rows, r)
	}
	return rows
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// flat is a derived check: one contender's median across sizes.
type flat struct {
	what     string
	small    time.Duration
	large    time.Duration
	maxRatio float64
}

func main() {
	strata := flag.String("strata", "bin/strata", "strata binary to measure")
	dir := flag.String("dir", "", "scratch directory (default: a temp dir under /var/tmp)")
	rounds := flag.Int("rounds", 15, "timed rounds per comparison")
	only := flag.String("only", "", "run only comparisons whose title contains this")
	flag.Parse()
	if *lvmGuest {
		lvmGuestMain(*strata, *rounds)
		return
	}
	scratch := *dir
	if scratch == "" {
		var err error
		if scratch, err = os.MkdirTemp("/var/tmp", "strata-bench-"); err != nil {
			fatal("%v", err)
		}
		atExit = append(atExit, func() { os.RemoveAll(scratch) })
	}
	// A private copy: a rebuild during the run must not change what is measured.
	bin := filepath.Join(scratch, "strata")
	run("cp", *strata, bin)
	// strata's Ceph helper goes with it: strata runs it only from its
	// own directory.
	if helper := filepath.Join(filepath.Dir(*strata), "strata-rbd"); fileExists(helper) {
		run("cp", helper, filepath.Join(scratch, "strata-rbd"))
	}
	e := env{strata: bin, dir: scratch, home: filepath.Join(scratch, "home"), only: *only}
	run(bin, "--home", e.home, "pool", "list") // first use outside the timings

	var rows []row
	var flats []flat
	for _, group := range groups {
		comps, fl := group(e, *rounds)
		for _, c := range comps {
			if *only != "" && !strings.Contains(c.title, *only) {
				continue
			}
			fmt.Fprintf(os.Stderr, "measuring: %s\n", c.title)
			rows = append(rows, c.measure()...)
		}
		if fl != nil {
			for _, f := range fl(rows) {
				if f.small > 0 && f.large > 0 { // both measured (-only may skip one)
					flats = append(flats, f)
				}
			}
		}
	}
	cleanup()
	failed := report(rows, flats)
	if failed > 0 {
		fmt.Printf("\n%d target(s) missed\n", failed)
	}
}

// groups are the benchmark sets, one per capability (volumes, restore
// points, ...). Each returns its comparisons and, optionally, derived
// O(1) checks computed from the measured rows.
var groups []func(e env, rounds int) ([]comparison, func([]row) []flat)

func report(rows []row, flats []flat) int {
	failed := 0
	fmt.Println("| comparison | contender | median | ratio | target | ok |")
	fmt.Println("|---|---|---:|---:|---|---|")
	for _, r := range rows {
		target, verdict := "", ""
		switch {
		case r.maxMedian > 0 && r.max > 0:
			target = "max < " + fmtDur(r.maxMedian)
			verdict = "yes"
			if r.max >= r.maxMedian {
				verdict = "**no**"
				failed++
			}
		case r.maxMedian > 0:
			target = "< " + fmtDur(r.maxMedian)
			verdict = "yes"
			if r.median >= r.maxMedian {
				verdict = "**no**"
				failed++
			}
		case r.isRef:
			target = "reference"
		case r.target > 0:
			target = "≤ " + strconv.FormatFloat(r.target, 'f', -1, 64) + "x"
			verdict = "yes"
			if r.ratio > r.target {
				verdict = "**no**"
				failed++
			}
		}
		if r.maxRSS > 0 {
			target += fmt.Sprintf("; peak RSS %s < %s", storage.FormatSize(r.rss), storage.FormatSize(r.maxRSS))
			if r.rss >= r.maxRSS {
				verdict = "**no**"
				failed++
			}
		}
		cell := strings.NewReplacer("|", "\\|")
		med := fmtDur(r.median)
		if r.max > 0 {
			med += " (max " + fmtDur(r.max) + ")"
		}
		fmt.Printf("| %s | %s | %s | %.2fx | %s | %s |\n", cell.Replace(r.title), cell.Replace(r.contender), med, r.ratio, target, verdict)
	}
	if len(flats) > 0 {
		fmt.Println()
		fmt.Println("| O(1) check | small | large | large/small | target | ok |")
		fmt.Println("|---|---:|---:|---:|---|---|")
		for _, f := range flats {
			ratio := float64(f.large) / float64(f.small)
			if f.maxRatio == 0 { // a peer's own scaling, for comparison
				fmt.Printf("| %s | %s | %s | %.2fx | reference |  |\n", f.what, fmtDur(f.small), fmtDur(f.large), ratio)
				continue
			}
			verdict := "yes"
			if ratio > f.maxRatio {
				verdict = "**no**"
				failed++
			}
			fmt.Printf("| %s | %s | %s | %.2fx | ≤ %.2gx | %s |\n", f.what, fmtDur(f.small), fmtDur(f.large), ratio, f.maxRatio, verdict)
		}
	}
	return failed
}

func find(rows []row, title, contender string) time.Duration {
	for _, r := range rows {
		if r.title == title && r.contender == contender {
			return r.median
		}
	}
	return 0
}

// cpSync is a cp --sparse=always made durable (synced, as strata's copies
// are before they are recorded), run without a shell: find runs both.
func cpSync(src, dst string) []string {
	return []string{"find", src, "-maxdepth", "0", "-exec", "cp", "--sparse=always", "{}", dst, ";", "-exec", "sync", dst, ";"}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
