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
	data, err := storage.ParseSize(goldenData)
	if err != nil {
		fatal("%v", err)
	}
	home := filepath.Join(e.dir, "home-golden")
	var src volumeInfo
	strataJSON(e, home, &src, "volume", "create", "gsrc", "--size", goldenVirtual)
	fill(src.Path, "raw", data)
	var g struct {
		Disks []struct {
			Path string `json:"path"`
		} `json:"disks"`
	}
	strataJSON(e, home, &g, "golden", "create", "gold", "--volume", "gsrc")
	gold := g.Disks[0].Path
	run(e.strata, "--home", home, "volume", "delete", "gsrc") // only the golden stays
	scratch := filepath.Join(e.dir, "golden-peers")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		fatal("%v", err)
	}
	strataArgs := func(args ...string) []string {
		return append([]string{e.strata, "--home", home, "--log-level", "warn"}, args...)
	}
	seq := 0
	deleteVolumes := func(names ...string) {
		for _, n := range names {
			run(strataArgs("volume", "delete", n)...)
		}
	}
	label := fmt.Sprintf("%s golden, %s data", goldenVirtual, storage.FormatSize(data))

	// 50 qemu-img creates, one process each, without a shell: xargs runs
	// qemu-img once per line of the list.
	list := filepath.Join(scratch, "overlays.txt")
	var names []string
	for i := 0; i < batch; i++ {
		names = append(names, filepath.Join(scratch, fmt.Sprintf("o%d.qcow2", i)))
	}
	if err := os.WriteFile(list, []byte(strings.Join(names, "\n")+"\n"), 0o600); err != nil {
		fatal("%v", err)
	}
	comps := []comparison{
		{
			title: "linked clone, " + label, reference: "qemu-img create -b", rounds: rounds,
			targets: map[string]float64{"strata clone": 1.75},
			contenders: []contender{
				{name: "qemu-img create -b", prepare: func(int) []string {
					return []string{"qemu-img", "create", "-q", "-f", "qcow2", "-b", gold, "-F", "raw", filepath.Join(scratch, "one.qcow2")}
				}, cleanup: func(int) { os.Remove(filepath.Join(scratch, "one.qcow2")) }},
				{name: "strata clone", prepare: func(int) []string {
					seq++
					return strataArgs("clone", "gold", fmt.Sprintf("l%d", seq))
				}, cleanup: func(int) { deleteVolumes(fmt.Sprintf("l%d", seq)) }},
			},
		},
		{
			title: fmt.Sprintf("%d linked clones, %s", batch, label), reference: fmt.Sprintf("qemu-img create -b, %d processes", batch), rounds: min(rounds, 5),
			maxMedian: 5 * time.Second,
			contenders: []contender{
				{name: fmt.Sprintf("qemu-img create -b, %d processes", batch), prepare: func(int) []string {
					return []string{"xargs", "-a", list, "-n", "1", "qemu-img", "create", "-q", "-f", "qcow2", "-b", gold, "-F", "raw"}
				}, cleanup: func(int) {
					for _, n := range names {
						os.Remove(n)
					}
				}},
				{name: fmt.Sprintf("strata clone --count %d", batch), prepare: func(int) []string {
					seq++
					return strataArgs("clone", "gold", fmt.Sprintf("b%d", seq), "--count", fmt.Sprint(batch))
				}, cleanup: func(int) {
					for i := 1; i <= batch; i++ {
						deleteVolumes(fmt.Sprintf("b%d-%d", seq, i))
					}
				}},
			},
		},
		{
			title: "full clone, " + label, reference: "cp --sparse=always + sync", rounds: min(rounds, 3), settle: true,
			targets: map[string]float64{"strata clone --full": 1.0},
			contenders: []contender{
				{name: "cp --sparse=always", prepare: func(int) []string {
					return []string{"cp", "--sparse=always", gold, filepath.Join(scratch, "full.img")}
				}, cleanup: func(int) { os.Remove(filepath.Join(scratch, "full.img")) }},
				// The same copy made durable, as strata makes it before
				// recording the clone (find runs both, without a shell).
				{name: "cp --sparse=always + sync", prepare: func(int) []string {
					return cpSync(gold, filepath.Join(scratch, "full.img"))
				}, cleanup: func(int) { os.Remove(filepath.Join(scratch, "full.img")) }},
				{name: "strata clone --full", prepare: func(int) []string {
					seq++
					return strataArgs("clone", "gold", fmt.Sprintf("f%d", seq), "--full")
				}, cleanup: func(int) { deleteVolumes(fmt.Sprintf("f%d", seq)) }},
			},
		},
	}
	return comps, func(rows []row) []flat {
		one := find(rows, "linked clone, "+label, "strata clone")
		total := find(rows, fmt.Sprintf("%d linked clones, %s", batch, label), fmt.Sprintf("strata clone --count %d", batch))
		if one == 0 || total == 0 {
			return nil
		}
		return []flat{{what: fmt.Sprintf("strata clone: one clone → per clone of --count %d", batch), small: one, large: total / batch, maxRatio: 1.0}}
	}
}
