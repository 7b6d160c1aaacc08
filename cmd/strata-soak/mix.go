package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// mix is one concurrency round: several strata processes at once on
// shared targets; afterwards the catalog must be exactly what the
// successful commands made it.
type mix struct {
	e      *env
	h      home
	mu     sync.Mutex
	points map[string]map[int]bool // target → point ids
	// failedDeletes: points whose delete exited non-zero (target → ids):
	// gone later, they are a finding, not a loss.
	failedDeletes map[string]map[int]bool
	// failedRollbacks counts rollbacks that exited non-zero per target:
	// the pre-rollback point each may leave is a finding, not a loss.
	failedRollbacks map[string]int
	volumes         map[string]bool
	guests          map[string]bool
	cmds            int
}

var mixTargets = [][]string{{"m1"}, {"m2"}, {"--volume", "mv"}}

func targetKey(t []string) string { return strings.Join(t, " ") }

func (e *env) mixRound(round int, xfs string) {
	h := home{e, filepath.Join(e.dir, fmt.Sprintf("mixhome-%d", round))}
	defer os.RemoveAll(h.path)
	m := &mix{e: e, h: h, points: map[string]map[int]bool{}, failedDeletes: map[string]map[int]bool{}, failedRollbacks: map[string]int{}, volumes: map[string]bool{}, guests: map[string]bool{}}
	pool := filepath.Join(xfs, fmt.Sprintf("mix-%d", round))
	defer os.RemoveAll(pool)
	setup := [][]string{
		{"pool", "add", "x", "--path", pool},
		{"volume", "create", "mq", "--size", "16M", "--format", "qcow2"},
		{"volume", "create", "mr", "--size", "16M", "--pool", "x"},
		{"volume", "create", "m2d", "--size", "16M"},
		{"volume", "create", "mv", "--size", "16M", "--format", "qcow2"},
		{"guest", "define", "m1", "--disk", "mq", "--disk", "mr"},
		{"guest", "define", "m2", "--disk", "m2d"},
		{"golden", "create", "mg", "--from", "m1"},
	}
	for _, a := range setup {
		if _, ok := h.must(a...); !ok {
			return
		}
	}
	for _, v := range []string{"mq", "mr", "m2d", "mv"} {
		m.volumes[v] = true
	}
	m.guests["m1"], m.guests["m2"] = true, true
	for _, t := range mixTargets {
		m.points[targetKey(t)] = map[int]bool{}
		m.failedDeletes[targetKey(t)] = map[int]bool{}
	}
	var wg sync.WaitGroup
	for wk := 0; wk < e.cfg.MixWorkers; wk++ {
		wg.Add(1)
		go func(wk int) { defer wg.Done(); m.worker(round, wk) }(wk)
	}
	wg.Wait()
	e.rep.MixRounds++
	e.rep.MixCmds += m.cmds
	e.tally("concurrency rounds").trials++
	m.check(fmt.Sprintf("concurrency round %d (seed %d)", round, e.rep.Seed))
}

func (m *mix) run(args ...string) result {
	r := m.h.run(nil, args...)
	m.mu.Lock()
	m.cmds++
	m.mu.Unlock()
	return r
}

func (m *mix) failed(args []string, r result) {
	key := "a command failed while others ran"
	if r.code == 6 {
		key = "a command was refused as busy while others ran"
	}
	m.e.find(key, "strata %s: %s", strings.Join(args, " "), r)
}

func (m *mix) worker(round, wk int) {
	var mine []struct {
		target []string
		id     int
	}
	var vols, clones []string
	for i := 0; i < m.e.cfg.MixOps; i++ {
		t := mixTargets[m.e.rngInt(len(mixTargets))]
		tk := targetKey(t)
		r := m.e.rngInt(100)
		var args []string
		switch {
		case r < 30:
			args = append(append([]string{"-o", "json", "snapshot", "create"}, t...), "--name", fmt.Sprintf("w%d-%d", wk, i))
			res := m.run(args...)
			if res.code != 0 {
				m.failed(args, res)
				continue
			}
			var p pointJSON
			if json.Unmarshal([]byte(res.stdout), &p) != nil {
				m.failed(args, res)
				continue
			}
			m.mu.Lock()
			m.points[tk][p.ID] = true
			m.mu.Unlock()
			mine = append(mine, struct {
				target []string
				id     int
			}{t, p.ID})
		case r < 45 && len(mine) > 0:
			p := mine[m.e.rngInt(len(mine))]
			args = append(append([]string{"-o", "json", "snapshot", "rollback"}, p.target...), fmt.Sprint(p.id))
			res := m.run(args...)
			if res.code != 0 {
				m.failed(args, res)
				m.mu.Lock()
				m.failedRollbacks[targetKey(p.target)]++
				m.mu.Unlock()
				continue
			}
			var out struct {
				PreRollback pointJSON `json:"pre_rollback"`
			}
			if json.Unmarshal([]byte(res.stdout), &out) != nil || out.PreRollback.ID == 0 {
				m.failed(args, res)
				continue
			}
			m.mu.Lock()
			m.points[targetKey(p.target)][out.PreRollback.ID] = true
			m.mu.Unlock()
		case r < 58 && len(mine) > 0:
			j := m.e.rngInt(len(mine))
			p := mine[j]
			args = append(append([]string{"snapshot", "delete"}, p.target...), fmt.Sprint(p.id))
			if res := m.run(args...); res.code != 0 {
				m.failed(args, res)
				m.mu.Lock()
				m.failedDeletes[targetKey(p.target)][p.id] = true
				m.mu.Unlock()
				mine = slices.Delete(mine, j, j+1)
				continue
			}
			m.mu.Lock()
			delete(m.points[targetKey(p.target)], p.id)
			m.mu.Unlock()
			mine = slices.Delete(mine, j, j+1)
		case r < 64:
			name := fmt.Sprintf("v%d-%d", wk, i)
			args = []string{"volume", "create", name, "--size", "8M", "--format", []string{"raw", "qcow2"}[m.e.rngInt(2)]}
			if res := m.run(args...); res.code != 0 {
				m.failed(args, res)
				continue
			}
			m.mu.Lock()
			m.volumes[name] = true
			m.mu.Unlock()
			vols = append(vols, name)
		case r < 68 && len(vols) > 0:
			name := vols[0]
			args = []string{"volume", "delete", name}
			if res := m.run(args...); res.code != 0 {
				m.failed(args, res)
				continue
			}
			m.mu.Lock()
			delete(m.volumes, name)
			m.mu.Unlock()
			vols = vols[1:]
		case r < 74:
			name := fmt.Sprintf("c%d-%d", wk, i)
			args = []string{"clone", "mg", name}
			if m.e.rngInt(3) == 0 {
				args = append(args, "--full")
			}
			if res := m.run(args...); res.code != 0 {
				m.failed(args, res)
				continue
			}
			m.mu.Lock()
			m.guests[name] = true
			m.volumes[name+"-disk1"], m.volumes[name+"-disk2"] = true, true
			m.mu.Unlock()
			clones = append(clones, name)
		case r < 78 && len(clones) > 0:
			name := clones[0]
			args = []string{"guest", "delete", name, "--with-disks"}
			if res := m.run(args...); res.code != 0 {
				m.failed(args, res)
				continue
			}
			m.mu.Lock()
			delete(m.guests, name)
			delete(m.volumes, name+"-disk1")
			delete(m.volumes, name+"-disk2")
			m.mu.Unlock()
			clones = clones[1:]
		case r < 84:
			args = []string{"guest", "set", []string{"m1", "m2"}[m.e.rngInt(2)], fmt.Sprintf("memory=%d", 256+4*m.e.rngInt(100))}
			if res := m.run(args...); res.code != 0 {
				m.failed(args, res)
			}
		default:
			ro := [][]string{
				{"volume", "list"}, {"snapshot", "list"}, {"golden", "list"}, {"guest", "list"},
				{"volume", "info", "mq"}, {"volume", "info", "mr"}, {"doctor"},
			}
			args = ro[m.e.rngInt(len(ro))]
			res := m.run(args...)
			if res.code == 7 && args[0] == "doctor" {
				m.e.find("plain doctor reported a running operation as a problem", "%s", lastLines(res.stdout, 3))
			} else if res.code != 0 {
				m.e.find("a read-only command failed while others ran", "strata %s: %s", strings.Join(args, " "), res)
			}
		}
	}
}

// check compares the catalog with what the successful commands made, then
// rolls back to every point.
func (m *mix) check(label string) {
	e, h := m.e, m.h
	for _, t := range mixTargets {
		var ps []pointJSON
		if !h.json(&ps, append([]string{"snapshot", "list"}, t...)...) {
			continue
		}
		got := map[int]bool{}
		for _, p := range ps {
			got[p.ID] = true
			if !m.points[targetKey(t)][p.ID] && p.Kind == "pre-rollback" && m.failedRollbacks[targetKey(t)] > 0 {
				m.failedRollbacks[targetKey(t)]--
				e.find("a rollback that failed kept its pre-rollback point", "%s: %s point %d", label, targetKey(t), p.ID)
				m.points[targetKey(t)][p.ID] = true // it must roll back like any other
			} else if !m.points[targetKey(t)][p.ID] {
				e.loss("concurrency rounds", "%s: %s has point %d that no successful command made", label, targetKey(t), p.ID)
			}
		}
		for id := range m.points[targetKey(t)] {
			switch {
			case got[id]:
			case m.failedDeletes[targetKey(t)][id]:
				e.find("a delete reported as failed was finished later by another command", "%s: %s point %d", label, targetKey(t), id)
				delete(m.points[targetKey(t)], id)
			default:
				e.loss("concurrency rounds", "%s: %s lost point %d (its command exited 0)", label, targetKey(t), id)
				delete(m.points[targetKey(t)], id)
			}
		}
	}
	var vs []struct{ Name string }
	if h.json(&vs, "volume", "list") {
		m.compareNames(label, "volume", vs, m.volumes)
	}
	var gs []struct{ Name string }
	if h.json(&gs, "guest", "list") {
		m.compareNames(label, "guest", gs, m.guests)
	}
	if r := h.run(nil, "doctor"); r.code != 0 {
		e.find("doctor reports problems after a concurrency round", "%s: %s", label, lastLines(r.stdout, 3))
	}
	for _, t := range mixTargets {
		ids := make([]int, 0)
		for id := range m.points[targetKey(t)] {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			if r := h.run(nil, append(append([]string{"snapshot", "rollback"}, t...), fmt.Sprint(id))...); r.code != 0 {
				e.loss("concurrency rounds", "%s: %s point %d cannot be rolled back to: %s", label, targetKey(t), id, r)
			}
		}
	}
}

func (m *mix) compareNames(label, what string, listed []struct{ Name string }, want map[string]bool) {
	got := map[string]bool{}
	for _, v := range listed {
		got[v.Name] = true
		if !want[v.Name] {
			m.e.loss("concurrency rounds", "%s: %s %q is listed but no successful command made it", label, what, v.Name)
		}
	}
	for n := range want {
		if !got[n] {
			m.e.loss("concurrency rounds", "%s: %s %q is lost (its command exited 0)", label, what, n)
		}
	}
}

// enospcRound runs the copies that cannot fit on a small real filesystem:
// each must be refused (free-space check) or, past the check, run into a
// real ENOSPC and be undone; nothing may be lost or left half-made.
func (e *env) enospcRound(round int, small, iso string) {
	label := fmt.Sprintf("ENOSPC round %d (seed %d)", round, e.rep.Seed)
	h := home{e, filepath.Join(e.dir, fmt.Sprintf("enospc-%d", round))}
	pool := filepath.Join(small, fmt.Sprintf("p%d", round))
	filler := filepath.Join(small, "filler")
	defer os.RemoveAll(h.path)
	defer os.RemoveAll(pool)
	defer os.Remove(filler)
	var a struct{ Path string }
	if _, ok := h.must("pool", "add", "small", "--path", pool); !ok {
		return
	}
	if !h.json(&a, "volume", "create", "a", "--size", "24M", "--pool", "small") {
		return
	}
	var b struct{ Path string }
	if !h.json(&b, "volume", "create", "b", "--size", "16M") {
		return
	}
	fill := func(path string, n int) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		for i := 0; i < n; i++ {
			rngMu.Lock()
			for j := range buf {
				buf[j] = byte(e.rng.Uint32())
			}
			rngMu.Unlock()
			_, _ = f.WriteAt(buf, int64(i)<<20)
		}
		_ = f.Sync()
	}
	fill(a.Path, 12)
	fill(b.Path, 12)
	points := map[int]string{} // point of volume a → its hash
	reported := map[int]bool{} // points already reported wrong
	h1, _ := hashFile(a.Path)
	var p pointJSON
	if !h.json(&p, "snapshot", "create", "--volume", "a") {
		return
	}
	points[p.ID] = h1
	fill(a.Path, 12)
	live, _ := hashFile(a.Path)
	if _, ok := h.must("golden", "create", "gb", "--volume", "b"); !ok {
		return
	}
	src := filepath.Join(e.dir, "enospc-src.img")
	defer os.Remove(src)
	if f, err := os.Create(src); err == nil {
		f.Truncate(24 << 20)
		f.Close()
		fill(src, 16)
	}

	// leave fills the filesystem so that free bytes are left.
	leave := func(free int64) {
		os.Remove(filler)
		var st syscall.Statfs_t
		if syscall.Statfs(small, &st) != nil {
			return
		}
		avail := int64(st.Bavail) * st.Bsize
		if n := avail - free; n > 0 {
			f, err := os.Create(filler)
			if err != nil {
				return
			}
			_ = syscall.Fallocate(int(f.Fd()), 0, 0, n)
			f.Close()
		}
	}
	// after checks that nothing was lost and nothing half-made is left.
	// after checks that nothing was lost and nothing half-made is left
	// once a copy failed (or, for a writer racing it, succeeded): points,
	// the live volume, and the points again once the guest has written.
	after := func(cl string, r result, rollbackTo int) {
		e.rep.EnospcCases++
		e.tally("ENOSPC cases").trials++
		var ps []pointJSON
		if !h.json(&ps, "snapshot", "list", "--volume", "a") {
			return
		}
		for id := range points {
			if !slices.ContainsFunc(ps, func(p pointJSON) bool { return p.ID == id }) {
				e.loss("ENOSPC cases", "%s: point %d lost", cl, id)
				delete(points, id)
			}
		}
		for _, pj := range ps {
			if _, known := points[pj.ID]; !known {
				// A new point holds the live bytes of before the command.
				points[pj.ID] = live
				if r.code != 0 {
					e.find("a failed copy left a new restore point", "%s: point %d (%s)", cl, pj.ID, pj.Kind)
				}
			}
		}
		cur, _ := hashFile(a.Path)
		switch {
		case r.code != 0 && cur != live:
			e.loss("ENOSPC cases", "%s: failed (%s) but the live volume changed", cl, r)
		case r.code == 0 && rollbackTo > 0 && cur != points[rollbackTo]:
			e.loss("ENOSPC cases", "%s: rollback exited 0 but the volume is not at point %d", cl, rollbackTo)
		}
		var st syscall.Stat_t
		if syscall.Stat(a.Path, &st) == nil && st.Nlink > 1 {
			e.find("the live image is hard-linked after an ENOSPC (a point would change with every guest write)", "%s: nlink %d", cl, st.Nlink)
		}
		// The guest writes: every point must stay what it was.
		fill(a.Path, 2)
		live, _ = hashFile(a.Path)
		for _, pj := range ps {
			if len(pj.Disks) != 1 || reported[pj.ID] {
				continue
			}
			if got, err := hashFile(pj.Disks[0].Ref); err != nil || got != points[pj.ID] {
				reported[pj.ID] = true
				e.loss("ENOSPC cases", "%s: point %d does not hold its bytes (checked once the guest wrote again) (%v)", cl, pj.ID, err)
			}
		}
		if dr := h.run(nil, "doctor"); dr.code != 0 {
			e.find("doctor reports problems after an ENOSPC", "%s: %s", cl, lastLines(dr.stdout, 3))
			h.run(nil, "doctor", "--repair")
			if now, _ := hashFile(a.Path); now != live {
				e.loss("ENOSPC cases", "%s: doctor --repair changed the live volume after the guest wrote (it applied an operation reported as failed): the guest's writes are in no point", cl)
				live = now
			}
		}
	}
	skip := []string{"STRATA_TEST_SKIP_SPACE_CHECK=1"}
	cases := []struct {
		what string
		args []string
	}{
		{"snapshot create", []string{"snapshot", "create", "--volume", "a"}},
		{"snapshot rollback", []string{"snapshot", "rollback", "--volume", "a", fmt.Sprint(p.ID)}},
		{"volume import --copy", []string{"volume", "import", src, "--copy", "--pool", "small", "--name", "imp"}},
		{"golden create", []string{"golden", "create", "ga", "--volume", "a", "--pool", "small"}},
		{"clone --full", []string{"clone", "gb", "cb", "--full", "--pool", "small"}},
		{"iso capture", []string{"iso", "capture", iso, "cap", "--pool", "small"}},
	}
	for _, c := range cases {
		for _, env := range [][]string{nil, skip} {
			leave(4 << 20)
			r := h.run(env, c.args...)
			what := c.what
			if env != nil {
				what += " (past the free-space check: real ENOSPC)"
			}
			to := 0
			if c.what == "snapshot rollback" {
				to = p.ID
			}
			after(label+": "+what, r, to)
			for _, gone := range [][]string{{"volume", "info", "imp"}, {"golden", "show", "ga"}, {"volume", "info", "cb"}, {"iso", "info", "cap"}} {
				if rr := h.run(nil, gone...); rr.code != 3 {
					if r.code != 0 {
						e.find("a failed copy left something registered", "%s: %s: strata %s exits %d", label, what, strings.Join(gone, " "), rr.code)
					}
					h.run(nil, []string{gone[0], "delete", gone[len(gone)-1]}...)
				}
			}
		}
	}
	// A writer fills the filesystem while the copy runs.
	for _, c := range cases[:2] {
		os.Remove(filler)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(time.Duration(e.rngInt(20)) * time.Millisecond)
			f, err := os.Create(filler)
			if err != nil {
				return
			}
			defer f.Close()
			buf := make([]byte, 1<<20)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Write(buf); err != nil {
					return
				}
			}
		}()
		r := h.run(nil, c.args...)
		close(stop)
		<-done
		os.Remove(filler)
		to := 0
		if c.what == "snapshot rollback" {
			to = p.ID
		}
		after(label+": "+c.what+" while a writer fills the disk", r, to)
	}
	// Room again: every point must roll back to its bytes.
	os.Remove(filler)
	ids := make([]int, 0, len(points))
	for id := range points {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		r := h.run(nil, "snapshot", "rollback", "--volume", "a", fmt.Sprint(id))
		if r.code != 0 {
			e.loss("ENOSPC cases", "%s: rollback to point %d failed: %s", label, id, r)
			continue
		}
		if got, _ := hashFile(a.Path); got != points[id] && !reported[id] {
			e.loss("ENOSPC cases", "%s: rollback to point %d gave the wrong bytes", label, id)
		}
		// Delete the pre-rollback points so the pool has room for the next.
		var ps []pointJSON
		h.json(&ps, "snapshot", "list", "--volume", "a")
		for _, pj := range ps {
			if _, known := points[pj.ID]; !known {
				h.run(nil, "snapshot", "delete", "--volume", "a", fmt.Sprint(pj.ID))
			}
		}
	}
}
