//go:build strata_bench

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
)

func init() { groups = append(groups, snapshotBenches) }

var snapshotData = "256M" // the 1x data size; the benchmark uses 1x, 4x, 16x

// strataJSON runs strata with --output json and decodes the result.
func strataJSON(e env, home string, v any, args ...string) {
	out, err := exec.Command(e.strata, append([]string{"--home", home, "--log-level", "error", "--output", "json"}, args...)...).Output()
	if err != nil {
		fatal("strata %v: %v", args, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		fatal("strata %v: %v", args, err)
	}
}

// fill writes n bytes of data from the start of an image, 64 MiB per
// qemu-io request (a request is one buffer in qemu-io's memory).
func fill(path, format string, n int64) {
	argv := []string{"qemu-io", "-f", format}
	for off := int64(0); off < n; off += 64 << 20 {
		argv = append(argv, "-c", fmt.Sprintf("write -P 0x5a %d %d", off, min(64<<20, n-off)))
	}
	run(append(argv, path)...)
}

// loopFS mounts a fresh filesystem of type fs on a sparse file in dir.
func loopFS(dir, fs string, size int64) (mnt string) {
	img := filepath.Join(dir, fs+".fs")
	run("truncate", "-s", fmt.Sprint(size), img)
	switch fs {
	case "xfs":
		run("mkfs.xfs", "-q", "-m", "reflink=1", img)
	}
	mnt = filepath.Join(dir, fs+"-mnt")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		fatal("%v", err)
	}
	run("mount", "-o", "loop", img, mnt)
	atExit = append(atExit, func() { _ = exec.Command("umount", mnt).Run(); os.Remove(img) })
	return mnt
}

// snapshotBenches: restore points per method at 1x/4x/16x data, against
// qemu-img snapshot and cp --sparse=always; listing among 10,000 points.
func snapshotBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("snapshot") {
		return nil, nil
	}
	unit, err := storage.ParseSize(snapshotData)
	if err != nil {
		fatal("%v", err)
	}
	var comps []comparison
	sizes := []int64{unit, 4 * unit, 16 * unit}
	// Raw: reflink on XFS, full copy on the scratch filesystem, both
	// against the naive copy.
	pools := []rawPool{{"default", "copy"}}
	if os.Geteuid() == 0 {
		xfs := loopFS(e.dir, "xfs", 24<<30)
		run(e.strata, "--home", e.home, "pool", "add", "xfs", "--path", filepath.Join(xfs, "pool"))
		pools = append(pools, rawPool{"xfs", "reflink"})
	} else {
		fmt.Fprintln(os.Stderr, "strata-bench: not root: no XFS loop mount, the reflink rows are left out")
	}
	for i, n := range sizes {
		comps = append(comps, qcow2Comparisons(e, i, n, rounds)...)
		for _, p := range pools {
			comps = append(comps, rawComparisons(e, p, i, n, rounds)...)
		}
	}
	comps = append(comps, listAmongMany(e, rounds), createAmongMany(e, rounds))
	return comps, func(rows []row) []flat { return snapshotFlats(rows, sizes) }
}

// qcow2Comparisons: strata's internal snapshots of volume q<i>, holding
// n bytes, against qemu-img's own.
func qcow2Comparisons(e env, i int, n int64, rounds int) []comparison {
	var q volumeInfo
	strataJSON(e, e.home, &q, "volume", "create", fmt.Sprintf("q%d", i), "--size", "20G", "--format", "qcow2")
	fill(q.Path, "qcow2", n)
	// Points to roll back to, untimed: strata's 1 and qemu-img's bench-0.
	run(e.strata, "--home", e.home, "snapshot", "create", "--volume", q.Name)
	run("qemu-img", "snapshot", "-c", "bench-0", q.Path)
	return []comparison{qcow2Create(e, "snapshot create, qcow2, "+dataLabel(n), q, rounds), {
		title: "snapshot rollback, qcow2, " + dataLabel(n), reference: "qemu-img snapshot -a", rounds: rounds,
		contenders: []contender{
			{name: "qemu-img snapshot -a", prepare: func(int) []string { return []string{"qemu-img", "snapshot", "-a", "bench-0", q.Path} }},
			{name: "strata snapshot rollback", prepare: func(int) []string {
				return []string{e.strata, "--home", e.home, "--log-level", "warn", "snapshot", "rollback", "--volume", q.Name, "1"}
			}},
		},
	}}
}

// rawPool is a pool of the raw rows and the point method it gives.
type rawPool struct{ pool, method string }

// rawComparisons: points of a raw volume in pool p, holding n bytes,
// against copying it.
func rawComparisons(e env, p rawPool, i int, n int64, rounds int) []comparison {
	var r volumeInfo
	name := fmt.Sprintf("r%s%d", p.method, i)
	strataJSON(e, e.home, &r, "volume", "create", name, "--size", "20G", "--pool", p.pool)
	fill(r.Path, "raw", n)
	// Point 1, untimed, for the rollbacks to go back to.
	run(e.strata, "--home", e.home, "snapshot", "create", "--volume", name)
	cpDst := filepath.Join(filepath.Dir(r.Path), "cp-copy.img")
	// Durable against durable: a point exists only once its data
	// is on disk, as a copy does only after sync (plain cp stays
	// for reference).
	c := comparison{
		title: fmt.Sprintf("snapshot create, raw %s, %s", p.method, dataLabel(n)), reference: "cp --sparse=always + sync",
		rounds: min(rounds, 3), settle: true,
		contenders: []contender{
			{name: "cp --sparse=always", prepare: func(int) []string { return []string{"cp", "--sparse=always", r.Path, cpDst} },
				cleanup: func(int) { os.Remove(cpDst) }},
			{name: "cp --sparse=always + sync", prepare: func(int) []string { return cpSync(r.Path, cpDst) },
				cleanup: func(int) { os.Remove(cpDst) }},
			{name: "strata snapshot create", prepare: func(int) []string {
				return []string{e.strata, "--home", e.home, "--log-level", "error", "snapshot", "create", "--volume", name}
			}, cleanup: func(int) { deleteNewest(e, name) }}, // copies must not fill the disk
		},
	}
	if p.method == "copy" {
		c.targets = map[string]float64{"strata snapshot create": 1.0}
		// What writing the data to disk takes at the least: the
		// bound of any copy that is durable when it ends. (Not
		// beside reflinks: freeing gigabytes it wrote would slow
		// the O(1) rows after it.)
		c.contenders = slices.Insert(c.contenders, 2, contender{name: "dd oflag=direct (the data, to disk)", prepare: func(int) []string {
			return []string{"dd", "if=" + r.Path, "of=" + cpDst, "bs=16M", fmt.Sprintf("count=%d", n>>24), "oflag=direct", "conv=fsync", "status=none"}
		}, cleanup: func(int) { os.Remove(cpDst) }})
	}
	return []comparison{c, {
		title: fmt.Sprintf("snapshot rollback, raw %s, %s", p.method, dataLabel(n)), reference: "cp --sparse=always",
		rounds: min(rounds, 3), settle: true,
		contenders: []contender{
			{name: "cp --sparse=always", prepare: func(int) []string { return []string{"cp", "--sparse=always", r.Path, cpDst} },
				cleanup: func(int) { os.Remove(cpDst) }},
			{name: "strata snapshot rollback", prepare: func(int) []string {
				return []string{e.strata, "--home", e.home, "--log-level", "error", "snapshot", "rollback", "--volume", name, "1"}
			}, cleanup: func(int) { deleteNewest(e, name) }}, // the pre-rollback point
		},
	}}
}

// snapshotFlats: how the strata rows (and qemu-img's) grow from 1x to
// 16x data, and from a few points to 10,000.
func snapshotFlats(rows []row, sizes []int64) []flat {
	var fl []flat
	if many := find(rows, manyTitle, "strata snapshot create"); many > 0 {
		fl = append(fl, flat{what: "strata snapshot create, qcow2: a few points → 10,000 on the volume",
			small: find(rows, "snapshot create, qcow2, "+dataLabel(sizes[0]), "strata snapshot create"), large: many, maxRatio: 1.5})
	}
	methods := []string{"qcow2", "raw reflink"}
	for _, m := range methods {
		for _, op := range []string{"create", "rollback"} {
			at := func(size int64, who string) time.Duration {
				return find(rows, fmt.Sprintf("snapshot %s, %s, %s", op, m, dataLabel(size)), who)
			}
			own := flat{what: fmt.Sprintf("strata snapshot %s, %s, 1x → 16x data", op, m), small: at(sizes[0], "strata snapshot "+op), large: at(sizes[2], "strata snapshot "+op), maxRatio: 1.5}
			var peer flat
			if m == "qcow2" {
				// qemu-img's own internal snapshots update a refcount per
				// allocated cluster: strata, which runs it, can be no
				// flatter than it, so its own scaling is the bound when
				// steeper than 1.5x.
				tool := map[string]string{"create": "qemu-img snapshot -c", "rollback": "qemu-img snapshot -a"}[op]
				peer = flat{what: tool + ", 1x → 16x data", small: at(sizes[0], tool), large: at(sizes[2], tool)}
				if peer.small > 0 && peer.large > 0 {
					if r := float64(peer.large) / float64(peer.small); r > own.maxRatio {
						own.maxRatio = r
						own.what += " (bound: qemu-img's own scaling)"
					}
				}
			}
			for _, f := range []flat{own, peer} {
				if f.small > 0 && f.large > 0 {
					fl = append(fl, f)
				}
			}
		}
	}
	return fl
}

type volumeInfo struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// listAmongMany measures listing one guest's points when the catalog holds
// 10,000 (100 guests of 100 points, recorded directly in the catalog).
func listAmongMany(e env, rounds int) comparison {
	home := filepath.Join(e.dir, "home-10k")
	for g := 0; g < 100; g++ { // the points are recorded directly: no disks needed
		run(e.strata, "--home", home, "--log-level", "error", "guest", "define", fmt.Sprintf("g%03d", g), "--memory", "2048", "--vcpus", "2", "--os", "win2003",
			"--nic", "bridge=xenbr0,model=e1000", "--vnc", "--tablet", "--viridian", "--boot", "dc", "--on-crash", "restart") // a typical Windows guest: each point carries its definition
	}
	cat, err := catalog.Open(home, time.Minute)
	if err != nil {
		fatal("%v", err)
	}
	err = cat.Update(func(tx *catalog.Tx) error {
		guests, err := tx.Guests()
		if err != nil {
			return err
		}
		for _, g := range guests {
			t := snapshot.Target{Key: catalog.GuestKey(g.ID), Name: g.Name}
			if err := snapshot.PutSyntheticPoints(tx, t, 100, time.Now().Add(-time.Hour*24*30)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		fatal("%v", err)
	}
	var all []snapshot.Point
	strataJSON(e, home, &all, "snapshot", "list")
	if len(all) != 10000 {
		fatal("expected 10000 points, found %d", len(all))
	}
	return comparison{
		title: "snapshot list, one guest among 10,000 points", reference: "strata snapshot list g050", rounds: rounds,
		maxMedian: 100 * time.Millisecond,
		contenders: []contender{{name: "strata snapshot list g050", prepare: func(int) []string {
			return []string{e.strata, "--home", home, "snapshot", "list", "g050"}
		}}},
	}
}

const manyTitle = "snapshot create, qcow2, 256M data, 10,000 points on the volume"

// createAmongMany measures taking a point of a volume that already has
// 10,000 (recorded directly in the catalog): the catalog work of a point
// must not grow with the target's history.
func createAmongMany(e env, rounds int) comparison {
	var q volumeInfo
	strataJSON(e, e.home, &q, "volume", "create", "many", "--size", "20G", "--format", "qcow2")
	fill(q.Path, "qcow2", 256<<20)
	cat, err := catalog.Open(e.home, time.Minute)
	if err != nil {
		fatal("%v", err)
	}
	if err := cat.Update(func(tx *catalog.Tx) error {
		v, err := tx.Volume("many")
		if err != nil {
			return err
		}
		return snapshot.PutSyntheticPoints(tx, snapshot.Target{Key: catalog.VolumeKey(v.ID), Name: v.Name}, 10000, time.Now().Add(-time.Hour*24*500))
	}); err != nil {
		fatal("%v", err)
	}
	run("qemu-img", "snapshot", "-c", "bench-0", q.Path)
	return qcow2Create(e, manyTitle, q, rounds)
}

// qcow2Create compares taking a point of qcow2 volume q with strata and
// with qemu-img snapshot -c (whose snapshot bench-0 must exist).
func qcow2Create(e env, title string, q volumeInfo, rounds int) comparison {
	qn := 0
	return comparison{
		title: title, reference: "qemu-img snapshot -c", rounds: rounds,
		targets: map[string]float64{"strata snapshot create": 1.6},
		contenders: []contender{
			{name: "qemu-img snapshot -c", prepare: func(int) []string {
				qn++
				return []string{"qemu-img", "snapshot", "-c", fmt.Sprintf("bench-%d", qn), q.Path}
			}},
			{name: "strata snapshot create", prepare: func(int) []string {
				return []string{e.strata, "--home", e.home, "--log-level", "warn", "snapshot", "create", "--volume", q.Name}
			}},
		},
	}
}

// deleteNewest deletes a volume's newest restore point (untimed cleanup).
func deleteNewest(e env, volume string) {
	var ps []snapshot.Point
	strataJSON(e, e.home, &ps, "snapshot", "list", "--volume", volume)
	run(e.strata, "--home", e.home, "snapshot", "delete", "--volume", volume, fmt.Sprint(ps[len(ps)-1].ID))
}
