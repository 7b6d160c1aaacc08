//go:build strata_bench

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd/minicluster"
)

func init() { groups = append(groups, rbdBenches) }

// rbdData is the 1x data size of the RBD rows (1x, 4x, 16x): the
// benchmark's OSD keeps objects in memory (memstore, about twice the
// data), so the sizes stay small; RBD's costs grow with objects, not
// bytes.
var rbdData = "16M"

// rbdBenches: restore points of an rbd pool's volume against the bare rbd
// commands on a single-node cluster started here (mon + memstore OSD):
// point create against rbd snap create, rollback against rbd snap create
// + rbd snap rollback (the same work: a pre-rollback point and the
// rollback), at 1x, 4x and 16x data; 50 linked clones against 50 rbd
// clone processes.
func rbdBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("rbd") {
		return nil, nil
	}
	for _, tool := range minicluster.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "strata-bench: %s is not installed: the rbd rows are left out (make bench installs ceph-mon, ceph-osd, ceph-common)\n", tool)
			return nil, nil
		}
	}
	unit, err := storage.ParseSize(rbdData)
	if err != nil {
		fatal("%v", err)
	}
	// strata runs the hot paths' calls in strata-rbd beside it (make
	// build puts it there); without it the rows measure the tools.
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.strata), "strata-rbd")); err != nil {
		fmt.Fprintf(os.Stderr, "strata-bench: no strata-rbd beside %s (make build): strata runs the rbd tools, one process per call\n", e.strata)
	}
	r := startRBDBench(e)
	var comps []comparison
	sizes := []int64{unit, 4 * unit, 16 * unit}
	for i, n := range sizes {
		comps = append(comps, r.pointComparisons(i, n, rounds)...)
	}
	comps = append(comps, r.cloneComparison(unit, rounds))
	return comps, func(rows []row) []flat {
		var fl []flat
		for _, op := range []string{"create", "rollback"} {
			small := find(rows, "rbd snapshot "+op+", "+dataLabel(sizes[0]), "strata snapshot "+op)
			large := find(rows, "rbd snapshot "+op+", "+dataLabel(sizes[2]), "strata snapshot "+op)
			fl = append(fl, flat{what: "strata snapshot " + op + ", rbd, 1x → 16x data", small: small, large: large, maxRatio: 1.5})
		}
		return fl
	}
}

// rbdBench is the RBD rows' setting: a cluster started here, a namespace
// of its pool, and a strata home with that namespace as pool "ceph".
type rbdBench struct {
	e    env
	c    *minicluster.Cluster
	ns   string
	home string
}

func startRBDBench(e env) rbdBench {
	c, err := minicluster.Start(int64(8) << 30)
	if err != nil {
		fatal("start a ceph cluster: %v", err)
	}
	atExit = append(atExit, c.Stop)
	ns, err := c.NewNamespace()
	if err != nil {
		fatal("%v", err)
	}
	r := rbdBench{e: e, c: c, ns: ns, home: filepath.Join(e.dir, "home-rbd")}
	run(r.strata("pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", ns, "--ceph-conf", c.Conf)...)
	return r
}

func (r rbdBench) strata(args ...string) []string {
	return append([]string{r.e.strata, "--home", r.home, "--log-level", "error"}, args...)
}

func (r rbdBench) rbd(args ...string) []string {
	return append([]string{"rbd", "--conf", r.c.Conf}, args...)
}

func dataLabel(n int64) string { return storage.FormatSize(n) + " data" }

// pointComparisons: point create and rollback of volume i, holding n
// bytes, against a bare image holding the same.
func (r rbdBench) pointComparisons(i int, n int64, rounds int) []comparison {
	var v volumeInfo
	name := fmt.Sprintf("rbd%d", i)
	strataJSON(r.e, r.home, &v, "volume", "create", name, "--pool", "ceph", "--size", "2G")
	fill(v.Path, "raw", n)
	// The bare image: the same data, its own snapshots.
	bare := fmt.Sprintf("%s/%s/bare%d", r.c.Pool, r.ns, i)
	run(r.rbd("create", "--size", "2G", bare)...)
	fill("rbd:"+bare+":conf="+r.c.Conf, "raw", n)
	// Points to roll back to, untimed: strata's 1 and bare@base.
	run(r.strata("snapshot", "create", "--volume", name)...)
	run(r.rbd("snap", "create", "--no-progress", bare+"@base")...)
	snap := 0
	rows := []comparison{{
		title: "rbd snapshot create, " + dataLabel(n), reference: "rbd snap create", rounds: rounds,
		targets: map[string]float64{"strata snapshot create": 1.5},
		contenders: []contender{
			{name: "rbd snap create", prepare: func(int) []string {
				snap++
				return r.rbd("snap", "create", "--no-progress", fmt.Sprintf("%s@s%d", bare, snap))
			}, cleanup: func(int) { run(r.rbd("snap", "rm", "--no-progress", fmt.Sprintf("%s@s%d", bare, snap))...) }},
			{name: "strata snapshot create", prepare: func(int) []string {
				return r.strata("snapshot", "create", "--volume", name)
			}, cleanup: func(int) { deleteNewestIn(r.e, r.home, name) }},
		},
	}, {
		title: "rbd snapshot rollback, " + dataLabel(n), reference: "rbd snap create + rbd snap rollback", rounds: rounds,
		targets: map[string]float64{"strata snapshot rollback": 1.5},
		contenders: []contender{
			{name: "rbd snap rollback", prepare: func(int) []string {
				return r.rbd("snap", "rollback", "--no-progress", bare+"@base")
			}},
			// A pre-rollback point and the rollback, as strata does
			// (sh only sequences the two rbd processes).
			{name: "rbd snap create + rbd snap rollback", prepare: func(int) []string {
				snap++
				return []string{"sh", "-c", strings.Join(r.rbd("snap", "create", "--no-progress", fmt.Sprintf("%s@p%d", bare, snap)), " ") + " && " +
					strings.Join(r.rbd("snap", "rollback", "--no-progress", bare+"@base"), " ")}
			}, cleanup: func(int) { run(r.rbd("snap", "rm", "--no-progress", fmt.Sprintf("%s@p%d", bare, snap))...) }},
			{name: "strata snapshot rollback", prepare: func(int) []string {
				return r.strata("snapshot", "rollback", "--volume", name, "1")
			}, cleanup: func(int) { deleteNewestIn(r.e, r.home, name) }}, // the pre-rollback point
		},
	}}
	if i == 0 {
		// At 1x only, the same through the rbd and rados tools (one
		// process per call), for comparison: no target. (At 16x the
		// extra rollbacks' snapshots fill the memstore OSD faster than
		// it trims them.)
		rows[1].contenders = append(rows[1].contenders, contender{name: "strata snapshot rollback, tools", prepare: func(int) []string {
			return append([]string{"env", "STRATA_RBD_CLIENT=cli"}, r.strata("snapshot", "rollback", "--volume", name, "1")...)
		}, cleanup: func(int) { deleteNewestIn(r.e, r.home, name) }})
	}
	return rows
}

// cloneComparison: 50 linked clones of a golden image, strata clone
// --count 50 against 50 rbd clone processes (xargs, no shell).
func (r rbdBench) cloneComparison(unit int64, rounds int) comparison {
	var src volumeInfo
	strataJSON(r.e, r.home, &src, "volume", "create", "gsrc", "--pool", "ceph", "--size", "2G")
	fill(src.Path, "raw", unit)
	var g struct {
		Disks []struct {
			Path string `json:"path"`
		} `json:"disks"`
	}
	strataJSON(r.e, r.home, &g, "golden", "create", "rgold", "--volume", "gsrc")
	gold := rbdSpec(g.Disks[0].Path) + "@strata-golden"
	list := filepath.Join(r.e.dir, "rbd-clones.txt")
	var names []string
	for i := 0; i < batch; i++ {
		names = append(names, fmt.Sprintf("%s/%s/bc%d", r.c.Pool, r.ns, i))
	}
	if err := os.WriteFile(list, []byte(strings.Join(names, "\n")+"\n"), 0o600); err != nil {
		fatal("%v", err)
	}
	seq := 0
	return comparison{
		title: fmt.Sprintf("%d linked rbd clones", batch), reference: fmt.Sprintf("rbd clone, %d processes", batch), rounds: min(rounds, 3),
		targets: map[string]float64{fmt.Sprintf("strata clone --count %d", batch): 1.5},
		contenders: []contender{
			{name: fmt.Sprintf("rbd clone, %d processes", batch), prepare: func(int) []string {
				return append([]string{"xargs", "-a", list, "-n", "1"}, r.rbd("clone", gold)...)
			}, cleanup: func(int) {
				for _, n := range names {
					run(r.rbd("rm", "--no-progress", n)...)
				}
			}},
			{name: fmt.Sprintf("strata clone --count %d", batch), prepare: func(int) []string {
				seq++
				return r.strata("clone", "rgold", fmt.Sprintf("rc%d", seq), "--count", fmt.Sprint(batch))
			}, cleanup: func(int) {
				for i := 1; i <= batch; i++ {
					run(r.strata("volume", "delete", fmt.Sprintf("rc%d-%d", seq, i))...)
				}
			}},
		},
	}
}

// rbdSpec is POOL/NS/IMAGE of a volume path rbd:POOL/NS/IMAGE:conf=...
func rbdSpec(path string) string {
	s := strings.TrimPrefix(path, "rbd:")
	if i := strings.Index(s, ":"); i >= 0 {
		s = s[:i]
	}
	return s
}

// deleteNewestIn deletes the newest point of a volume of home.
func deleteNewestIn(e env, home, volume string) {
	var ps []struct {
		ID int `json:"id"`
	}
	strataJSON(e, home, &ps, "snapshot", "list", "--volume", volume)
	run(e.strata, "--home", home, "snapshot", "delete", "--volume", volume, fmt.Sprint(ps[len(ps)-1].ID))
}
