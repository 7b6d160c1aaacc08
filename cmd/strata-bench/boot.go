//go:build strata_bench

package main

import (
	"encoding/json"
	"os"
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
// shows. Both spans end when the line is in the serial log, as the
// harness sees it.
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
	directLog := filepath.Join(e.dir, "direct-serial.log")
	direct := append(argv, "-serial", "file:"+directLog)
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
	// One untimed boot finds the guest's serial log (HOME/run/ID/).
	run(e.strata, "--home", home, "guest", "start", "up", "--driver", "qemu", "--wait-serial", bootMarker)
	waitStopped("up")
	logs, _ := filepath.Glob(filepath.Join(home, "run", "*", "serial.log"))
	if len(logs) != 1 {
		fatal("expected one serial log in %s, found %v", home, logs)
	}
	strataLog := logs[0]
	gone := func(path string) func() {
		return func() {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				fatal("%v", err)
			}
		}
	}
	startArgv := []string{e.strata, "--home", home, "--log-level", "error", "guest", "start", "up", "--driver", "qemu"}
	// Both spans end when the marker is in the serial log (the harness
	// looks every 100 µs); the --wait-serial row is the whole command
	// as an admin runs it: start, wait for the line, then the status
	// (which here waits for the guest's power-off to be recorded).
	start := comparison{
		title:     "guest start to the first serial line (boot-sector guest, TCG)",
		reference: "qemu-system-x86_64 directly", rounds: rounds,
		targets: map[string]float64{"strata guest start": 1.1},
		contenders: []contender{
			{name: "qemu-system-x86_64 directly", prepare: func(int) []string { gone(directLog)(); return direct },
				until: func(int) (string, string) { return directLog, bootMarker }},
			{name: "strata guest start", prepare: func(int) []string { gone(strataLog)(); return startArgv },
				until:   func(int) (string, string) { return strataLog, bootMarker },
				cleanup: func(int) { waitStopped("up") }},
			{name: "strata guest start --wait-serial (whole command)", prepare: func(int) []string {
				return append(startArgv, "--wait-serial", bootMarker)
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
