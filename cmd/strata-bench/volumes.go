//go:build strata_bench

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-vm/strata/storage"
)

func init() { groups = append(groups, volumeBenches) }

// volumeBenches: creating a volume against truncate, qemu-img and the
// classic dd recipe.
func volumeBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("create") {
		return nil, nil
	}
	path := func(tool string, round int, ext string) string {
		return filepath.Join(e.dir, fmt.Sprintf("%s-%d.%s", tool, round, ext))
	}
	rm := func(tool, ext string) func(int) {
		return func(round int) { os.Remove(path(tool, round, ext)) }
	}
	// The floor: a minimal Go program doing only what a create must do
	// (one durable bbolt commit and a sparse file), built like strata.
	floor := filepath.Join(e.dir, "floor")
	run("go", "build", "-o", floor, "./cmd/strata-bench/floor")
	floorDir := filepath.Join(e.dir, "floor.d")
	if err := os.MkdirAll(floorDir, 0o700); err != nil {
		fatal("%v", err)
	}
	seq := 0
	strataCreate := func(size, format string) contender {
		return contender{name: "strata volume create", prepare: func(round int) []string {
			seq++
			return []string{e.strata, "--home", e.home, "--log-level", "warn", "volume", "create", fmt.Sprintf("b%s-%s-%d", format, size, seq), "--size", size, "--format", format}
		}}
	}
	raw := func(size string, withDD bool) comparison {
		c := comparison{
			title: "raw create " + size, reference: "qemu-img create -f raw", rounds: rounds,
			targets: map[string]float64{"strata volume create": 1.0},
			contenders: []contender{
				{name: "truncate", prepare: func(r int) []string { return []string{"truncate", "-s", size, path("t", r, "img")} }, cleanup: rm("t", "img")},
				{name: "floor: Go + durable bbolt commit + sparse file", prepare: func(r int) []string {
					seq++
					n, err := storage.ParseSize(size)
					if err != nil {
						fatal("%v", err)
					}
					return []string{floor, floorDir, fmt.Sprintf("f%s-%d", size, seq), fmt.Sprint(n)}
				}},
				strataCreate(size, "raw"),
				{name: "qemu-img create -f raw", prepare: func(r int) []string {
					return []string{"qemu-img", "create", "-q", "-f", "raw", path("q", r, "img"), size}
				}, cleanup: rm("q", "img")},
			},
		}
		if withDD {
			c.rounds = 3
			c.contenders = append(c.contenders, contender{name: "dd if=/dev/zero bs=1M", prepare: func(r int) []string {
				return []string{"dd", "if=/dev/zero", "of=" + path("dd", r, "img"), "bs=1M", "count=1024", "conv=fsync", "status=none"}
			}, cleanup: rm("dd", "img")})
		}
		return c
	}
	comps := []comparison{
		raw("1G", true),
		raw("100G", false),
		raw("10T", false),
		{
			title: "qcow2 create 100G", reference: "qemu-img create -f qcow2", rounds: rounds,
			targets: map[string]float64{"strata volume create": 1.75},
			contenders: []contender{
				{name: "qemu-img create -f qcow2", prepare: func(r int) []string {
					return []string{"qemu-img", "create", "-q", "-f", "qcow2", path("q", r, "qcow2"), "100G"}
				}, cleanup: rm("q", "qcow2")},
				{name: "floor: Go + qemu-img + durable bbolt commit", prepare: func(r int) []string {
					seq++
					return []string{floor, floorDir, fmt.Sprintf("q-%d", seq), fmt.Sprint(int64(100) << 30), "qcow2"}
				}},
				strataCreate("100G", "qcow2"),
			},
		},
	}
	return comps, func(rows []row) []flat {
		return []flat{{
			what:  "strata raw create, 1G → 10T",
			small: find(rows, "raw create 1G", "strata volume create"), large: find(rows, "raw create 10T", "strata volume create"),
			maxRatio: 1.5,
		}}
	}
}

func init() { groups = append(groups, importBenches) }

// importData is how much data the copy-import benchmark's image holds.
var importData = "1G"

// importBenches: volume import --copy of a sparse raw image against cp
// --sparse=always followed by sync (durable against durable: strata
// records the volume only once its copy is on disk); plain cp for
// reference.
func importBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("import") {
		return nil, nil
	}
	data, err := storage.ParseSize(importData)
	if err != nil {
		fatal("%v", err)
	}
	src := filepath.Join(e.dir, "import-src.img")
	run("truncate", "-s", "20G", src)
	fill(src, "raw", data)
	dst := filepath.Join(e.dir, "import-cp.img")
	seq := 0
	label := fmt.Sprintf("raw 20G, %s data", storage.FormatSize(data))
	return []comparison{{
		title: "volume import --copy, " + label, reference: "cp --sparse=always + sync", rounds: min(rounds, 3), settle: true,
		targets: map[string]float64{"strata volume import --copy": 1.0},
		contenders: []contender{
			{name: "cp --sparse=always", prepare: func(int) []string { return []string{"cp", "--sparse=always", src, dst} },
				cleanup: func(int) { os.Remove(dst) }},
			{name: "cp --sparse=always + sync", prepare: func(int) []string { return cpSync(src, dst) },
				cleanup: func(int) { os.Remove(dst) }},
			{name: "strata volume import --copy", prepare: func(int) []string {
				seq++
				return []string{e.strata, "--home", e.home, "--log-level", "warn", "volume", "import", src, "--copy", "--format", "raw", "--name", fmt.Sprintf("imp%d", seq)}
			}, cleanup: func(int) { run(e.strata, "--home", e.home, "volume", "delete", fmt.Sprintf("imp%d", seq)) }},
		},
	}}, nil
}
