package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config says what one soak run does.
type Config struct {
	Strata   string        // the strata binary under test
	Dir      string        // scratch directory (created; removed at the end)
	Trials   int           // kill trials to run (0: until Duration)
	Duration time.Duration // run for this long (0: until Trials)
	Seed     uint64        // 0: from the clock
	// VerifyEvery: roll back to every point after this many trials.
	VerifyEvery int
	// MixEvery / EnospcEvery: a concurrency round and an ENOSPC round
	// after this many trials (and once at the end).
	MixEvery, EnospcEvery int
	MixWorkers, MixOps    int // workers in a concurrency round, operations each
	// Ops and Hows narrow the kill trials to some operations ("snapshot
	// rollback") and ways of interrupting ("kill9", "crash-at"); nil: all.
	Ops, Hows []string
	// GuestWrites: percentage of interrupted snapshot operations after
	// which the guest writes before any strata command runs.
	GuestWrites int
	Log         io.Writer
}

// Report is what a run found. A loss is a restore point (or golden,
// clone, volume, iso, live state) lost or wrong; a finding is any other
// misbehaviour (a hang, an orphan, a doctor left unhappy).
type Report struct {
	Seed     uint64
	Trials   int
	Kills    int // trials in which a signal reached a running strata
	Duration time.Duration
	Losses   []string
	Findings map[string]*finding
	// ByKind counts trials, kills and losses per "op signal" pair.
	ByKind                map[string]*tally
	MixRounds, MixCmds    int
	EnospcCases, Verifies int
	Orphans               int
}

type tally struct{ trials, kills, losses int }

type finding struct {
	n     int
	first string
}

func (r *Report) find(key, detail string) {
	if r.Findings == nil {
		r.Findings = map[string]*finding{}
	}
	f := r.Findings[key]
	if f == nil {
		f = &finding{first: detail}
		r.Findings[key] = f
	}
	f.n++
}

// Print writes the summary.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nsoak: seed %d, %s\n", r.Seed, r.Duration.Round(time.Second))
	fmt.Fprintf(w, "trials %d, kills %d, losses %d; orphans seen %d; full verifications %d; concurrency rounds %d (%d commands); ENOSPC cases %d\n",
		r.Trials, r.Kills, len(r.Losses), r.Orphans, r.Verifies, r.MixRounds, r.MixCmds, r.EnospcCases)
	keys := make([]string, 0, len(r.ByKind))
	for k := range r.ByKind {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "\n%-44s %7s %6s %7s\n", "op / signal", "trials", "kills", "losses")
	for _, k := range keys {
		t := r.ByKind[k]
		fmt.Fprintf(w, "%-44s %7d %6d %7d\n", k, t.trials, t.kills, t.losses)
	}
	if len(r.Losses) > 0 {
		fmt.Fprintf(w, "\nLOSSES (%d):\n", len(r.Losses))
		for _, l := range r.Losses {
			fmt.Fprintf(w, "  - %s\n", l)
		}
	}
	if len(r.Findings) > 0 {
		fk := make([]string, 0, len(r.Findings))
		for k := range r.Findings {
			fk = append(fk, k)
		}
		sort.Strings(fk)
		fmt.Fprintf(w, "\nfindings (not losses):\n")
		for _, k := range fk {
			f := r.Findings[k]
			fmt.Fprintf(w, "  - %s (x%d); first: %s\n", k, f.n, f.first)
		}
	}
}

// env is one soak's machinery: scratch space, mounts, the strata binary.
type env struct {
	cfg      Config
	ctx      context.Context
	rng      *rand.Rand
	rep      *Report
	dir      string
	cleanups []func()
	mu       sync.Mutex // guards rep from the concurrency round
}

func (e *env) logf(format string, args ...any) {
	if e.cfg.Log != nil {
		fmt.Fprintf(e.cfg.Log, format+"\n", args...)
	}
}

func (e *env) loss(kind, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	e.rep.Losses = append(e.rep.Losses, msg)
	if kind != "" {
		e.tally(kind).losses++
	}
	e.logf("LOSS: %s", msg)
}

func (e *env) find(key, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := fmt.Sprintf(format, args...)
	e.rep.find(key, d)
	e.logf("finding: %s: %s", key, d)
}

func (e *env) tally(kind string) *tally {
	if e.rep.ByKind == nil {
		e.rep.ByKind = map[string]*tally{}
	}
	t := e.rep.ByKind[kind]
	if t == nil {
		t = &tally{}
		e.rep.ByKind[kind] = t
	}
	return t
}

func (e *env) cleanup() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// sh runs a tool (argv, no shell) and returns its combined output.
func sh(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// loopFS makes a filesystem of fstype on a sparse file attached to a loop
// device and mounts it; cleanup unmounts and detaches whatever happens.
func (e *env) loopFS(name, fstype string, size int64) (string, error) {
	img := filepath.Join(e.dir, name+".fs")
	mnt := filepath.Join(e.dir, name)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(img)
	if err != nil {
		return "", err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return "", err
	}
	out, err := sh("losetup", "-f", "--show", img)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	e.cleanups = append(e.cleanups, func() {
		if _, err := sh("losetup", "-d", dev); err != nil {
			e.logf("cleanup: %v", err)
		}
	})
	mkfs := []string{"mkfs." + fstype}
	switch fstype {
	case "xfs":
		mkfs = append(mkfs, "-q", "-f", "-m", "reflink=1")
	case "ext4":
		mkfs = append(mkfs, "-q", "-F")
	}
	if _, err := sh(append(mkfs, dev)...); err != nil {
		return "", err
	}
	if _, err := sh("mount", dev, mnt); err != nil {
		return "", err
	}
	e.cleanups = append(e.cleanups, func() {
		if _, err := sh("umount", mnt); err != nil {
			// Something still has a file open (a killed strata's orphan):
			// detach lazily so the loop device can go.
			e.logf("cleanup: %v; unmounting lazily", err)
			_, _ = sh("umount", "-l", mnt)
		}
	})
	return mnt, nil
}

// result is one finished strata run.
type result struct {
	stdout, stderr string
	code           int // -1: killed by a signal
}

func (r result) String() string {
	return fmt.Sprintf("exit %d: %s", r.code, strings.TrimSpace(lastLines(r.stderr, 4)))
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// home is one strata state home.
type home struct {
	e    *env
	path string
}

func (h home) command(extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.Command(h.e.cfg.Strata, append([]string{"--home", h.path}, args...)...)
	cmd.Env = append(append(os.Environ(), "STRATA_LOCK_TIMEOUT=120s"), extraEnv...)
	// Its own process group: a Ctrl-C of the soak does not reach it, and
	// its children (qemu-img) can be found and signalled together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs strata to its end.
func (h home) run(extraEnv []string, args ...string) result {
	cmd := h.command(extraEnv, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.String(), errb.String(), exitCode(err)}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 255
}

// must runs strata and reports a finding unless it exits 0.
func (h home) must(args ...string) (string, bool) {
	r := h.run(nil, args...)
	if r.code != 0 {
		h.e.find("a command that must succeed failed", "strata %s: %s", strings.Join(args, " "), r)
		return r.stdout, false
	}
	return r.stdout, true
}

// json runs strata -o json and decodes stdout into v.
func (h home) json(v any, args ...string) bool {
	out, ok := h.must(append([]string{"-o", "json"}, args...)...)
	if !ok {
		return false
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		h.e.find("output is not JSON", "strata %s: %v", strings.Join(args, " "), err)
		return false
	}
	return true
}

// hashFile is the SHA-256 of a file's bytes.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// hashImage is the SHA-256 of an image's guest-visible bytes (of internal
// snapshot snap, if set), read with force-share: it never takes a lock
// strata would wait for.
func (e *env) hashImage(path, format, snap string) (string, error) {
	if format == "raw" && snap == "" {
		return hashFile(path)
	}
	tmp := filepath.Join(e.dir, fmt.Sprintf("read-%d.raw", e.rngInt(1<<30)))
	defer os.Remove(tmp)
	argv := []string{"qemu-img", "convert", "-U", "-f", format}
	if snap != "" {
		argv = append(argv, "-l", "snapshot.name="+snap)
	}
	if _, err := sh(append(argv, "-O", "raw", path, tmp)...); err != nil {
		return "", err
	}
	return hashFile(tmp)
}

var rngMu sync.Mutex

func (e *env) rngInt(n int) int {
	rngMu.Lock()
	defer rngMu.Unlock()
	return e.rng.IntN(n)
}

// killResult is how one interrupted run went.
type killResult struct {
	how     string        // kill9, kill9-group, term, int-group, crash-at
	step    string        // for crash-at
	delay   time.Duration // when the signal was sent
	sent    bool          // the signal reached a running strata
	code    int
	took    time.Duration
	stderr  string
	orphans []string // processes of strata's group alive after it ended
	pgid    int
	// duringChild: the delay counts from the moment strata has a child
	// (qemu-img) running, and the signal is sent only if it ever has one.
	duringChild bool
	child       string // the child that was running when the signal went
}

func (k killResult) repro() string {
	if k.how == "crash-at" {
		return "STRATA_CRASH_AT=" + k.step
	}
	if k.duringChild {
		return fmt.Sprintf("%s %s after child %q started", k.how, k.delay.Round(100*time.Microsecond), k.child)
	}
	return fmt.Sprintf("%s after %s", k.how, k.delay.Round(time.Millisecond))
}

// runKilled runs strata and interrupts it as how says after delay.
func (h home) runKilled(how, step string, delay time.Duration, duringChild bool, args ...string) killResult {
	var extra []string
	if how == "crash-at" {
		extra = []string{"STRATA_CRASH_AT=" + step}
	}
	cmd := h.command(extra, args...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	k := killResult{how: how, step: step, delay: delay, duringChild: duringChild}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		k.code = 255
		k.stderr = err.Error()
		return k
	}
	pid := cmd.Process.Pid
	k.pgid = pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	fire := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	var child string
	go func() {
		for duringChild && child == "" {
			if c := groupAlive(pid, pid); len(c) > 0 {
				child = c[0]
				break
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		select {
		case <-stop:
		case <-time.After(delay):
			close(fire)
		}
	}()
	var err error
	if how == "crash-at" {
		err = <-done
		k.sent = exitCode(err) == -1
	} else {
		select {
		case err = <-done:
		case <-fire:
			k.child = child
			interrupt(how, pid)
			k.sent = true
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				h.e.find("strata did not exit within 60s of a signal", "strata %s, %s", strings.Join(args, " "), k.repro())
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				err = <-done
			}
		}
	}
	k.took = time.Since(start)
	k.code = exitCode(err)
	k.stderr = errb.String()
	k.orphans = orphansOf(how, pid)
	return k
}

// interrupt sends how's signal to strata (pid) or its group. A signal
// sent to the group reaches the children too, as a terminal's Ctrl-C or
// a power cut would. One that finds strata gone already is no failure:
// the run simply ended first.
func interrupt(how string, pid int) {
	switch how {
	case "kill9":
		_ = syscall.Kill(pid, syscall.SIGKILL)
	case "kill9-group":
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	case "term":
		_ = syscall.Kill(pid, syscall.SIGTERM)
	case "int-group":
		_ = syscall.Kill(-pid, syscall.SIGINT)
	}
}

// orphansOf lists the processes of strata's group still alive after it
// ended. A child killed with strata (kill9-group) may take a moment to
// exit and be reaped: only one still there after that is an orphan.
func orphansOf(how string, pid int) []string {
	o := groupAlive(pid, 0)
	if how == "kill9-group" && len(o) > 0 {
		time.Sleep(100 * time.Millisecond)
		o = groupAlive(pid, 0)
	}
	return o
}

// groupAlive lists the processes (pid and command line) in process group
// pgid, but not, ignore.
func groupAlive(pgid, ignore int) []string {
	ents, _ := os.ReadDir("/proc")
	var alive []string
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == ignore {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) || f[0] == "Z" {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		alive = append(alive, fmt.Sprintf("%d %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))))
	}
	return alive
}

// waitGroupGone waits (bounded) until no process of group pgid is left.
func waitGroupGone(pgid int, limit time.Duration) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if len(groupAlive(pgid, 0)) == 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return len(groupAlive(pgid, 0)) == 0
}
