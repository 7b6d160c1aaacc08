package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

func init() { groups = append(groups, bootBenches) }

// bootMarker is what the benchmark guests print on their serial port.
const bootMarker = "STRATA-BENCH-UP"

// bootBenches: from `strata guest start` to the guest's first serial line,
// against the same QEMU command line run directly (strata's overhead:
// catalog, checks, QMP set-up, the watcher), and `guest status` of a
// running guest. The guest is a boot sector that prints a line and powers
// off, so QEMU itself takes a few tens of milliseconds and any overhead
// shows.
func bootBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want("guest start") && !e.want("guest status") {
		return nil, nil
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		fatal("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
	}
	home := filepath.Join(e.dir, "home-boot")
	guest := func(name string, then boottest.Action) {
		run(e.strata, "--home", home, "volume", "create", name, "--size", "1M")
		var v struct{ Path string }
		strataJSON(e, home, &v, "volume", "info", name)
		if err := boottest.WriteDisk(v.Path, boottest.BootSector(bootMarker, then)); err != nil {
			fatal("%v", err)
		}
		run(e.strata, "--home", home, "guest", "define", name, "--disk", name, "--memory", "16", "--boot", "c", "--os", "other")
	}
	guest("up", boottest.PowerOff)
	var argv []string
	strataJSON(e, home, &argv, "guest", "render", "up", "--format", "qemu", "--network", "none")
	direct := append(argv, "-serial", "file:"+filepath.Join(e.dir, "direct-serial.log"))
	waitStopped := func(name string) {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			out, err := exec.Command(e.strata, "--home", home, "--output", "json", "guest", "status", name).Output()
			var s struct{ State string }
			if err == nil && json.Unmarshal(out, &s) == nil && s.State == "stopped" {
				return
			}
		}
		fatal("guest %s did not stop", name)
	}
	start := comparison{
		title:     "guest start to the first serial line (boot-sector guest, TCG)",
		reference: "qemu-system-x86_64 directly", rounds: rounds,
		targets: map[string]float64{"strata guest start --wait-serial": 1.1},
		contenders: []contender{
			{name: "qemu-system-x86_64 directly", prepare: func(int) []string { return direct }},
			{name: "strata guest start --wait-serial", prepare: func(int) []string {
				return []string{e.strata, "--home", home, "--log-level", "error", "guest", "start", "up", "--driver", "qemu", "--wait-serial", bootMarker}
			}, cleanup: func(int) { waitStopped("up") }},
		},
	}
	guest("idle", boottest.Halt)
	run(e.strata, "--home", home, "guest", "start", "idle", "--driver", "qemu", "--wait-serial", bootMarker)
	atExit = append(atExit, func() { _ = exec.Command(e.strata, "--home", home, "guest", "kill", "idle").Run() })
	status := comparison{
		title:     "guest status of a running guest",
		reference: "strata guest status", rounds: rounds, maxMedian: 20 * time.Millisecond,
		contenders: []contender{{name: "strata guest status", prepare: func(int) []string {
			return []string{e.strata, "--home", home, "guest", "status", "idle"}
		}}},
	}
	return []comparison{start, status}, nil
}
