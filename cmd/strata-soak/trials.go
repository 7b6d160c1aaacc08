package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// state is what a restore point must give back: each disk's guest-visible
// bytes (a hash, by volume name) and the guest's definition.
type state struct {
	disks map[string]string
	def   string
}

// diff names what differs between two states ("" if nothing).
func (a state) diff(b state, withDef bool) string {
	var d []string
	for v, h := range a.disks {
		if b.disks[v] != h {
			d = append(d, "disk "+v)
		}
	}
	sort.Strings(d)
	if withDef && a.def != b.def {
		d = append(d, "definition ("+memOf(a.def)+" vs "+memOf(b.def)+")")
	}
	return strings.Join(d, ", ")
}

func memOf(def string) string {
	var g struct{ Memory int }
	_ = json.Unmarshal([]byte(def), &g)
	return fmt.Sprintf("memory %d", g.Memory)
}

type vol struct{ name, path, format string }

type golden struct {
	name  string
	disks []string // hashes, in the source's disk order
}

type clone struct {
	name   string
	golden *golden
}

// world is the kill trials' model of one guest: what every point, the
// live disks, the goldens and the clones must hold.
type world struct {
	e       *env
	h       home
	guest   string
	vols    []vol
	points  map[int]state
	live    state
	gen     int // bumped by every mutate: the definition's memory
	goldens []*golden
	clones  []*clone
	names   int // a counter for unique names
	iso     string
	isoSize int64
	isoSum  string
	est     map[string]time.Duration // typical duration of each op
	trial   int
	// extra: a live state a check must also accept (what the guest wrote
	// after an interruption, when recovery kept it live).
	extra []state
}

const diskSize = 32 << 20

func newWorld(e *env, xfs string) (*world, error) {
	h := home{e, filepath.Join(e.dir, "home")}
	w := &world{e: e, h: h, guest: "g", points: map[int]state{}, est: map[string]time.Duration{}}
	if _, ok := h.must("pool", "add", "x", "--path", filepath.Join(xfs, "pool")); !ok {
		return nil, fmt.Errorf("pool add on XFS failed")
	}
	for _, v := range []struct{ name, format, pool string }{
		{"gq", "qcow2", "default"}, {"gc", "raw", "default"}, {"gr", "raw", "x"},
	} {
		var vi struct{ Path, Format string }
		if !h.json(&vi, "volume", "create", v.name, "--size", fmt.Sprint(diskSize), "--format", v.format, "--pool", v.pool) {
			return nil, fmt.Errorf("volume create %s failed", v.name)
		}
		w.vols = append(w.vols, vol{v.name, vi.Path, vi.Format})
	}
	if _, ok := h.must("guest", "define", "g", "--disk", "gq", "--disk", "gc", "--disk", "gr"); !ok {
		return nil, fmt.Errorf("guest define failed")
	}
	// Some bulk first, so that copies take long enough to be interrupted.
	for i := 0; i < 6; i++ {
		if err := w.mutate(); err != nil {
			return nil, err
		}
	}
	for i := 0; i < 2; i++ {
		var p pointJSON
		if !h.json(&p, "snapshot", "create", "g") {
			return nil, fmt.Errorf("snapshot create failed")
		}
		w.points[p.ID] = w.live
		if err := w.mutate(); err != nil {
			return nil, err
		}
	}
	if err := w.makeISO(); err != nil {
		return nil, err
	}
	return w, nil
}

// mutate writes a distinctive pattern into every disk and changes the
// definition: the state differs from every point's.
func (w *world) mutate() error {
	if err := w.writeDisks(); err != nil {
		return err
	}
	w.gen++
	if _, ok := w.h.must("guest", "set", w.guest, fmt.Sprintf("memory=%d", 256+4*(w.gen%4000))); !ok {
		return fmt.Errorf("guest set failed")
	}
	st, err := w.measure()
	w.live = st
	return err
}

// writeDisks writes a distinctive pattern into every disk, as the guest
// would (qemu-io for qcow2, plain writes for raw).
// guestCanStart tells whether a guest could open every disk for writing
// (QEMU's open: qemu-io without -U), as a guest started by hand would.
func (w *world) guestCanStart() error {
	for _, v := range w.vols {
		if _, err := os.Stat(v.path); err != nil {
			return err
		}
		if _, err := sh("qemu-io", "-f", v.format, "-c", "read 0 512", v.path); err != nil {
			return err
		}
	}
	return nil
}

func (w *world) writeDisks() error {
	for _, v := range w.vols {
		n := 1 + w.e.rngInt(3)
		if v.format == "qcow2" {
			argv := []string{"qemu-io", "-f", "qcow2"}
			for i := 0; i < n; i++ {
				l := (1 + w.e.rngInt(256)) << 12
				off := w.e.rngInt((diskSize-l)>>12) << 12
				argv = append(argv, "-c", fmt.Sprintf("write -P 0x%02x %d %d", 1+w.e.rngInt(255), off, l))
			}
			if _, err := sh(append(argv, v.path)...); err != nil {
				return err
			}
			continue
		}
		f, err := os.OpenFile(v.path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			l := (1 + w.e.rngInt(512)) << 12
			off := w.e.rngInt((diskSize-l)>>12) << 12
			buf := make([]byte, l)
			rngMu.Lock()
			for j := range buf {
				buf[j] = byte(w.e.rng.Uint32())
			}
			rngMu.Unlock()
			if _, err := f.WriteAt(buf, int64(off)); err != nil {
				f.Close()
				return err
			}
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// measure reads the live disks and definition.
func (w *world) measure() (state, error) {
	st := state{disks: map[string]string{}}
	for _, v := range w.vols {
		h, err := w.e.hashImage(v.path, v.format, "")
		if err != nil {
			return st, err
		}
		st.disks[v.name] = h
	}
	r := w.h.run(nil, "-o", "json", "guest", "show", w.guest)
	if r.code != 0 {
		return st, fmt.Errorf("guest show: %s", r)
	}
	st.def = normJSON(r.stdout)
	return st, nil
}

func normJSON(s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

type pointJSON struct {
	ID    int
	Kind  string
	State string
	Disks []struct{ Volume, Method, Ref string }
}

// catalogPoints lists the guest's points as the catalog has them.
func (w *world) catalogPoints() (map[int]pointJSON, bool) {
	var ps []pointJSON
	if !w.h.json(&ps, "snapshot", "list", w.guest) {
		return nil, false
	}
	m := map[int]pointJSON{}
	for _, p := range ps {
		m[p.ID] = p
	}
	return m, true
}

// readPoint reads a point's disks directly (internal snapshot or point
// file), without rolling back.
func (w *world) readPoint(p pointJSON) (state, error) {
	st := state{disks: map[string]string{}}
	for _, d := range p.Disks {
		var h string
		var err error
		switch d.Method {
		case "qcow2-internal":
			v := w.vol(d.Volume)
			h, err = w.e.hashImage(v.path, "qcow2", d.Ref)
		default:
			h, err = w.e.hashImage(d.Ref, "raw", "")
		}
		if err != nil {
			return st, err
		}
		st.disks[d.Volume] = h
	}
	return st, nil
}

func (w *world) vol(name string) vol {
	for _, v := range w.vols {
		if v.name == name {
			return v
		}
	}
	return vol{}
}

// op is one kind of kill trial: run builds the command, check judges the
// outcome after recovery.
type op struct {
	name   string
	weight int
	steps  []string // STRATA_CRASH_AT steps on its path
	child  bool     // runs qemu-img (on some disk)
	// prepare returns the argv and the check to run after recovery; ok
	// false skips the trial (nothing to work on).
	prepare func(w *world) (args []string, check func(k killResult, label string), ok bool)
}

func stepsN(prefix string, n int) []string {
	var s []string
	for i := 1; i <= n; i++ {
		s = append(s, fmt.Sprintf("%s%d", prefix, i))
	}
	return s
}

var ops = []op{
	{"snapshot create", 20, append([]string{"create:recorded"}, stepsN("create:disk-", 3)...), true, prepCreate},
	{"snapshot rollback", 20, append([]string{"create:recorded", "rollback:pre-point"}, append(stepsN("create:disk-", 3), stepsN("rollback:disk-", 3)...)...), true, prepRollback},
	{"snapshot delete", 12, append([]string{"delete:marked"}, stepsN("delete:disk-", 3)...), true, prepDelete},
	{"golden create", 10, append([]string{"golden:recorded"}, stepsN("golden:disk-", 3)...), true, prepGolden},
	{"clone", 10, append([]string{"clone:journaled", "clone:recorded"}, stepsN("clone:disk-", 3)...), true, prepClone},
	{"guest flatten", 8, []string{"flatten:built", "flatten:renamed"}, true, prepFlatten},
	{"volume import --copy", 10, nil, true, prepImport},
	{"iso capture", 10, nil, false, prepCapture},
}

// pickHow chooses how to interrupt: mostly signals at a random instant,
// sometimes a named step, sometimes nothing (to learn the op's duration
// and check it works).
func (w *world) pickHow(o op) (how, step string, delay time.Duration, duringChild bool) {
	est, known := w.est[o.name]
	if !known {
		return "none", "", 0, false
	}
	r := w.e.rngInt(100)
	how = "none"
	if w.e.cfg.Hows != nil {
		// Only the ways asked for (-signals), in equal shares.
		hs := w.e.cfg.Hows
		if len(o.steps) == 0 {
			hs = slices.DeleteFunc(slices.Clone(hs), func(h string) bool { return h == "crash-at" })
		}
		if len(hs) == 0 {
			return "none", "", 0, false
		}
		switch how = hs[w.e.rngInt(len(hs))]; how {
		case "crash-at":
			return "crash-at", o.steps[w.e.rngInt(len(o.steps))], 0, false
		case "none":
			return how, "", 0, false
		}
		r = 100
	}
	switch {
	case r < 35:
		how = "kill9"
	case r < 50:
		how = "kill9-group"
	case r < 68:
		how = "term"
	case r < 82:
		how = "int-group"
	case r < 94 && len(o.steps) > 0:
		return "crash-at", o.steps[w.e.rngInt(len(o.steps))], 0, false
	}
	if how == "none" {
		return how, "", 0, false
	}
	// A third of the signals land while strata runs a tool (qemu-img):
	// the instants where an image is being changed under it.
	if o.child && w.e.rngInt(3) == 0 {
		return how, "", time.Duration(w.e.rngInt(int(5 * time.Millisecond))), true
	}
	return how, "", time.Duration(w.e.rngInt(int(est) + 1)), false
}

// trial runs one kill trial.
func (w *world) runTrial() {
	w.trial++
	if err := w.mutate(); err != nil {
		w.e.find("the soak could not prepare a trial", "%v", err)
		return
	}
	o := w.pickOp()
	args, check, ok := o.prepare(w)
	if !ok {
		return
	}
	how, step, delay, duringChild := w.pickHow(o)
	kind := o.name + " / " + how
	if duringChild {
		kind += " in child"
	}
	// Sometimes the guest starts and writes after the interruption,
	// before any strata command: recovery must not lose those writes.
	guestWrites := how != "none" && strings.HasPrefix(o.name, "snapshot") && w.e.rngInt(100) < w.e.cfg.GuestWrites
	if guestWrites {
		kind += " + guest writes"
	}
	w.e.rep.Trials++
	w.e.tally(kind).trials++
	label := fmt.Sprintf("trial %d (seed %d): strata %s, %s", w.trial, w.e.rep.Seed, strings.Join(args, " "), how)
	var k killResult
	if how == "none" {
		k = w.h.runKilled("kill9", "", time.Hour, false, args...)
		k.how = "none"
		if k.code == 0 {
			if old, ok := w.est[o.name]; ok {
				w.est[o.name] = (3*old + k.took) / 4
			} else {
				w.est[o.name] = k.took
			}
		} else {
			w.e.find("an uninterrupted operation failed", "%s: exit %d: %s", label, k.code, lastLines(k.stderr, 3))
		}
	} else {
		k = w.h.runKilled(how, step, delay, duringChild, args...)
		label = fmt.Sprintf("trial %d (seed %d): strata %s, %s", w.trial, w.e.rep.Seed, strings.Join(args, " "), k.repro())
	}
	if k.sent {
		w.e.rep.Kills++
		w.e.tally(kind).kills++
	}
	w.e.logf("%s: exit %d after %s%s", label, k.code, k.took.Round(time.Millisecond), orphanNote(k))
	before := len(w.e.rep.Losses)
	var wrote *state
	if guestWrites && k.sent {
		label += ", then the guest writes before any strata command runs"
		wrote = w.guestWritesAfter(k, label)
	}
	orphaned := w.recover(k, label)
	if wrote != nil {
		w.keptWrites(label, *wrote)
		w.extra = []state{*wrote}
	}
	check(k, label)
	w.extra = nil
	w.noteLosses(before, kind, k, orphaned)
	w.tidy()
}

// pickOp draws the trial's operation by weight, among those asked for.
func (w *world) pickOp() op {
	run := ops
	if w.e.cfg.Ops != nil {
		run = slices.DeleteFunc(slices.Clone(ops), func(o op) bool { return !slices.Contains(w.e.cfg.Ops, o.name) })
	}
	total := 0
	for _, o := range run {
		total += o.weight
	}
	r := w.e.rngInt(total)
	var o op
	for _, o = range run {
		if r < o.weight {
			break
		}
		r -= o.weight
	}
	return o
}

// guestWritesAfter starts the guest after an interruption and has it
// write its disks; what they then hold, or nil when it could not.
func (w *world) guestWritesAfter(k killResult, label string) *state {
	// A guest cannot open an image a qemu-img still holds.
	waitGroupGone(k.pgid, 120*time.Second)
	if err := w.guestCanStart(); err != nil {
		// strata keeps a guest out of a disk it is changing (moved
		// aside, or held by the qemu-img it started): the guest
		// does not start, and writes nothing.
		w.e.find("the guest could not start after the interruption (a disk moved aside or held)", "%s: %v", label, err)
		return nil
	}
	if err := w.writeDisks(); err != nil {
		w.e.loss("", "%s: the guest cannot write its disks after the interruption: %v", label, err)
		return nil
	}
	if st, err := w.measure(); err == nil {
		return &st
	}
	return nil
}

// noteLosses counts the losses the trial found (from before on) against
// its kind and adds what may explain them.
func (w *world) noteLosses(before int, kind string, k killResult, orphaned bool) {
	n := len(w.e.rep.Losses) - before
	if n <= 0 {
		return
	}
	w.e.tally(kind).losses += n
	for i := before; i < len(w.e.rep.Losses); i++ {
		if orphaned {
			w.e.rep.Losses[i] += " [an orphaned child of the killed strata was still running when doctor --repair ran]"
		}
		if k.code > 0 {
			w.e.rep.Losses[i] += fmt.Sprintf(" [strata exited %d: %s]", k.code, lastLines(k.stderr, 2))
		}
	}
}

// keptWrites checks that what the guest wrote after an interruption
// survived recovery: live, or kept as a (new) point, which joins the model.
func (w *world) keptWrites(label string, wrote state) {
	cat, ok := w.catalogPoints()
	if !ok {
		return
	}
	kept := false
	for id, p := range cat {
		if _, known := w.points[id]; known {
			continue
		}
		if st, err := w.readPoint(p); err == nil && st.diff(wrote, false) == "" {
			w.points[id] = wrote
			kept = true
		}
	}
	live, err := w.measure()
	if err == nil && !kept && live.diff(wrote, false) != "" {
		w.e.loss("", "%s: recovery discarded what the guest wrote after the interruption: it is neither live nor in any point (live differs in %s)", label, live.diff(wrote, false))
	}
}

func orphanNote(k killResult) string {
	if len(k.orphans) == 0 {
		return ""
	}
	return fmt.Sprintf("; orphans: %s", strings.Join(k.orphans, "; "))
}

// recover runs doctor --repair as an admin would right after the kill
// (even while an orphan still runs), then waits for orphans and makes
// sure doctor is content. It reports whether an orphan was still
// running when doctor --repair started.
func (w *world) recover(k killResult, label string) bool {
	if k.sent && (k.how == "term" || k.how == "int-group") && len(k.orphans) == 0 {
		if r := w.h.run(nil, "doctor"); r.code != 0 {
			w.e.find("SIGTERM/SIGINT left an unfinished operation (strata must finish or undo, then exit)",
				"%s: strata exit %d; doctor: %s", label, k.code, lastLines(r.stdout, 3))
		}
	}
	if len(k.orphans) > 0 {
		w.e.rep.Orphans++
		w.e.find("a child of a killed strata kept running (orphan)", "%s: %s", label, strings.Join(k.orphans, "; "))
	}
	running := len(groupAlive(k.pgid, 0)) > 0
	if r := w.h.run(nil, "doctor", "--repair"); r.code != 0 {
		w.e.find("doctor --repair did not finish the repair", "%s: doctor --repair %s %s", label, r, lastLines(r.stdout, 3))
	}
	if running {
		if !waitGroupGone(k.pgid, 120*time.Second) {
			w.e.find("an orphan ran for more than 2 minutes", "%s", label)
		}
		if r := w.h.run(nil, "doctor"); r.code != 0 {
			w.e.find("after the orphan ended, doctor found problems its --repair had not seen",
				"%s: %s", label, lastLines(r.stdout, 3))
			w.h.run(nil, "doctor", "--repair")
		}
	}
	if r := w.h.run(nil, "doctor"); r.code != 0 {
		w.e.find("doctor reports problems after --repair", "%s: %s", label, lastLines(r.stdout, 3))
	}
	return running
}

// pointsAfter compares the catalog with the model: every model point but
// those in mayGo must be there. It returns the catalog's points and the
// ids the model does not know (for the caller to judge).
func (w *world) pointsAfter(label string, mayGo map[int]bool) (map[int]pointJSON, []int, bool) {
	cat, ok := w.catalogPoints()
	if !ok {
		return nil, nil, false
	}
	for id := range w.points {
		if _, there := cat[id]; !there && !mayGo[id] {
			w.e.loss("", "%s: point %d lost (not in the catalog)", label, id)
			delete(w.points, id)
		}
	}
	var added []int
	for id, p := range cat {
		if _, known := w.points[id]; !known {
			added = append(added, id)
		}
		if p.State != "" && p.State != "ready" {
			w.e.find("a point is listed in an unfinished state after doctor --repair", "%s: point %d is %q", label, id, p.State)
		}
	}
	sort.Ints(added)
	return cat, added, true
}

// checkPointData reads a point directly and compares it with want.
func (w *world) checkPointData(label string, p pointJSON, want state) bool {
	got, err := w.readPoint(p)
	if err != nil {
		w.e.loss("", "%s: point %d unreadable: %v", label, p.ID, err)
		return false
	}
	if d := want.diff(got, false); d != "" {
		w.e.loss("", "%s: point %d holds the wrong bytes: %s", label, p.ID, d)
		return false
	}
	return true
}

// liveIs checks that the live state is one of the allowed ones and
// returns which (-1: none, a loss).
func (w *world) liveIs(label string, allowed ...state) (state, int) {
	got, err := w.measure()
	if err != nil {
		w.e.loss("", "%s: live guest unreadable: %v", label, err)
		return got, -1
	}
	for i, a := range append(allowed, w.extra...) {
		if a.diff(got, true) == "" {
			return got, i
		}
	}
	var d []string
	for _, a := range allowed {
		d = append(d, a.diff(got, true))
	}
	w.e.loss("", "%s: the live guest is in none of the states it may be in (differs in: %s)", label, strings.Join(d, " / "))
	return got, -1
}

func prepCreate(w *world) ([]string, func(killResult, string), bool) {
	l0 := w.live
	return []string{"snapshot", "create", w.guest}, func(k killResult, label string) {
		cat, added, ok := w.pointsAfter(label, nil)
		if !ok {
			return
		}
		if len(added) > 1 {
			w.e.loss("", "%s: %d new points %v (want at most 1)", label, len(added), added)
		}
		if k.code == 0 && len(added) == 0 {
			w.e.loss("", "%s: create exited 0 but no new point is listed", label)
		}
		for _, id := range added {
			if w.checkPointData(label, cat[id], l0) {
				w.points[id] = l0
			} else {
				w.dropPoint(id)
			}
		}
		w.live, _ = w.liveIs(label, l0)
	}, true
}

func (w *world) randomPoint() (int, bool) {
	if len(w.points) == 0 {
		return 0, false
	}
	ids := make([]int, 0, len(w.points))
	for id := range w.points {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids[w.e.rngInt(len(ids))], true
}

func prepRollback(w *world) ([]string, func(killResult, string), bool) {
	to, ok := w.randomPoint()
	if !ok {
		return prepCreate(w)
	}
	l0, target := w.live, w.points[to]
	return []string{"snapshot", "rollback", w.guest, fmt.Sprint(to)}, func(k killResult, label string) {
		cat, added, ok := w.pointsAfter(label, nil)
		if !ok {
			return
		}
		if len(added) > 1 {
			w.e.loss("", "%s: %d new points %v (want at most the pre-rollback point)", label, len(added), added)
		}
		now, which := w.liveIs(label, l0, target)
		w.live = now
		if which == 1 && len(added) == 0 {
			w.e.loss("", "%s: rolled back, but the state before the rollback is in no point", label)
		}
		// (which 2 and up: what the guest wrote after the rollback, on
		// top of a state the hashes can no longer tell.)
		if k.code == 0 && which < 1 {
			w.e.loss("", "%s: rollback exited 0 but the guest is not at point %d", label, to)
		}
		for _, id := range added {
			if cat[id].Kind != "pre-rollback" {
				w.e.loss("", "%s: new point %d is %q, want pre-rollback", label, id, cat[id].Kind)
			}
			if w.checkPointData(label, cat[id], l0) {
				w.points[id] = l0
			} else {
				w.dropPoint(id)
			}
		}
	}, true
}

func prepDelete(w *world) ([]string, func(killResult, string), bool) {
	if len(w.points) < 2 {
		return prepCreate(w)
	}
	id, _ := w.randomPoint()
	l0 := w.live
	return []string{"snapshot", "delete", w.guest, fmt.Sprint(id)}, func(k killResult, label string) {
		cat, added, ok := w.pointsAfter(label, map[int]bool{id: true})
		if !ok {
			return
		}
		if len(added) > 0 {
			w.e.loss("", "%s: new points %v appeared", label, added)
		}
		if _, there := cat[id]; !there {
			delete(w.points, id)
		} else if k.code == 0 {
			w.e.loss("", "%s: delete exited 0 but point %d is still listed", label, id)
		}
		w.live, _ = w.liveIs(label, l0)
	}, true
}

type goldenJSON struct {
	Name  string
	Disks []struct{ Volume, Path, Format string }
}

func (w *world) goldenList() (map[string]goldenJSON, bool) {
	var gs []goldenJSON
	if !w.h.json(&gs, "golden", "list") {
		return nil, false
	}
	m := map[string]goldenJSON{}
	for _, g := range gs {
		m[g.Name] = g
	}
	return m, true
}

func (w *world) newName(prefix string) string {
	w.names++
	return fmt.Sprintf("%s%d", prefix, w.names)
}

func prepGolden(w *world) ([]string, func(killResult, string), bool) {
	for len(w.goldens) >= 2 {
		w.retireGolden(w.goldens[0])
	}
	name := w.newName("gold")
	src, want := w.guest, w.live
	if id, ok := w.randomPoint(); ok && w.e.rngInt(2) == 0 {
		src, want = fmt.Sprintf("%s@%d", w.guest, id), w.points[id]
	}
	args := []string{"golden", "create", name, "--from", src}
	return args, func(k killResult, label string) {
		w.pointsAfter(label, nil)
		w.live, _ = w.liveIs(label, w.live)
		gl, ok := w.goldenList()
		if !ok {
			return
		}
		g, there := gl[name]
		if !there {
			if k.code == 0 {
				w.e.loss("", "%s: golden create exited 0 but the golden is not listed", label)
			}
			return
		}
		gd := &golden{name: name}
		for _, d := range g.Disks {
			h, err := w.e.hashImage(d.Path, d.Format, "")
			if err != nil || h != want.disks[d.Volume] {
				w.e.loss("", "%s: golden %s's copy of %s is wrong (%v)", label, name, d.Volume, err)
			}
			gd.disks = append(gd.disks, h)
		}
		w.goldens = append(w.goldens, gd)
	}, true
}

// retireGolden deletes a golden's clones and the golden (no kill).
func (w *world) retireGolden(g *golden) {
	for _, c := range slices.Clone(w.clones) {
		if c.golden == g {
			w.deleteClone(c)
		}
	}
	w.h.must("golden", "delete", g.name)
	w.goldens = slices.DeleteFunc(w.goldens, func(x *golden) bool { return x == g })
}

func (w *world) deleteClone(c *clone) {
	w.h.must("guest", "delete", c.name, "--with-disks")
	w.clones = slices.DeleteFunc(w.clones, func(x *clone) bool { return x == c })
}

// ensureGolden makes a golden without interruption if there is none.
func (w *world) ensureGolden() *golden {
	if len(w.goldens) == 0 {
		name := w.newName("gold")
		if _, ok := w.h.must("golden", "create", name, "--from", w.guest); !ok {
			return nil
		}
		gd := &golden{name: name}
		for _, v := range w.vols {
			gd.disks = append(gd.disks, w.live.disks[v.name])
		}
		w.goldens = append(w.goldens, gd)
	}
	return w.goldens[w.e.rngInt(len(w.goldens))]
}

// cloneDisks reads a clone guest's disks in order; exists false if the
// guest is not defined.
func (w *world) cloneDisks(name string) (hashes []string, backed []bool, exists bool, err error) {
	r := w.h.run(nil, "-o", "json", "guest", "show", name)
	if r.code == 3 {
		return nil, nil, false, nil
	}
	if r.code != 0 {
		return nil, nil, false, fmt.Errorf("guest show %s: %s", name, r)
	}
	var g struct{ Disks []struct{ Volume string } }
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		return nil, nil, true, err
	}
	for _, d := range g.Disks {
		var v struct {
			Path, Format string
			Backing      *string
		}
		if !w.h.json(&v, "volume", "info", d.Volume) {
			return nil, nil, true, fmt.Errorf("volume info %s failed", d.Volume)
		}
		h, err := w.e.hashImage(v.Path, v.Format, "")
		if err != nil {
			return nil, nil, true, err
		}
		hashes = append(hashes, h)
		backed = append(backed, v.Backing != nil)
	}
	return hashes, backed, true, nil
}

func prepClone(w *world) ([]string, func(killResult, string), bool) {
	for len(w.clones) >= 3 {
		w.deleteClone(w.clones[0])
	}
	g := w.ensureGolden()
	if g == nil {
		return nil, nil, false
	}
	name := w.newName("c")
	args := []string{"clone", g.name, name}
	if w.e.rngInt(3) == 0 {
		args = append(args, "--full")
	}
	if w.e.rngInt(3) == 0 {
		args = append(args, "--pool", "x")
	}
	return args, func(k killResult, label string) {
		hs, _, exists, err := w.cloneDisks(name)
		if err != nil {
			w.e.loss("", "%s: clone %s unreadable: %v", label, name, err)
			return
		}
		if !exists {
			if k.code == 0 {
				w.e.loss("", "%s: clone exited 0 but guest %s is not defined", label, name)
			}
			var vs []struct{ Name string }
			w.h.json(&vs, "volume", "list")
			for _, v := range vs {
				if strings.HasPrefix(v.Name, name+"-") {
					w.e.find("a half-made clone left volumes registered", "%s: volume %s", label, v.Name)
				}
			}
			return
		}
		if !slices.Equal(hs, g.disks) {
			w.e.loss("", "%s: clone %s's disks differ from golden %s's", label, name, g.name)
		}
		w.clones = append(w.clones, &clone{name, g})
	}, true
}

func prepFlatten(w *world) ([]string, func(killResult, string), bool) {
	var c *clone
	for _, x := range w.clones {
		if _, backed, _, _ := w.cloneDisks(x.name); slices.Contains(backed, true) {
			c = x
			break
		}
	}
	if c == nil {
		g := w.ensureGolden()
		if g == nil {
			return nil, nil, false
		}
		name := w.newName("c")
		if _, ok := w.h.must("clone", g.name, name); !ok {
			return nil, nil, false
		}
		c = &clone{name, g}
		w.clones = append(w.clones, c)
	}
	return []string{"guest", "flatten", c.name}, func(k killResult, label string) {
		hs, backed, exists, err := w.cloneDisks(c.name)
		if err != nil || !exists {
			w.e.loss("", "%s: clone %s unreadable after flatten (exists %v): %v", label, c.name, exists, err)
			return
		}
		if !slices.Equal(hs, c.golden.disks) {
			w.e.loss("", "%s: flatten changed what clone %s reads", label, c.name)
		}
		if k.code == 0 && slices.Contains(backed, true) {
			w.e.loss("", "%s: flatten exited 0 but a disk still has a backing file", label)
		}
	}, true
}

// makeSource writes a raw (or qcow2) image with data and holes to import.
func (w *world) makeSource() (path, format, sum string, err error) {
	path = filepath.Join(w.e.dir, "src.img")
	os.Remove(path)
	f, err := os.Create(path)
	if err != nil {
		return
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < 24; i++ {
		if w.e.rngInt(3) == 0 {
			continue // a hole
		}
		rngMu.Lock()
		for j := range buf {
			buf[j] = byte(w.e.rng.Uint32())
		}
		rngMu.Unlock()
		if _, err = f.WriteAt(buf, int64(i)<<20); err != nil {
			f.Close()
			return
		}
	}
	if err = f.Truncate(diskSize); err != nil {
		f.Close()
		return
	}
	f.Close()
	format = "raw"
	if sum, err = hashFile(path); err != nil {
		return
	}
	if w.e.rngInt(2) == 0 {
		q := filepath.Join(w.e.dir, "src.qcow2")
		os.Remove(q)
		if _, err = sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", path, q); err != nil {
			return
		}
		path, format = q, "qcow2"
	}
	return
}

func prepImport(w *world) ([]string, func(killResult, string), bool) {
	src, format, sum, err := w.makeSource()
	if err != nil {
		w.e.find("the soak could not prepare a trial", "%v", err)
		return nil, nil, false
	}
	name := w.newName("imp")
	args := []string{"volume", "import", src, "--copy", "--name", name}
	if w.e.rngInt(2) == 0 {
		args = append(args, "--pool", "x")
	}
	return args, func(k killResult, label string) {
		if h, err := w.e.hashImage(src, format, ""); err != nil || h != sum {
			w.e.loss("", "%s: the import source changed (%v)", label, err)
		}
		r := w.h.run(nil, "-o", "json", "volume", "info", name)
		if r.code == 3 {
			if k.code == 0 {
				w.e.loss("", "%s: import exited 0 but volume %s is not listed", label, name)
			}
			return
		}
		var v struct{ Path, Format string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
			w.e.loss("", "%s: volume %s unreadable: %s", label, name, r)
			return
		}
		if v.Format != format {
			w.e.loss("", "%s: imported %s as %s", label, format, v.Format)
		} else if h, err := w.e.hashImage(v.Path, v.Format, ""); err != nil || h != sum {
			w.e.loss("", "%s: imported volume %s holds the wrong bytes (%v)", label, name, err)
		}
		w.h.must("volume", "delete", name)
	}, true
}

// makeISO builds the ISO that capture trials copy: big enough (24 MiB of
// files) that a capture can be interrupted.
func (w *world) makeISO() error {
	d := filepath.Join(w.e.dir, "isotree")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < 24; i++ {
		for j := range buf {
			buf[j] = byte(w.e.rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d.bin", i)), buf, 0o644); err != nil {
			return err
		}
	}
	w.iso = filepath.Join(w.e.dir, "src.iso")
	if _, err := sh("xorriso", "-as", "mkisofs", "-quiet", "-o", w.iso, d); err != nil {
		return err
	}
	fi, err := os.Stat(w.iso)
	if err != nil {
		return err
	}
	w.isoSize = fi.Size()
	os.RemoveAll(d)
	w.isoSum, err = hashFile(w.iso)
	return err
}

type isoJSON struct {
	Path   string
	Size   int64
	Sha256 string
}

func prepCapture(w *world) ([]string, func(killResult, string), bool) {
	name := w.newName("iso")
	args := []string{"iso", "capture", w.iso, name}
	if w.e.rngInt(2) == 0 {
		args = append(args, "--pool", "x")
	}
	if w.e.rngInt(3) == 0 {
		args = append(args, "--verify")
	}
	return args, func(k killResult, label string) {
		r := w.h.run(nil, "-o", "json", "iso", "info", name)
		if r.code == 3 {
			if k.code == 0 {
				w.e.loss("", "%s: capture exited 0 but iso %s is not listed", label, name)
			}
			return
		}
		var v isoJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
			w.e.loss("", "%s: iso %s unreadable: %s", label, name, r)
			return
		}
		if h, err := hashFile(v.Path); err != nil || h != w.isoSum || v.Size != w.isoSize || !strings.HasPrefix(v.Sha256, w.isoSum) {
			w.e.loss("", "%s: iso %s is not the source (size %d of %d, %v)", label, name, v.Size, w.isoSize, err)
		}
		w.h.must("iso", "delete", name)
	}, true
}

// verifyAll rolls back to every point (no kill) and checks its disks and
// definition, then the goldens and clones. Its own pre-rollback points
// are verified too, then deleted.
func (w *world) verifyAll(label string) {
	w.e.rep.Verifies++
	cat, added, ok := w.pointsAfter(label, nil)
	if !ok {
		return
	}
	for _, id := range added {
		w.e.find("a point the model does not know is listed", "%s: point %d (%s); deleted", label, id, cat[id].Kind)
		w.h.must("snapshot", "delete", w.guest, fmt.Sprint(id))
	}
	ids := make([]int, 0, len(w.points))
	for id := range w.points {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var made []int
	for _, id := range ids {
		want := w.points[id]
		if !w.checkPointData(label, cat[id], want) {
			w.dropPoint(id)
			continue
		}
		l0 := w.live
		r := w.h.run(nil, "-o", "json", "snapshot", "rollback", w.guest, fmt.Sprint(id))
		if r.code != 0 {
			w.e.loss("", "%s: rollback to point %d failed: %s", label, id, r)
			w.live, _ = w.measure()
			continue
		}
		var out struct {
			PreRollback pointJSON `json:"pre_rollback"`
		}
		_ = json.Unmarshal([]byte(r.stdout), &out)
		got, err := w.measure()
		if err != nil {
			w.e.loss("", "%s: after rollback to %d: %v", label, id, err)
			continue
		}
		if d := want.diff(got, true); d != "" {
			w.e.loss("", "%s: rollback to point %d gave the wrong %s", label, id, d)
		}
		w.live = got
		if out.PreRollback.ID > 0 {
			w.points[out.PreRollback.ID] = l0
			made = append(made, out.PreRollback.ID)
		}
	}
	for _, id := range made {
		if _, ok := w.h.must("snapshot", "delete", w.guest, fmt.Sprint(id)); ok {
			delete(w.points, id)
		}
	}
	gl, ok := w.goldenList()
	if !ok {
		return
	}
	for _, g := range w.goldens {
		gj, there := gl[g.name]
		if !there {
			w.e.loss("", "%s: golden %s lost", label, g.name)
			continue
		}
		for i, d := range gj.Disks {
			if h, err := w.e.hashImage(d.Path, d.Format, ""); err != nil || i >= len(g.disks) || h != g.disks[i] {
				w.e.loss("", "%s: golden %s disk %d changed (%v)", label, g.name, i+1, err)
			}
		}
	}
	for _, c := range w.clones {
		hs, _, exists, err := w.cloneDisks(c.name)
		if err != nil || !exists || !slices.Equal(hs, c.golden.disks) {
			w.e.loss("", "%s: clone %s lost or changed (exists %v, %v)", label, c.name, exists, err)
		}
	}
}

// dropPoint forgets a point found wrong (reported once) and deletes it,
// so that it is not taken for the next operation's new point.
func (w *world) dropPoint(id int) {
	delete(w.points, id)
	w.h.run(nil, "snapshot", "delete", w.guest, fmt.Sprint(id))
}

// tidy keeps the guest's point count small (deletes without a kill).
func (w *world) tidy() {
	for len(w.points) > 10 {
		id, _ := w.randomPoint()
		if _, ok := w.h.must("snapshot", "delete", w.guest, fmt.Sprint(id)); !ok {
			return
		}
		delete(w.points, id)
	}
}
