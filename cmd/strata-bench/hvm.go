//go:build strata_bench

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-vm/strata/hvm/xlcfg"
)

func init() { groups = append(groups, hvmBenches) }

// corpusDir holds libvirt's converter test configs (see its README).
var corpusDir = "testdata/hvm/libvirt-xenconfig"

// hvmBenches: import + render of every HVM corpus config, whole-process,
// and the xl parser's throughput on a large generated config.
func hvmBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("guest import") && !e.want("xl parser") {
		return nil, nil
	}
	var cfgs []string
	for _, sub := range []string{"xlconfigdata", "xmconfigdata"} {
		m, _ := filepath.Glob(filepath.Join(corpusDir, sub, "*.cfg"))
		cfgs = append(cfgs, m...)
	}
	// Keep the HVM ones: strata refuses PV configs.
	home := filepath.Join(e.dir, "home-hvm")
	var hvmCfgs []string
	for _, c := range cfgs {
		data, err := os.ReadFile(c)
		if err != nil {
			fatal("%v", err)
		}
		if _, _, err := xlcfg.Parse(c, data); err == nil {
			hvmCfgs = append(hvmCfgs, c)
		}
	}
	n := 0
	imp := comparison{
		title:     fmt.Sprintf("guest import + render libvirt, %d corpus configs (per config)", len(hvmCfgs)),
		reference: "strata guest import", rounds: max(rounds, len(hvmCfgs)), maxMedian: 10 * time.Millisecond,
		contenders: []contender{
			{name: "strata guest import", prepare: func(r int) []string {
				// A home per config: corpus configs share MACs, which
				// strata keeps unique within a home.
				n++
				home := fmt.Sprintf("%s-%d", home, n)
				run(e.strata, "--home", home, "pool", "list")
				return []string{e.strata, "--home", home, "--log-level", "error", "guest", "import", hvmCfgs[n%len(hvmCfgs)], "--name", "c"}
			}},
			{name: "strata guest render --format libvirt", prepare: func(r int) []string {
				return []string{e.strata, "--home", fmt.Sprintf("%s-%d", home, n), "--log-level", "error", "guest", "render", "c", "--format", "libvirt", "--allow-exposed", "--allow-missing-disks"}
			}},
		},
	}
	// A large config (under the 1 MiB a config may have): 2,000 disks and
	// NICs in lists, 14,000 extra keys.
	var b strings.Builder
	b.WriteString("name = \"big\"\ntype = \"hvm\"\nmemory = 1024\ndisk = [\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, "  'format=raw, vdev=xvd%d, access=rw, target=/var/lib/xen/images/disk-%d.img',\n", i, i)
	}
	b.WriteString("]\nvif = [\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, "  'mac=00:16:3e:%02x:%02x:%02x, bridge=xenbr%d, model=e1000',\n", i>>16&0xff, i>>8&0xff, i&0xff, i%4)
	}
	b.WriteString("]\n")
	for i := 0; i < 14000; i++ {
		fmt.Fprintf(&b, "x_key_%d = \"value %d\" # a comment\n", i, i)
	}
	big := []byte(b.String())
	parse := comparison{
		title:     fmt.Sprintf("xl parser, generated config of %.1f MiB (in process)", float64(len(big))/(1<<20)),
		reference: "xlcfg.Decode", rounds: rounds,
		contenders: []contender{{name: "xlcfg.Decode", inProcess: func() {
			if _, err := xlcfg.Decode("big.cfg", big); err != nil {
				fatal("parse the generated config: %v", err)
			}
		}}},
	}
	return []comparison{imp, parse}, func(rows []row) []flat {
		if d := find(rows, parse.title, "xlcfg.Decode"); d > 0 {
			fmt.Fprintf(os.Stderr, "xl parser throughput: %.0f MiB/s\n", float64(len(big))/(1<<20)/d.Seconds())
		}
		return nil
	}
}
