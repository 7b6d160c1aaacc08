//go:build strata_bench

package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

func init() { groups = append(groups, memoryBenches) }

// memoryTitle names the memory-state group.
const memoryTitle = "memory-state point of a running guest (counter guest, 2 raw disks, TCG)"

// memoryBenches: `snapshot create --memory` of a running counter guest
// (its RAM and device state written during the pause, with its two
// disks) at two RAM sizes, against a live point without memory of the
// same guest. The derived row gives the time per GiB of guest RAM and how
// it grows with the RAM. The counter guest touches little of its RAM:
// QEMU writes untouched pages as zero-page markers, so this measures
// strata's and QEMU's cost per GiB of a mostly idle guest, not disk
// bandwidth.
func memoryBenches(e env, rounds int) ([]comparison, func([]row) []flat) {
	if !e.want(memoryTitle) {
		return nil, nil
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		fatal("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
	}
	m := &memoryBench{e: e, home: filepath.Join(e.dir, "home-memory"), started: map[string]bool{}}
	const small, large = memorySmall, memoryLarge
	m.guest("m128", small)
	m.guest("m256", large)
	c := comparison{title: memoryTitle, reference: fmt.Sprintf("strata snapshot create, %d MiB guest (live, no memory)", large), rounds: min(rounds, 7),
		contenders: []contender{m.point("m256", false), m.point("m128", true), m.point("m256", true)}}
	lastRound := c.rounds - 1
	final := &c.contenders[len(c.contenders)-1]
	clean := final.cleanup
	final.cleanup = func(round int) {
		clean(round)
		if round == lastRound {
			m.end()
		}
	}
	return []comparison{c}, func(rows []row) []flat {
		s := find(rows, memoryTitle, "strata snapshot create --memory, 128 MiB guest")
		l := find(rows, memoryTitle, "strata snapshot create --memory, 256 MiB guest")
		if s == 0 || l == 0 {
			return nil
		}
		perGiB := time.Duration(float64(l) * 1024 / large)
		// Linear in the RAM at most: twice the RAM, about twice the
		// time or less (a fixed part), with room for noise.
		return []flat{{what: fmt.Sprintf("memory-state point, %d vs %d MiB guest (%s per GiB of RAM)", small, large, fmtDur(perGiB)), small: s, large: l, maxRatio: 2.5}}
	}
}

// The guests' RAM sizes (m128, m256).
const memorySmall, memoryLarge = 128, 256

// memoryBench is the memory row's setting: its home and the counter
// guests started. A counter guest keeps a core busy: they run only while
// this comparison is measured (started at its first round, ended after
// its last), never under another group's rows.
type memoryBench struct {
	e       env
	home    string
	started map[string]bool
}

// guest defines a counter guest of mib MiB with its two disks.
func (m *memoryBench) guest(name string, mib int) {
	paths := map[string]string{}
	for _, d := range []string{"a", "b"} {
		run(m.e.strata, "--home", m.home, "volume", "create", name+"-"+d, "--size", "1M")
		var v struct{ Path string }
		strataJSON(m.e, m.home, &v, "volume", "info", name+"-"+d)
		paths[d] = v.Path
	}
	if err := boottest.WriteCounterDisks(paths["a"], paths["b"]); err != nil {
		fatal("%v", err)
	}
	run(m.e.strata, "--home", m.home, "guest", "define", name, "--disk", name+"-a", "--disk", name+"-b", "--memory", fmt.Sprint(mib), "--boot", "c", "--os", "other", "--driver", "qemu")
	atExit = append(atExit, func() { _ = exec.Command(m.e.strata, "--home", m.home, "guest", "kill", name).Run() })
}

func (m *memoryBench) startOnce(name string) {
	if !m.started[name] {
		m.started[name] = true
		run(m.e.strata, "--home", m.home, "guest", "start", name, "--network", "none", "--wait-serial", "^COUNT ")
	}
}

// end kills the guests started (one gone already is no failure).
func (m *memoryBench) end() {
	for name := range m.started {
		_ = exec.Command(m.e.strata, "--home", m.home, "guest", "kill", name).Run()
	}
}

// only runs guest name alone: the other is paused (untimed), so that
// two cores are not shared by two guests and the migration. A pause or
// resume that fails leaves the guest as it was: only the timing suffers.
func (m *memoryBench) only(name string) {
	m.startOnce(name)
	for _, g := range []string{"m128", "m256"} {
		if !m.started[g] {
			continue
		}
		verb := "pause"
		if g == name {
			verb = "resume"
		}
		_ = exec.Command(m.e.strata, "--home", m.home, "guest", verb, g).Run()
	}
}

// point is a contender taking points of guest name, with its memory or
// without.
func (m *memoryBench) point(name string, memory bool) contender {
	label := fmt.Sprintf("strata snapshot create, %d MiB guest (live, no memory)", memoryLarge)
	if memory {
		label = fmt.Sprintf("strata snapshot create --memory, %s MiB guest", name[1:])
	}
	return contender{name: label,
		prepare: func(round int) []string {
			m.only(name)
			argv := []string{m.e.strata, "--home", m.home, "--log-level", "error", "snapshot", "create", name, "--name", fmt.Sprintf("b%d", round+1), "--max-pause", "60s"}
			if memory {
				argv = append(argv, "--memory")
			}
			return argv
		},
		cleanup: func(round int) {
			run(m.e.strata, "--home", m.home, "snapshot", "delete", name, fmt.Sprintf("b%d", round+1))
		}}
}
