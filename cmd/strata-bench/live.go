//go:build strata_bench

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

func init() { groups = append(groups, liveBenches) }

// liveBenches: restore points of a running guest. The guest is the
// counter guest (hvm/boot/boottest), writing to two of its four disks as
// fast as TCG lets it. Per method, the pause a point costs the guest
// (pause_ms, as the point records it: median and max over the rounds);
// and a whole `snapshot create` of the running guest against the same
// point of the same guest stopped.
func liveBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("live point") {
		return nil, nil
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		fatal("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
	}
	l := liveBench{e: e, home: filepath.Join(e.dir, "home-live"), rounds: max(rounds, 20)}
	pools := l.pools()
	// One counting guest at a time: the counter guest keeps a core busy,
	// and guests of the other rows would take the CPU a pause needs.
	var comps []comparison
	for _, method := range []string{"qcow2", "reflink", "copy"} {
		if pool, ok := pools[method]; ok {
			comps = append(comps, l.pauseComparison(method, pool))
		}
	}
	return append(comps, l.wholeComparison()), nil
}

// liveBench is the live rows' setting: their home and rounds.
type liveBench struct {
	e      env
	home   string
	rounds int
}

// pools are the pools of each method's row ("": the default pool); the
// reflink row needs root for an XFS loop mount.
func (l liveBench) pools() map[string]string {
	run(l.e.strata, "--home", l.home, "pool", "list")
	pools := map[string]string{"qcow2": "", "copy": ""}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "strata-bench: not root: no XFS loop mount, the reflink live rows are left out")
		return pools
	}
	dir := filepath.Join(l.e.dir, "live")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fatal("%v", err)
	}
	xfs := loopFS(dir, "xfs", 2<<30)
	run(l.e.strata, "--home", l.home, "pool", "add", "xfs", "--path", filepath.Join(xfs, "pool"))
	pools["reflink"] = "xfs"
	return pools
}

// guest defines a counter guest with four disks (two counting, two
// idle) in pool, of format.
func (l liveBench) guest(name, pool, format string) {
	var paths []string
	for i, size := range []string{"1M", "1M", "64M", "64M"} {
		args := []string{"--home", l.home, "volume", "create", fmt.Sprintf("%s-%d", name, i), "--size", size, "--format", format}
		if pool != "" {
			args = append(args, "--pool", pool)
		}
		run(append([]string{l.e.strata}, args...)...)
		var v struct{ Path string }
		strataJSON(l.e, l.home, &v, "volume", "info", fmt.Sprintf("%s-%d", name, i))
		paths = append(paths, v.Path)
	}
	a, b := paths[0], paths[1]
	if format == "qcow2" {
		a, b = filepath.Join(l.e.dir, name+"-a.raw"), filepath.Join(l.e.dir, name+"-b.raw")
	}
	if err := boottest.WriteCounterDisks(a, b); err != nil {
		fatal("%v", err)
	}
	if format == "qcow2" {
		run("qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", a, paths[0])
		run("qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", b, paths[1])
	}
	args := []string{l.e.strata, "--home", l.home, "guest", "define", name, "--memory", "16", "--boot", "c", "--os", "other", "--driver", "qemu"}
	for i := range paths {
		args = append(args, "--disk", fmt.Sprintf("%s-%d", name, i))
	}
	run(args...)
}

func (l liveBench) start(name string) {
	run(l.e.strata, "--home", l.home, "guest", "start", name, "--wait-serial", "^COUNT ")
}

// stop kills the guest; one already stopped is no failure.
func (l liveBench) stop(name string) {
	_ = exec.Command(l.e.strata, "--home", l.home, "guest", "kill", name).Run()
}

// pauseComparison: the pause a point by method costs a counting guest
// whose disks are in pool.
func (l liveBench) pauseComparison(method, pool string) comparison {
	format := "raw"
	if method == "qcow2" {
		format = "qcow2"
	}
	name := "live-" + method
	l.guest(name, pool, format)
	atExit = append(atExit, func() { l.stop(name) })
	label := map[string]string{"qcow2": "qcow2-internal", "reflink": "reflink (XFS)", "copy": "copy (ext4, point-in-time copy after the pause)"}[method]
	last := l.rounds - 1
	c := contender{name: label, sample: func(round int) time.Duration {
		if round == -1 {
			l.start(name)
		}
		var p struct {
			PauseMS *float64 `json:"pause_ms"`
		}
		strataJSON(l.e, l.home, &p, "snapshot", "create", name)
		if p.PauseMS == nil {
			fatal("a point of running guest %s has no pause_ms", name)
		}
		if round == last {
			l.stop(name)
		}
		return time.Duration(*p.PauseMS * float64(time.Millisecond))
	}}
	return comparison{title: "live point pause, guest writing, 4 disks: " + label + " (median and max of the guest's pause)",
		reference: label, rounds: l.rounds, maxMedian: 100 * time.Millisecond, boundMax: true, settle: true, contenders: []contender{c}}
}

// wholeComparison: the same qcow2 point, of the guest running and of its
// twin stopped.
func (l liveBench) wholeComparison() comparison {
	l.guest("live-stopped", "", "qcow2")
	l.guest("live-running", "", "qcow2")
	atExit = append(atExit, func() { l.stop("live-running") })
	return comparison{
		title: "live point vs stopped point: snapshot create, qcow2, 4 disks", reference: "guest stopped", rounds: l.rounds,
		targets: map[string]float64{"guest running": 2},
		contenders: []contender{
			{name: "guest stopped", prepare: func(round int) []string {
				if round == -1 {
					l.start("live-running")
				}
				return []string{l.e.strata, "--home", l.home, "--log-level", "error", "snapshot", "create", "live-stopped"}
			}},
			{name: "guest running", prepare: func(int) []string {
				return []string{l.e.strata, "--home", l.home, "--log-level", "error", "snapshot", "create", "live-running"}
			}, cleanup: func(round int) {
				// The counting guest keeps a core busy: not under the
				// rows measured after this one.
				if round == l.rounds-1 {
					l.stop("live-running")
				}
			}},
		},
	}
}
