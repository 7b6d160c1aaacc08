//go:build strata_bench

package main

// LVM restore points against the bare LVM commands. The host has no
// device-mapper, so this group boots the LVM test guest (hvm/boot/boottest
// LVMSpec) with a static strata and a static copy of this program, which
// runs the comparisons there (-lvm-guest) and prints their table; the
// host prints it as it comes. Times are TCG's, so only the ratios mean
// anything.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

func init() { groups = append(groups, lvmBenches) }

var lvmGuest = flag.Bool("lvm-guest", false, "run the LVM comparisons here (inside the LVM test guest; make bench boots it)")

const lvmTitle = "lvm"

// lvmBenches boots the guest that measures the LVM rows; it adds no rows
// to the host's table (the guest prints its own).
func lvmBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want(lvmTitle) {
		return nil, nil
	}
	fmt.Fprintf(os.Stderr, "measuring: lvm (in a TCG guest)\n")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	k, err := boottest.BuildRunKit(ctx, "", boottest.LVMSpec)
	if err != nil {
		fatal("the LVM guest kit: %v", err)
	}
	bench, strata := filepath.Join(e.dir, "strata-bench.static"), filepath.Join(e.dir, "strata.static")
	for _, b := range [][]string{{"-o", bench, "./cmd/strata-bench"}, {"-tags", "urfave_cli_no_docs", "-o", strata, "./cmd/strata"}} {
		cmd := exec.Command("go", append([]string{"build"}, b...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			fatal("go build %v (make bench runs from the top of the module): %v\n%s", b, err, out)
		}
	}
	var out strings.Builder
	res, err := k.Run(ctx, boottest.RunOptions{Program: bench, Args: []string{"-lvm-guest", "-strata", "/strata/bin/strata", "-rounds", fmt.Sprint(min(rounds, 9))},
		Files: map[string]string{"strata/bin/strata": strata}, Disks: []int64{3 << 30}, MemoryMiB: 768, Output: &out})
	if err != nil || res.ExitCode != 0 {
		fatal("the LVM guest: %v\n%s", err, out.String())
	}
	fmt.Println("LVM, inside a TCG guest (times are emulated; the ratios are what counts):")
	fmt.Println()
	fmt.Print(out.String())
	fmt.Println()
	return nil, nil
}

// lvmGuestMain measures the LVM comparisons inside the guest.
func lvmGuestMain(strataBin string, rounds int) {
	disks := strings.Fields(os.Getenv(boottest.DisksEnv))
	if len(disks) == 0 {
		fatal("no scratch disk (-lvm-guest runs inside the LVM test guest)")
	}
	l := lvmGuestBench{e: env{strata: strataBin, dir: "/tmp", home: "/tmp/home"}, vg: "bvg", thin: "bthin", rounds: rounds}
	run("lvm", "vgcreate", "--yes", l.vg, disks[0])
	run("lvm", "lvcreate", "--yes", "--type", "thin-pool", "-n", l.thin, "-L", "2G", l.vg)
	run(l.strata("pool", "add", "thin", "--driver", "lvm", "--vg", l.vg, "--thinpool", l.thin, "--errorwhenfull")...)
	run(l.strata("pool", "add", "thick", "--driver", "lvm", "--vg", l.vg)...)
	const unit = 8 << 20 // 1x data
	l.volume("t1", "thin", unit)
	l.volume("t16", "thin", 16*unit)
	l.volume("k1", "thick", unit)
	l.bare("b1", unit, false)
	l.bare("b16", 16*unit, false)
	l.bare("bk1", unit, true)
	comps := []comparison{
		l.point("lvm thin point (8 MiB written)", "t1", "b1", false),
		l.rollback("lvm thin rollback (8 MiB written)", "t1", "b1"),
		l.rollback("lvm thin rollback (128 MiB written)", "t16", "b16"),
		l.point("lvm thick point (8 MiB volume data, 100% snapshot)", "k1", "bk1", true),
	}
	var rows []row
	for _, c := range comps {
		fmt.Fprintf(os.Stderr, "measuring: %s\n", c.title)
		rows = append(rows, c.measure()...)
	}
	flats := []flat{
		{what: "lvm thin rollback, strata: 16x data / 1x", small: find(rows, comps[1].title, "strata"), large: find(rows, comps[2].title, "strata"), maxRatio: 1.5},
		{what: "lvm thin rollback, by hand: 16x data / 1x", small: find(rows, comps[1].title, comps[1].reference), large: find(rows, comps[2].title, comps[2].reference)},
	}
	if failed := report(rows, flats); failed > 0 {
		fmt.Printf("\n%d target(s) missed\n", failed)
	}
}

// lvmGuestBench is the LVM rows' setting in the guest: strata's home,
// the VG and its thin pool.
type lvmGuestBench struct {
	e        env
	vg, thin string
	rounds   int
}

func (l lvmGuestBench) strata(args ...string) []string {
	return append([]string{l.e.strata, "--home", l.e.home, "--log-level", "error"}, args...)
}

// volume makes a strata volume of twice data in pool, data written.
func (l lvmGuestBench) volume(name, pool string, data int64) string {
	run(l.strata("volume", "create", name, "--pool", pool, "--format", "raw", "--size", fmt.Sprint(2*data))...)
	var v struct {
		Path string `json:"path"`
	}
	strataJSON(l.e, l.e.home, &v, "volume", "info", name)
	fillDev(v.Path, data)
	return v.Path
}

// bare makes the same by hand: an LV (thin, or thick) with data written.
func (l lvmGuestBench) bare(name string, data int64, thick bool) {
	if thick {
		run("lvm", "lvcreate", "--yes", "-n", name, "-L", fmt.Sprint(2*data)+"b", l.vg)
	} else {
		run("lvm", "lvcreate", "--yes", "-n", name, "-V", fmt.Sprint(2*data)+"b", "--thinpool", l.vg+"/"+l.thin)
	}
	fillDev("/dev/"+l.vg+"/"+name, data)
}

// point: a restore point of vol against lvcreate -s of bareLV.
func (l lvmGuestBench) point(title, vol, bareLV string, thick bool) comparison {
	bareArgs := func(round int) []string {
		a := []string{"lvm", "lvcreate", "--yes", "-s", "-n", fmt.Sprintf("%s.p%d", bareLV, round+1), "-p", "r"}
		if thick {
			a = append(a, "-l", "100%ORIGIN")
		} else {
			a = append(a, "-k", "y", "-a", "n")
		}
		return append(a, l.vg+"/"+bareLV)
	}
	return comparison{title: title, reference: "lvcreate -s", rounds: l.rounds, targets: map[string]float64{"strata": 1.5},
		contenders: []contender{
			{name: "lvcreate -s", prepare: bareArgs, cleanup: func(round int) {
				run("lvm", "lvremove", "--yes", fmt.Sprintf("%s/%s.p%d", l.vg, bareLV, round+1))
			}},
			{name: "strata", prepare: func(round int) []string {
				return l.strata("snapshot", "create", "--volume", vol, "--name", fmt.Sprintf("p%d", round+1))
			}, cleanup: func(round int) {
				run(l.strata("snapshot", "delete", "--volume", vol, fmt.Sprintf("p%d", round+1))...)
			}},
		}}
}

// rollback: strata's, against the same rename-away by hand (a writable
// thin snapshot of the point, the live LV renamed aside and kept, the
// new LV renamed to the live name).
func (l lvmGuestBench) rollback(title, vol, bareLV string) comparison {
	vg := l.vg
	run(l.strata("snapshot", "create", "--volume", vol, "--name", "base")...)
	run("lvm", "lvcreate", "--yes", "-s", "-n", bareLV+".base", "-p", "r", "-k", "y", "-a", "n", vg+"/"+bareLV)
	return comparison{title: title, reference: "lvcreate -s + 2 lvrename", rounds: l.rounds, targets: map[string]float64{"strata": 1.5},
		contenders: []contender{
			{name: "lvcreate -s + 2 lvrename", sample: func(round int) time.Duration {
				tmp, old := bareLV+".tmp", fmt.Sprintf("%s.old%d", bareLV, round+1)
				start := time.Now()
				run("lvm", "lvcreate", "--yes", "-s", "-n", tmp, "-p", "rw", "-k", "n", "-a", "y", vg+"/"+bareLV+".base")
				run("lvm", "lvrename", vg, bareLV, old)
				run("lvm", "lvrename", vg, tmp, bareLV)
				return time.Since(start)
			}},
			{name: "strata", prepare: func(int) []string {
				return l.strata("snapshot", "rollback", "--volume", vol, "base")
			}},
		}}
}

// fillDev writes n bytes of 0x5a from the start of a block device, synced.
func fillDev(path string, n int64) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		fatal("%v", err)
	}
	defer f.Close()
	buf := []byte(strings.Repeat("\x5a", 1<<20))
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			fatal("write %s: %v", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		fatal("sync %s: %v", path, err)
	}
}
