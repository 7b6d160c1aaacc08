//go:build strata_bench

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func init() { groups = append(groups, mediaBenches) }

var isoSize = int64(2 << 30)

// dropCaches makes the next read come from the device (root only).
func dropCaches() {
	_ = exec.Command("sync").Run()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// mediaBenches: capturing an ISO from a loop device, cold caches, against
// dd (no checksum) and dd | sha256sum (what an admin runs for a checksum).
func mediaBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("iso capture") {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "strata-bench: not root: no loop device, the iso capture rows are left out")
		return nil, nil
	}
	src := filepath.Join(e.dir, "iso-src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		fatal("%v", err)
	}
	run("dd", "if=/dev/urandom", "of="+filepath.Join(src, "payload.bin"), "bs=1M", fmt.Sprintf("count=%d", isoSize>>20), "status=none")
	iso := filepath.Join(e.dir, "bench.iso")
	run("xorriso", "-as", "mkisofs", "-quiet", "-R", "-V", "BENCH", "-o", iso, src)
	os.RemoveAll(src)
	out, err := exec.Command("losetup", "-r", "-f", "--show", iso).Output()
	if err != nil {
		fatal("losetup %s: %v", iso, err)
	}
	dev := strings.TrimSpace(string(out))
	atExit = append(atExit, func() { _ = exec.Command("losetup", "-d", dev).Run(); os.Remove(iso) })
	dst := filepath.Join(e.dir, "captured.iso")
	n := 0
	c := comparison{
		title: "iso capture 2G from a loop device (cold cache)", reference: "dd bs=1M", rounds: min(rounds, 5),
		targets: map[string]float64{"strata iso capture": 1 / 0.9},
		maxRSS:  map[string]int64{"strata iso capture": 64 << 20},
		contenders: []contender{
			{name: "dd bs=1M", prepare: func(int) []string {
				dropCaches()
				return []string{"dd", "if=" + dev, "of=" + dst, "bs=1M", "conv=fsync", "status=none"}
			}, cleanup: func(int) { os.Remove(dst) }},
			{name: "dd bs=1M | sha256sum", prepare: func(int) []string {
				dropCaches()
				return []string{"sh", "-c", "dd if=" + dev + " bs=1M status=none | sha256sum >/dev/null"}
			}},
			{name: "strata iso capture", prepare: func(int) []string {
				dropCaches()
				n++
				return []string{e.strata, "--home", e.home, "--log-level", "warn", "iso", "capture", dev, fmt.Sprintf("cap%d", n)}
			}, cleanup: func(int) {
				run(e.strata, "--home", e.home, "iso", "delete", fmt.Sprintf("cap%d", n))
			}},
		},
	}
	return []comparison{c}, nil
}
