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

// worker runs MixOps random commands on the shared targets, recording
// what each successful one made or removed. Each draw of the generator
// happens in the same order as ever, so that a seed replays a run.
func (m *mix) worker(round, wk int) {
	w := &mixWorker{m: m, wk: wk}
	for i := 0; i < m.e.cfg.MixOps; i++ {
		t := mixTargets[m.e.rngInt(len(mixTargets))]
		r := m.e.rngInt(100)
		switch {
		case r < 30:
			w.createPoint(t, i)
		case r < 45 && len(w.mine) > 0:
			w.rollback()
		case r < 58 && len(w.mine) > 0:
			w.deletePoint()
		case r < 64:
			w.createVolume(i)
		case r < 68 && len(w.vols) > 0:
			w.deleteVolume()
		case r < 74:
			w.clone(i)
		case r < 78 && len(w.clones) > 0:
			w.deleteClone()
		case r < 84:
			w.setGuest()
		default:
			w.readOnly()
		}
	}
}

// mixWorker is one worker's own: the points, volumes and clones it made
// (and may remove).
type mixWorker struct {
	m            *mix
	wk           int
	mine         []minePoint
	vols, clones []string
}

type minePoint struct {
	target []string
	id     int
}

func (w *mixWorker) createPoint(t []string, i int) {
	m := w.m
	args := append(append([]string{"-o", "json", "snapshot", "create"}, t...), "--name", fmt.Sprintf("w%d-%d", w.wk, i))
	res := m.run(args...)
	if res.code != 0 {
		m.failed(args, res)
		return
	}
	var p pointJSON
	if json.Unmarshal([]byte(res.stdout), &p) != nil {
		m.failed(args, res)
		return
	}
	m.mu.Lock()
	m.points[targetKey(t)][p.ID] = true
	m.mu.Unlock()
	w.mine = append(w.mine, minePoint{t, p.ID})
}

func (w *mixWorker) rollback() {
	m := w.m
	p := w.mine[m.e.rngInt(len(w.mine))]
	args := append(append([]string{"-o", "json", "snapshot", "rollback"}, p.target...), fmt.Sprint(p.id))
	res := m.run(args...)
	if res.code != 0 {
		m.failed(args, res)
		m.mu.Lock()
		m.failedRollbacks[targetKey(p.target)]++
		m.mu.Unlock()
		return
	}
	var out struct {
		PreRollback pointJSON `json:"pre_rollback"`
	}
	if json.Unmarshal([]byte(res.stdout), &out) != nil || out.PreRollback.ID == 0 {
		m.failed(args, res)
		return
	}
	m.mu.Lock()
	m.points[targetKey(p.target)][out.PreRollback.ID] = true
	m.mu.Unlock()
}

func (w *mixWorker) deletePoint() {
	m := w.m
	j := m.e.rngInt(len(w.mine))
	p := w.mine[j]
	w.mine = slices.Delete(w.mine, j, j+1)
	args := append(append([]string{"snapshot", "delete"}, p.target...), fmt.Sprint(p.id))
	if res := m.run(args...); res.code != 0 {
		m.failed(args, res)
		m.mu.Lock()
		m.failedDeletes[targetKey(p.target)][p.id] = true
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	delete(m.points[targetKey(p.target)], p.id)
	m.mu.Unlock()
}

func (w *mixWorker) createVolume(i int) {
	m := w.m
	name := fmt.Sprintf("v%d-%d", w.wk, i)
	args := []string{"volume", "create", name, "--size", "8M", "--format", []string{"raw", "qcow2"}[m.e.rngInt(2)]}
	if res := m.run(args...); res.code != 0 {
		m.failed(args, res)
		return
	}
	m.mu.Lock()
	m.volumes[name] = true
	m.mu.Unlock()
	w.vols = append(w.vols, name)
}

func (w *mixWorker) deleteVolume() {
	m := w.m
	name := w.vols[0]
	args := []string{"volume", "delete", name}
	if res := m.run(args...); res.code != 0 {
		m.failed(args, res)
		return
	}
	m.mu.Lock()
	delete(m.volumes, name)
	m.mu.Unlock()
	w.vols = w.vols[1:]
}

func (w *mixWorker) clone(i int) {
	m := w.m
	name := fmt.Sprintf("c%d-%d", w.wk, i)
	args := []string{"clone", "mg", name}
	if m.e.rngInt(3) == 0 {
		args = append(args, "--full")
	}
	if res := m.run(args...); res.code != 0 {
		m.failed(args, res)
		return
	}
	m.mu.Lock()
	m.guests[name] = true
	m.volumes[name+"-disk1"], m.volumes[name+"-disk2"] = true, true
	m.mu.Unlock()
	w.clones = append(w.clones, name)
}

func (w *mixWorker) deleteClone() {
	m := w.m
	name := w.clones[0]
	args := []string{"guest", "delete", name, "--with-disks"}
	if res := m.run(args...); res.code != 0 {
		m.failed(args, res)
		return
	}
	m.mu.Lock()
	delete(m.guests, name)
	delete(m.volumes, name+"-disk1")
	delete(m.volumes, name+"-disk2")
	m.mu.Unlock()
	w.clones = w.clones[1:]
}

func (w *mixWorker) setGuest() {
	m := w.m
	args := []string{"guest", "set", []string{"m1", "m2"}[m.e.rngInt(2)], fmt.Sprintf("memory=%d", 256+4*m.e.rngInt(100))}
	if res := m.run(args...); res.code != 0 {
		m.failed(args, res)
	}
}

func (w *mixWorker) readOnly() {
	m := w.m
	ro := [][]string{
		{"volume", "list"}, {"snapshot", "list"}, {"golden", "list"}, {"guest", "list"},
		{"volume", "info", "mq"}, {"volume", "info", "mr"}, {"doctor"},
	}
	args := ro[m.e.rngInt(len(ro))]
	res := m.run(args...)
	if res.code == 7 && args[0] == "doctor" {
		m.e.find("plain doctor reported a running operation as a problem", "%s", lastLines(res.stdout, 3))
	} else if res.code != 0 {
		m.e.find("a read-only command failed while others ran", "strata %s: %s", strings.Join(args, " "), res)
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
	x := &enospc{e: e, small: small,
		label:  fmt.Sprintf("ENOSPC round %d (seed %d)", round, e.rep.Seed),
		h:      home{e, filepath.Join(e.dir, fmt.Sprintf("enospc-%d", round))},
		filler: filepath.Join(small, "filler"),
		points: map[int]string{}, reported: map[int]bool{},
	}
	pool := filepath.Join(small, fmt.Sprintf("p%d", round))
	src := filepath.Join(e.dir, "enospc-src.img")
	defer os.RemoveAll(x.h.path)
	defer os.RemoveAll(pool)
	defer os.Remove(x.filler)
	defer os.Remove(src)
	if !x.setup(pool, src) {
		return
	}
	cases := []enospcCase{
		{"snapshot create", []string{"snapshot", "create", "--volume", "a"}},
		{"snapshot rollback", []string{"snapshot", "rollback", "--volume", "a", fmt.Sprint(x.first)}},
		{"volume import --copy", []string{"volume", "import", src, "--copy", "--pool", "small", "--name", "imp"}},
		{"golden create", []string{"golden", "create", "ga", "--volume", "a", "--pool", "small"}},
		{"clone --full", []string{"clone", "gb", "cb", "--full", "--pool", "small"}},
		{"iso capture", []string{"iso", "capture", iso, "cap", "--pool", "small"}},
	}
	for _, c := range cases {
		for _, env := range [][]string{nil, {"STRATA_TEST_SKIP_SPACE_CHECK=1"}} {
			x.leave(4 << 20)
			x.run(c, env)
		}
	}
	// A writer fills the filesystem while the copy runs.
	for _, c := range cases[:2] {
		x.racingWriter(c)
	}
	x.rollbackAll()
}

// enospc is one ENOSPC round: a home whose pool "small" is on a small
// filesystem, volume a in it (its path a, its points' hashes, the live
// hash), volume b and golden gb of it elsewhere.
type enospc struct {
	e        *env
	h        home
	label    string
	small    string // the small filesystem
	filler   string // the file that fills it
	a        string
	first    int            // a's first point
	points   map[int]string // point of volume a → its hash
	reported map[int]bool   // points already reported wrong
	live     string         // a's hash
}

type enospcCase struct {
	what string
	args []string
}

// setup makes the pool, the volumes, a first point and the golden, and
// the file to import.
func (x *enospc) setup(pool, src string) bool {
	h := x.h
	var a struct{ Path string }
	if _, ok := h.must("pool", "add", "small", "--path", pool); !ok {
		return false
	}
	if !h.json(&a, "volume", "create", "a", "--size", "24M", "--pool", "small") {
		return false
	}
	x.a = a.Path
	var b struct{ Path string }
	if !h.json(&b, "volume", "create", "b", "--size", "16M") {
		return false
	}
	x.fill(x.a, 12)
	x.fill(b.Path, 12)
	h1, _ := hashFile(x.a)
	var p pointJSON
	if !h.json(&p, "snapshot", "create", "--volume", "a") {
		return false
	}
	x.first = p.ID
	x.points[p.ID] = h1
	x.fill(x.a, 12)
	x.live, _ = hashFile(x.a)
	if _, ok := h.must("golden", "create", "gb", "--volume", "b"); !ok {
		return false
	}
	if f, err := os.Create(src); err == nil {
		f.Truncate(24 << 20)
		f.Close()
		x.fill(src, 16)
	}
	return true
}

// fill writes n MiB of random bytes at the start of path, as a guest
// would (a failure shows in the hashes compared later).
func (x *enospc) fill(path string, n int) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := 0; i < n; i++ {
		rngMu.Lock()
		for j := range buf {
			buf[j] = byte(x.e.rng.Uint32())
		}
		rngMu.Unlock()
		_, _ = f.WriteAt(buf, int64(i)<<20)
	}
	_ = f.Sync()
}

// leave fills the filesystem so that free bytes are left.
func (x *enospc) leave(free int64) {
	os.Remove(x.filler)
	var st syscall.Statfs_t
	if syscall.Statfs(x.small, &st) != nil {
		return
	}
	avail := int64(st.Bavail) * st.Bsize
	if n := avail - free; n > 0 {
		f, err := os.Create(x.filler)
		if err != nil {
			return
		}
		_ = syscall.Fallocate(int(f.Fd()), 0, 0, n)
		f.Close()
	}
}

// rollbackTo is the point case c rolls back to (0: none).
func (x *enospc) rollbackTo(c enospcCase) int {
	if c.what == "snapshot rollback" {
		return x.first
	}
	return 0
}

// run runs case c on a nearly full filesystem (env: past the free-space
// check), checks what it left, and removes what it made.
func (x *enospc) run(c enospcCase, env []string) {
	h, e := x.h, x.e
	r := h.run(env, c.args...)
	what := c.what
	if env != nil {
		what += " (past the free-space check: real ENOSPC)"
	}
	x.after(x.label+": "+what, r, x.rollbackTo(c))
	for _, gone := range [][]string{{"volume", "info", "imp"}, {"golden", "show", "ga"}, {"volume", "info", "cb"}, {"iso", "info", "cap"}} {
		if rr := h.run(nil, gone...); rr.code != 3 {
			if r.code != 0 {
				e.find("a failed copy left something registered", "%s: %s: strata %s exits %d", x.label, what, strings.Join(gone, " "), rr.code)
			}
			h.run(nil, []string{gone[0], "delete", gone[len(gone)-1]}...)
		}
	}
}

// racingWriter runs case c while a writer fills the filesystem.
func (x *enospc) racingWriter(c enospcCase) {
	os.Remove(x.filler)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Duration(x.e.rngInt(20)) * time.Millisecond)
		f, err := os.Create(x.filler)
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
	r := x.h.run(nil, c.args...)
	close(stop)
	<-done
	os.Remove(x.filler)
	x.after(x.label+": "+c.what+" while a writer fills the disk", r, x.rollbackTo(c))
}

// after checks that nothing was lost and nothing half-made is left
// once a copy failed (or, for a writer racing it, succeeded): points,
// the live volume, and the points again once the guest has written.
func (x *enospc) after(cl string, r result, rollbackTo int) {
	e, h := x.e, x.h
	e.rep.EnospcCases++
	e.tally("ENOSPC cases").trials++
	var ps []pointJSON
	if !h.json(&ps, "snapshot", "list", "--volume", "a") {
		return
	}
	x.checkPoints(cl, r, ps)
	cur, _ := hashFile(x.a)
	switch {
	case r.code != 0 && cur != x.live:
		e.loss("ENOSPC cases", "%s: failed (%s) but the live volume changed", cl, r)
	case r.code == 0 && rollbackTo > 0 && cur != x.points[rollbackTo]:
		e.loss("ENOSPC cases", "%s: rollback exited 0 but the volume is not at point %d", cl, rollbackTo)
	}
	var st syscall.Stat_t
	if syscall.Stat(x.a, &st) == nil && st.Nlink > 1 {
		e.find("the live image is hard-linked after an ENOSPC (a point would change with every guest write)", "%s: nlink %d", cl, st.Nlink)
	}
	// The guest writes: every point must stay what it was.
	x.fill(x.a, 2)
	x.live, _ = hashFile(x.a)
	for _, pj := range ps {
		if len(pj.Disks) != 1 || x.reported[pj.ID] {
			continue
		}
		if got, err := hashFile(pj.Disks[0].Ref); err != nil || got != x.points[pj.ID] {
			x.reported[pj.ID] = true
			e.loss("ENOSPC cases", "%s: point %d does not hold its bytes (checked once the guest wrote again) (%v)", cl, pj.ID, err)
		}
	}
	if dr := h.run(nil, "doctor"); dr.code != 0 {
		e.find("doctor reports problems after an ENOSPC", "%s: %s", cl, lastLines(dr.stdout, 3))
		h.run(nil, "doctor", "--repair")
		if now, _ := hashFile(x.a); now != x.live {
			e.loss("ENOSPC cases", "%s: doctor --repair changed the live volume after the guest wrote (it applied an operation reported as failed): the guest's writes are in no point", cl)
			x.live = now
		}
	}
}

// checkPoints compares the points listed (ps) with those known: none
// lost, and a new one (which holds the live bytes of before the command)
// only from a command that succeeded.
func (x *enospc) checkPoints(cl string, r result, ps []pointJSON) {
	for id := range x.points {
		if !slices.ContainsFunc(ps, func(p pointJSON) bool { return p.ID == id }) {
			x.e.loss("ENOSPC cases", "%s: point %d lost", cl, id)
			delete(x.points, id)
		}
	}
	for _, pj := range ps {
		if _, known := x.points[pj.ID]; !known {
			x.points[pj.ID] = x.live
			if r.code != 0 {
				x.e.find("a failed copy left a new restore point", "%s: point %d (%s)", cl, pj.ID, pj.Kind)
			}
		}
	}
}

// rollbackAll: with room again, every point must roll back to its bytes.
func (x *enospc) rollbackAll() {
	h := x.h
	os.Remove(x.filler)
	ids := make([]int, 0, len(x.points))
	for id := range x.points {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		r := h.run(nil, "snapshot", "rollback", "--volume", "a", fmt.Sprint(id))
		if r.code != 0 {
			x.e.loss("ENOSPC cases", "%s: rollback to point %d failed: %s", x.label, id, r)
			continue
		}
		if got, _ := hashFile(x.a); got != x.points[id] && !x.reported[id] {
			x.e.loss("ENOSPC cases", "%s: rollback to point %d gave the wrong bytes", x.label, id)
		}
		// Delete the pre-rollback points so the pool has room for the next.
		var ps []pointJSON
		h.json(&ps, "snapshot", "list", "--volume", "a")
		for _, pj := range ps {
			if _, known := x.points[pj.ID]; !known {
				h.run(nil, "snapshot", "delete", "--volume", "a", fmt.Sprint(pj.ID))
			}
		}
	}
}
