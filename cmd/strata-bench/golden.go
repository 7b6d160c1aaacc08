//go:build strata_bench

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-vm/strata/storage"
)

func init() { groups = append(groups, goldenBenches) }

// goldenVirtual and goldenData size the benchmark's golden image (20 GiB
// virtual holding 4 GiB of data, as an installed guest's system disk).
var goldenVirtual, goldenData = "20G", "4G"

const batch = 50

// goldenBenches: linked clones against qemu-img create -b (one, and 50),
// full clones against a virt-clone-style cp --sparse=always.
func goldenBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("clone") {
		return nil, nil
	}
	g := startGoldenBench(e)
	comps := []comparison{g.linkedOne(rounds), g.linkedBatch(rounds), g.full(rounds)}
	return comps, func(rows []row) []flat {
		one := find(rows, "linked clone, "+g.label, "strata clone")
		total := find(rows, fmt.Sprintf("%d linked clones, %s", batch, g.label), fmt.Sprintf("strata clone --count %d", batch))
		if one == 0 || total == 0 {
			return nil
		}
		return []flat{{what: fmt.Sprintf("strata clone: one clone → per clone of --count %d", batch), small: one, large: total / batch, maxRatio: 1.0}}
	}
}

// goldenBench is the clone rows' setting: a home holding golden image
// "gold" (its file gold), a scratch directory for the peers' files, and
// the number of the last clone made (clone names are unique).
type goldenBench struct {
	e       env
	home    string
	gold    string
	scratch string
	label   string
	seq     int
}

func startGoldenBench(e env) *goldenBench {
	data, err := storage.ParseSize(goldenData)
	if err != nil {
		fatal("%v", err)
	}
	g := &goldenBench{e: e, home: filepath.Join(e.dir, "home-golden"), scratch: filepath.Join(e.dir, "golden-peers")}
	var src volumeInfo
	strataJSON(e, g.home, &src, "volume", "create", "gsrc", "--size", goldenVirtual)
	fill(src.Path, "raw", data)
	var gi struct {
		Disks []struct {
			Path string `json:"path"`
		} `json:"disks"`
	}
	strataJSON(e, g.home, &gi, "golden", "create", "gold", "--volume", "gsrc")
	g.gold = gi.Disks[0].Path
	run(e.strata, "--home", g.home, "volume", "delete", "gsrc") // only the golden stays
	if err := os.MkdirAll(g.scratch, 0o700); err != nil {
		fatal("%v", err)
	}
	g.label = fmt.Sprintf("%s golden, %s data", goldenVirtual, storage.FormatSize(data))
	return g
}

func (g *goldenBench) strata(args ...string) []string {
	return append([]string{g.e.strata, "--home", g.home, "--log-level", "warn"}, args...)
}

func (g *goldenBench) deleteVolumes(names ...string) {
	for _, n := range names {
		run(g.strata("volume", "delete", n)...)
	}
}

// linkedOne: one linked clone against one qemu-img overlay.
func (g *goldenBench) linkedOne(rounds int) comparison {
	one := filepath.Join(g.scratch, "one.qcow2")
	return comparison{
		title: "linked clone, " + g.label, reference: "qemu-img create -b", rounds: rounds,
		targets: map[string]float64{"strata clone": 1.75},
		contenders: []contender{
			{name: "qemu-img create -b", prepare: func(int) []string {
				return []string{"qemu-img", "create", "-q", "-f", "qcow2", "-b", g.gold, "-F", "raw", one}
			}, cleanup: func(int) { os.Remove(one) }},
			{name: "strata clone", prepare: func(int) []string {
				g.seq++
				return g.strata("clone", "gold", fmt.Sprintf("l%d", g.seq))
			}, cleanup: func(int) { g.deleteVolumes(fmt.Sprintf("l%d", g.seq)) }},
		},
	}
}

// linkedBatch: 50 linked clones against 50 qemu-img creates, one
// process each, without a shell: xargs runs qemu-img once per line of
// the list.
func (g *goldenBench) linkedBatch(rounds int) comparison {
	list := filepath.Join(g.scratch, "overlays.txt")
	var names []string
	for i := 0; i < batch; i++ {
		names = append(names, filepath.Join(g.scratch, fmt.Sprintf("o%d.qcow2", i)))
	}
	if err := os.WriteFile(list, []byte(strings.Join(names, "\n")+"\n"), 0o600); err != nil {
		fatal("%v", err)
	}
	return comparison{
		title: fmt.Sprintf("%d linked clones, %s", batch, g.label), reference: fmt.Sprintf("qemu-img create -b, %d processes", batch), rounds: min(rounds, 5),
		maxMedian: 5 * time.Second,
		contenders: []contender{
			{name: fmt.Sprintf("qemu-img create -b, %d processes", batch), prepare: func(int) []string {
				return []string{"xargs", "-a", list, "-n", "1", "qemu-img", "create", "-q", "-f", "qcow2", "-b", g.gold, "-F", "raw"}
			}, cleanup: func(int) {
				for _, n := range names {
					os.Remove(n)
				}
			}},
			{name: fmt.Sprintf("strata clone --count %d", batch), prepare: func(int) []string {
				g.seq++
				return g.strata("clone", "gold", fmt.Sprintf("b%d", g.seq), "--count", fmt.Sprint(batch))
			}, cleanup: func(int) {
				for i := 1; i <= batch; i++ {
					g.deleteVolumes(fmt.Sprintf("b%d-%d", g.seq, i))
				}
			}},
		},
	}
}

// full: a full clone against a virt-clone-style cp --sparse=always.
func (g *goldenBench) full(rounds int) comparison {
	full := filepath.Join(g.scratch, "full.img")
	return comparison{
		title: "full clone, " + g.label, reference: "cp --sparse=always + sync", rounds: min(rounds, 3), settle: true,
		targets: map[string]float64{"strata clone --full": 1.0},
		contenders: []contender{
			{name: "cp --sparse=always", prepare: func(int) []string {
				return []string{"cp", "--sparse=always", g.gold, full}
			}, cleanup: func(int) { os.Remove(full) }},
			// The same copy made durable, as strata makes it before
			// recording the clone (find runs both, without a shell).
			{name: "cp --sparse=always + sync", prepare: func(int) []string {
				return cpSync(g.gold, full)
			}, cleanup: func(int) { os.Remove(full) }},
			{name: "strata clone --full", prepare: func(int) []string {
				g.seq++
				return g.strata("clone", "gold", fmt.Sprintf("f%d", g.seq), "--full")
			}, cleanup: func(int) { g.deleteVolumes(fmt.Sprintf("f%d", g.seq)) }},
		},
	}
}
