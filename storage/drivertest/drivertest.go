// Package drivertest is the conformance suite every storage driver passes
// (as containerd's snapshotter suite): given a driver and a way to make an
// empty pool, Run proves on real tools what the driver declares and what
// storage.Driver's doc promises, crashes included.
//
// A driver's package calls it once per kind of pool it serves:
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, drivertest.Config{Driver: mydriver.Driver{},
//			Pool: func(t *testing.T) storage.Pool { ... }, CrashSteps: ...})
//	}
//
// Pool is called lazily, once, so that the crash cases can run the same
// test binary again as a child (STRATA_CRASH_AT set) on the pool the
// parent made: Run in such a child performs one step and is killed there.
//
// Raw volumes that are files or block devices are written and read
// directly (writes synced, a block device read past the page cache);
// qcow2 volumes and network volumes (rbd:...) are written with qemu-io
// and read back with qemu-img convert.
package drivertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/storagetest"
)

// Config is a driver under test.
type Config struct {
	Driver storage.Driver
	// Pool makes an empty pool for the driver (cleaned up by the test).
	Pool func(t *testing.T) storage.Pool
	// CrashSteps are the STRATA_CRASH_AT steps the driver's TakePoint,
	// RestorePoint and Flatten must pass: each must be on the path of at
	// least one rollback or flatten of the suite. The suite learns each
	// path's steps from a run that traces them (STRATA_CRASH_TRACE) and
	// kills a child at every one, listed here or not.
	CrashSteps []string
	// Size of the volumes made (default 4 MiB).
	Size int64
}

const childEnv = "STRATA_DRIVERTEST_CHILD"

// The bytes a case writes: a pattern at two places (the start and 1 MiB
// in), 64 KiB each.
const (
	chunk  = 64 << 10
	second = 1 << 20
)

// Run runs the whole suite.
func Run(t *testing.T, c Config) {
	if raw := os.Getenv(childEnv); raw != "" {
		runChild(t, c, raw)
		return
	}
	// The drivers' info logs (a volume deleted ...) would drown the
	// suite's output; warnings and errors stay.
	zerolog.SetGlobalLevel(zerolog.WarnLevel)
	if c.Size == 0 {
		c.Size = 4 << 20
	}
	s := &suite{Config: c, ctx: context.Background(), name: t.Name()}
	if slices.Contains(s.formats(), storage.FormatQcow2) {
		storagetest.NeedTool(t, "qemu-img")
		storagetest.NeedTool(t, "qemu-io")
	}
	s.pool = c.Pool(t)
	feats, err := c.Driver.Features(s.ctx, s.pool)
	if err != nil {
		t.Fatalf("Features: %v", err)
	}
	s.features = feats
	t.Run("volumes", s.volumes)
	t.Run("unsupported", s.unsupported)
	for _, m := range c.Driver.PointMethods() {
		for _, f := range m.Formats {
			m, f := m, f
			t.Run("points/"+m.Name+"/"+string(f), func(t *testing.T) { s.points(t, m, f) })
		}
	}
	for _, f := range s.formats() {
		f := f
		t.Run("golden/"+string(f), func(t *testing.T) { s.golden(t, f) })
	}
	t.Run("o1-claims", s.o1Claims)
	t.Run("crash", s.crashes)
}

type suite struct {
	Config
	ctx      context.Context
	name     string // the test that called Run: a child runs it again
	pool     storage.Pool
	features storage.Features
}

// formats are those some point method applies to.
func (s *suite) formats() []storage.Format {
	var out []storage.Format
	for _, m := range s.Driver.PointMethods() {
		for _, f := range m.Formats {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// volume makes a volume of the pool as storage/store does.
func (s *suite) volume(t *testing.T, name string, f storage.Format) storage.Volume {
	t.Helper()
	v := storage.Volume{ID: storage.NewID(), Name: name, Pool: s.pool.Name, Format: f, Created: time.Now().UTC()}
	v.Path = s.Driver.VolumePath(s.pool, v.ID, f)
	if err := s.Driver.Create(s.ctx, s.pool, v.Path, f, s.Size); err != nil {
		t.Fatalf("Create %s: %v", f, err)
	}
	t.Cleanup(func() { _ = s.Driver.Delete(context.Background(), s.pool, v, true) })
	return v
}

// write puts pattern p at both places of v.
func write(t *testing.T, v storage.Volume, p byte) {
	t.Helper()
	for _, off := range []int{0, second} {
		writePattern(t, v.Path, v.Format, p, int64(off), chunk)
	}
}

// writePattern writes n bytes p at off of the image at path, synced.
func writePattern(t *testing.T, path string, f storage.Format, p byte, off, n int64) {
	t.Helper()
	if !direct(path, f) {
		storagetest.Cmd(t, "qemu-io", "-f", string(f), "-c", fmt.Sprintf("write -P 0x%02x %d %d", p, off, n), path)
		return
	}
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(bytes.Repeat([]byte{p}, int(n)), off); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatalf("sync %s: %v", path, err)
	}
}

// direct tells whether the suite reads and writes the image at path
// itself: a raw file or block device, not a network volume's URI.
func direct(path string, f storage.Format) bool {
	return f == storage.FormatRaw && filepath.IsAbs(path)
}

// readRaw reads a raw image whole; a block device past the page cache
// (a device another one replaced under the same name must not be read
// from what the old one left cached).
func readRaw(t *testing.T, path string) []byte {
	t.Helper()
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// contents reads the pattern at both places of the image at path (0: zeros).
func contents(t *testing.T, path string, f storage.Format) [2]byte {
	t.Helper()
	var b []byte
	if direct(path, f) {
		b = readRaw(t, path)
	} else {
		raw := filepath.Join(t.TempDir(), "read.raw")
		storagetest.Cmd(t, "qemu-img", "convert", "-U", "-f", string(f), "-O", "raw", path, raw)
		b = readRaw(t, raw)
	}
	var out [2]byte
	for i, off := range []int{0, second} {
		if off+chunk > len(b) {
			t.Fatalf("%s holds %d bytes: too short", path, len(b))
		}
		c := b[off : off+chunk]
		if !bytes.Equal(c, bytes.Repeat(c[:1], chunk)) {
			t.Fatalf("%s at %d holds mixed bytes (a torn write?)", path, off)
		}
		out[i] = c[0]
	}
	return out
}

func expect(t *testing.T, v storage.Volume, p byte, when string) {
	t.Helper()
	if got := contents(t, v.Path, v.Format); got != [2]byte{p, p} {
		t.Fatalf("%s: volume %s holds %#x, want %#x at both places", when, v.Name, got, p)
	}
}

// volumes: create, write, fingerprint, resize, delete (twice).
func (s *suite) volumes(t *testing.T) {
	for _, f := range s.formats() {
		v := s.volume(t, "vol-"+string(f), f)
		expect(t, v, 0, "a new volume")
		fp1, ok, err := s.Driver.Fingerprint(s.pool, v)
		if err != nil || !ok {
			t.Fatalf("Fingerprint of a new volume: %v %v", ok, err)
		}
		if !slices.Contains(s.Driver.Locations(s.pool, v), v.Path) {
			t.Fatalf("Locations %v leave out the live path %q", s.Driver.Locations(s.pool, v), v.Path)
		}
		write(t, v, 0xa1)
		expect(t, v, 0xa1, "after a write")
		fp2, _, _ := s.Driver.Fingerprint(s.pool, v)
		if fp1 == fp2 {
			t.Fatalf("Fingerprint did not change with a write: %+v", fp1)
		}
		if err := s.Driver.Resize(s.ctx, s.pool, v.Path, f, 2*s.Size, false); err != nil {
			t.Fatalf("Resize: %v", err)
		}
		expect(t, v, 0xa1, "after a resize")
		if err := s.Driver.Delete(s.ctx, s.pool, v, true); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, ok, _ := s.Driver.Fingerprint(s.pool, v); ok {
			t.Fatal("the volume is still there after Delete")
		}
		if err := s.Driver.Delete(s.ctx, s.pool, v, true); err != nil {
			t.Fatalf("Delete of an absent volume: %v (absent must be success)", err)
		}
	}
}

// unsupported: what no method claims is refused as not supported.
func (s *suite) unsupported(t *testing.T) {
	iso := storage.Volume{ID: storage.NewID(), Name: "media", Format: storage.FormatISO,
		Path: s.Driver.VolumePath(s.pool, storage.NewID(), storage.FormatISO)}
	for _, m := range s.Driver.PointMethods() {
		if slices.Contains(m.Formats, storage.FormatISO) {
			return
		}
	}
	if _, err := s.Driver.PlanPoint(s.ctx, s.pool, iso, "000000000000", storage.PointOptions{}); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("PlanPoint of iso media: %v, want not supported", err)
	}
	if _, err := s.Driver.PlanPoint(s.ctx, s.pool, iso, "000000000000", storage.PointOptions{Method: "no-such-method"}); err == nil {
		t.Fatal("PlanPoint with an unknown method succeeded")
	}
}

func newUID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// take plans and takes a point of v.
func (s *suite) take(t *testing.T, v storage.Volume, method string, replacing bool) storage.PointRef {
	t.Helper()
	ref, err := s.Driver.PlanPoint(s.ctx, s.pool, v, newUID(), storage.PointOptions{Method: method, ReplacingLive: replacing})
	if err != nil {
		t.Fatalf("PlanPoint(%s): %v", method, err)
	}
	if err := s.Driver.TakePoint(s.ctx, s.pool, v, &ref, storage.NoProgress{}); err != nil {
		t.Fatalf("TakePoint(%s): %v", ref.Method, err)
	}
	return ref
}

func (s *suite) method(name string) storage.PointMethod {
	for _, m := range s.Driver.PointMethods() {
		if m.Name == name {
			return m
		}
	}
	return storage.PointMethod{}
}

// rollback does what snapshot does: refuse up front, take the
// pre-rollback point (the live data itself where the restore replaces
// it), restore, and check the state it recorded is the live one.
func (s *suite) rollback(t *testing.T, v storage.Volume, to storage.PointRef) storage.PointRef {
	t.Helper()
	if err := s.Driver.CheckRestore(s.ctx, s.pool, v, to); err != nil {
		t.Fatalf("CheckRestore: %v", err)
	}
	pre := s.take(t, v, "", s.method(to.Method).ReplacesLive)
	var rec *storage.Fingerprint
	step := storage.RestoreStep{Progress: storage.NoProgress{}, Record: func(fp storage.Fingerprint) error { rec = &fp; return nil }}
	if pre.Moved {
		step.MoveTo = pre.Ref
	}
	if err := s.Driver.RestorePoint(s.ctx, s.pool, v, to, step); err != nil {
		t.Fatalf("RestorePoint: %v", err)
	}
	s.recorded(t, v, rec)
	return pre
}

// recorded checks that the live state is the one the restore recorded.
func (s *suite) recorded(t *testing.T, v storage.Volume, rec *storage.Fingerprint) {
	t.Helper()
	fp, ok, err := s.Driver.Fingerprint(s.pool, v)
	if err != nil || !ok {
		t.Fatalf("Fingerprint after a restore: %v %v", ok, err)
	}
	if rec == nil || *rec != fp {
		t.Fatalf("the restore recorded %+v, the live volume is %+v: recovery could not tell strata's work from a guest's", rec, fp)
	}
}

// undo puts back what pre holds: by a move where pre is the moved live
// data (pre is gone then), else by a restore.
func (s *suite) undo(t *testing.T, v storage.Volume, pre storage.PointRef) (kept bool) {
	t.Helper()
	if pre.Moved {
		if err := s.Driver.PutBack(s.ctx, s.pool, v, pre); err != nil {
			t.Fatalf("PutBack: %v", err)
		}
		return false
	}
	var rec *storage.Fingerprint
	if err := s.Driver.RestorePoint(s.ctx, s.pool, v, pre, storage.RestoreStep{Progress: storage.NoProgress{}, Record: func(fp storage.Fingerprint) error { rec = &fp; return nil }}); err != nil {
		t.Fatalf("RestorePoint (undo): %v", err)
	}
	s.recorded(t, v, rec)
	return true
}

// removeLater removes a point when the test ends, before its volume
// goes (cleanups run last first): a point may be data of its own (an LV).
func (s *suite) removeLater(t *testing.T, v storage.Volume, ref storage.PointRef) {
	t.Cleanup(func() {
		if err := s.Driver.RemovePoint(context.Background(), s.pool, v, ref); err != nil {
			t.Errorf("RemovePoint at the end of the test: %v", err)
		}
	})
}

func (s *suite) exists(t *testing.T, v storage.Volume, ref storage.PointRef) bool {
	t.Helper()
	ok, err := s.Driver.PointExists(s.ctx, s.pool, v, ref)
	if err != nil {
		t.Fatalf("PointExists: %v", err)
	}
	return ok
}

func (s *suite) remove(t *testing.T, v storage.Volume, ref storage.PointRef) {
	t.Helper()
	for i := 0; i < 2; i++ { // absent is success
		if err := s.Driver.RemovePoint(s.ctx, s.pool, v, ref); err != nil {
			t.Fatalf("RemovePoint (run %d): %v", i+1, err)
		}
	}
	if s.exists(t, v, ref) {
		t.Fatal("a removed point still exists")
	}
}

// plan returns the point method m on this pool, or skips: a method the
// pool cannot offer (reflink on ext4) must be refused as invalid.
func (s *suite) plan(t *testing.T, v storage.Volume, m storage.PointMethod) {
	t.Helper()
	if _, err := s.Driver.PlanPoint(s.ctx, s.pool, v, newUID(), storage.PointOptions{Method: m.Name}); err != nil {
		if errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrNotSupported) {
			t.Skipf("pool offers no %s points: %v", m.Name, err)
		}
		t.Fatalf("PlanPoint(%s): %v", m.Name, err)
	}
}

// points: any-order rollback keeping every point, undo, middle delete.
func (s *suite) points(t *testing.T, m storage.PointMethod, f storage.Format) {
	v := s.volume(t, "pts", f)
	s.plan(t, v, m)
	write(t, v, 0xa1)
	p1 := s.take(t, v, m.Name, false)
	if p1.Method != m.Name || !s.exists(t, v, p1) {
		t.Fatalf("point %+v: want method %s, existing", p1, m.Name)
	}
	write(t, v, 0xb2)
	p2 := s.take(t, v, m.Name, false)
	write(t, v, 0xc3)
	expect(t, v, 0xc3, "before any rollback")
	if same, err := s.Driver.SamePoint(s.ctx, s.pool, v, p1, p2); err != nil || same {
		t.Fatalf("SamePoint of different points: %v %v", same, err)
	}

	pre1 := s.rollback(t, v, p1) // to an older point
	expect(t, v, 0xa1, "after a rollback to the first point")
	pre2 := s.rollback(t, v, p2) // to a newer one
	expect(t, v, 0xb2, "after a rollback to the second point")
	for _, p := range []storage.PointRef{p1, p2, pre1} {
		if !s.exists(t, v, p) {
			t.Fatalf("point %+v is gone after rollbacks: every point must survive", p)
		}
	}
	// Undo the last rollback: the state it replaced comes back.
	if kept := s.undo(t, v, pre2); kept {
		s.remove(t, v, pre2)
	}
	expect(t, v, 0xa1, "after undoing the rollback to the second point")
	write(t, v, 0xd4)
	// Delete the middle point; the others still restore.
	s.remove(t, v, p2)
	pre3 := s.rollback(t, v, pre1)
	expect(t, v, 0xc3, "after a rollback to the first pre-rollback point")
	pre4 := s.rollback(t, v, p1)
	expect(t, v, 0xa1, "after a rollback to the first point, the middle one deleted")
	pre5 := s.rollback(t, v, pre3)
	expect(t, v, 0xd4, "after a rollback to the state before the middle delete")
	for _, p := range []storage.PointRef{p1, pre1, pre3, pre4, pre5} {
		s.remove(t, v, p)
	}
	expect(t, v, 0xd4, "after removing every point")
	s.Driver.CleanRestores(s.pool, v)
}

// golden: freeze now and at a point, linked clones isolated from each
// other and from the golden, full clones, flatten with a point on the
// clone, golden removed after flatten.
func (s *suite) golden(t *testing.T, f storage.Format) {
	src := s.volume(t, "src", f)
	write(t, src, 0xa1)
	p := s.take(t, src, "", false)
	s.removeLater(t, src, p)
	write(t, src, 0xb2)
	gNow, gPoint := s.freeze(t, src, f, "now", nil), s.freeze(t, src, f, "at-point", &p)
	if got := contents(t, gNow.Path, f); got != [2]byte{0xb2, 0xb2} {
		t.Fatalf("golden frozen now holds %#x", got)
	}
	if got := contents(t, gPoint.Path, f); got != [2]byte{0xa1, 0xa1} {
		t.Fatalf("golden frozen at a point holds %#x", got)
	}
	write(t, src, 0xc3) // the source lives on; the golden does not change
	c1, c2, c3 := s.clone(t, "c1", gNow, false), s.clone(t, "c2", gNow, false), s.clone(t, "c3", gPoint, true)
	expect(t, c1, 0xb2, "a new linked clone")
	expect(t, c3, 0xa1, "a new full clone of the golden frozen at a point")
	write(t, c1, 0xd4)
	write(t, c3, 0xe5)
	expect(t, c2, 0xb2, "a clone after its sibling was written")
	if got := contents(t, gNow.Path, f); got != [2]byte{0xb2, 0xb2} {
		t.Fatalf("golden after its clones were written holds %#x", got)
	}
	// Flatten keeps the bytes, and the clone's points.
	cp := s.take(t, c1, "", false)
	s.removeLater(t, c1, cp)
	write(t, c1, 0xf6)
	backing, err := s.Driver.Flatten(s.ctx, s.pool, c1, []storage.PointRef{cp}, storage.NoProgress{})
	if err != nil {
		t.Fatalf("Flatten: %v", err)
	}
	if (backing != "") != (c1.Backing != "") {
		t.Fatalf("Flatten of a clone with backing %q reported %q", c1.Backing, backing)
	}
	if b := s.backing(t, c1); b != "" {
		t.Fatalf("a flattened clone still reads from %q", b)
	}
	if again, err := s.Driver.Flatten(s.ctx, s.pool, c1, []storage.PointRef{cp}, storage.NoProgress{}); err != nil || again != "" {
		t.Fatalf("Flatten again: %q %v (want nothing to do)", again, err)
	}
	if _, err := s.Driver.Flatten(s.ctx, s.pool, c2, nil, storage.NoProgress{}); err != nil {
		t.Fatalf("Flatten c2: %v", err)
	}
	if err := s.Driver.RemoveImages(s.ctx, s.pool, []string{gNow.Path, gPoint.Path}); err != nil {
		t.Fatalf("RemoveImages: %v", err)
	}
	if err := s.Driver.RemoveImages(s.ctx, s.pool, []string{gNow.Path}); err != nil {
		t.Fatalf("RemoveImages of an absent image: %v", err)
	}
	expect(t, c1, 0xf6, "a flattened clone, its golden removed")
	expect(t, c2, 0xb2, "a flattened sibling, its golden removed")
	expect(t, c3, 0xe5, "a full clone, its golden removed")
	s.removeLater(t, c1, s.rollback(t, c1, cp))
	expect(t, c1, 0xd4, "a flattened clone rolled back to its point from before the flatten")
}

// freeze makes golden image name of src, now or at point from, removed
// when the test ends.
func (s *suite) freeze(t *testing.T, src storage.Volume, f storage.Format, name string, from *storage.PointRef) storage.Image {
	t.Helper()
	g := storage.Image{Path: s.Driver.VolumePath(s.pool, storage.NewID(), f), Format: f}
	fsrc := storage.FreezeSource{Volume: src, Format: f, Point: from}
	if _, err := s.Driver.FreezeCost(s.ctx, fsrc, s.pool); err != nil {
		t.Fatalf("FreezeCost: %v", err)
	}
	virt, _, err := s.Driver.Freeze(s.ctx, s.pool, fsrc, g, storage.NoProgress{})
	if err != nil {
		t.Fatalf("Freeze %s: %v", name, err)
	}
	if virt != s.Size {
		t.Fatalf("golden %s: virtual size %d, want %d", name, virt, s.Size)
	}
	t.Cleanup(func() { _ = s.Driver.RemoveImages(context.Background(), s.pool, []string{g.Path}) })
	return g
}

// clone makes clone name of golden g (full, or linked where the driver
// links), deleted when the test ends, and checks that it reads from its
// golden exactly when linked.
func (s *suite) clone(t *testing.T, name string, g storage.Image, full bool) storage.Volume {
	t.Helper()
	plan, err := s.Driver.PlanClone(s.ctx, g, s.pool, full)
	if err != nil {
		t.Fatalf("PlanClone(full=%v): %v", full, err)
	}
	if !full && plan.Linked != s.features.LinkedClones {
		t.Fatalf("PlanClone linked=%v but Features.LinkedClones=%v", plan.Linked, s.features.LinkedClones)
	}
	if full && plan.Linked {
		t.Fatal("a full clone was planned linked")
	}
	v := storage.Volume{ID: storage.NewID(), Name: name, Pool: s.pool.Name, Format: plan.Format, Backing: plan.Backing, Created: time.Now().UTC()}
	v.Path = s.Driver.VolumePath(s.pool, v.ID, plan.Format)
	if err := s.Driver.Clone(s.ctx, s.pool, g, v, plan, storage.NoProgress{}); err != nil {
		t.Fatalf("Clone %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Driver.Delete(context.Background(), s.pool, v, true) })
	if b := s.backing(t, v); (b != "") != plan.Linked {
		t.Fatalf("clone %s (linked %v) reads from %q", name, plan.Linked, b)
	}
	return v
}

func (s *suite) backing(t *testing.T, v storage.Volume) string {
	t.Helper()
	b, err := s.Driver.Backing(s.ctx, s.pool, v)
	if err != nil {
		t.Fatalf("Backing of %s: %v", v.Name, err)
	}
	return b
}

// free is the pool's free space, after pending writes reached it.
func (s *suite) free(t *testing.T) int64 {
	t.Helper()
	syscall.Sync()
	n, err := s.Driver.FreeBytes(s.ctx, s.pool)
	if err != nil {
		t.Fatalf("FreeBytes: %v", err)
	}
	return n
}

// o1Claims: a method that claims O(1) takes costs no space for the data
// it captures, nor does a full clone where FullCloneO1 is claimed; and
// FreeBytes reports space where FreeSpace is claimed.
func (s *suite) o1Claims(t *testing.T) {
	if !s.features.FreeSpace {
		t.Skip("the driver reports no free space: O(1) claims cannot be measured")
	}
	const data = 16 << 20
	before := s.free(t)
	if before <= data {
		t.Fatalf("FreeBytes reports %d bytes free in an empty pool", before)
	}
	for _, m := range s.Driver.PointMethods() {
		for _, f := range m.Formats {
			if !m.O1Take {
				continue
			}
			t.Run(m.Name+"/"+string(f), func(t *testing.T) {
				v := storage.Volume{ID: storage.NewID(), Name: "big", Pool: s.pool.Name, Format: f}
				v.Path = s.Driver.VolumePath(s.pool, v.ID, f)
				if err := s.Driver.Create(s.ctx, s.pool, v.Path, f, 2*data); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Driver.Delete(context.Background(), s.pool, v, true) })
				s.plan(t, v, m)
				writePattern(t, v.Path, f, 0x5a, 0, data)
				was := s.free(t)
				p := s.take(t, v, m.Name, false)
				if used := was - s.free(t); used > data/4 {
					t.Fatalf("an O(1) %s point of %d bytes of data took %d bytes of the pool", m.Name, data, used)
				}
				s.remove(t, v, p)
			})
		}
	}
	if !s.features.FullCloneO1 {
		return
	}
	t.Run("full-clone", func(t *testing.T) {
		f := s.formats()[0]
		src := storage.Volume{ID: storage.NewID(), Name: "big", Pool: s.pool.Name, Format: f}
		src.Path = s.Driver.VolumePath(s.pool, src.ID, f)
		if err := s.Driver.Create(s.ctx, s.pool, src.Path, f, 2*data); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Driver.Delete(context.Background(), s.pool, src, true) })
		writePattern(t, src.Path, f, 0x5a, 0, data)
		g := storage.Image{Path: s.Driver.VolumePath(s.pool, storage.NewID(), f), Format: f}
		if _, _, err := s.Driver.Freeze(s.ctx, s.pool, storage.FreezeSource{Volume: src, Format: f}, g, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Driver.RemoveImages(context.Background(), s.pool, []string{g.Path}) })
		plan, err := s.Driver.PlanClone(s.ctx, g, s.pool, true)
		if err != nil {
			t.Fatal(err)
		}
		c := storage.Volume{ID: storage.NewID(), Name: "full", Pool: s.pool.Name, Format: plan.Format}
		c.Path = s.Driver.VolumePath(s.pool, c.ID, plan.Format)
		was := s.free(t)
		if err := s.Driver.Clone(s.ctx, s.pool, g, c, plan, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Driver.Delete(context.Background(), s.pool, c, true) })
		if used := was - s.free(t); used > data/4 {
			t.Fatalf("a full clone of %d bytes of data took %d bytes of a pool claiming O(1) full clones", data, used)
		}
	})
}

// child is what a crash case asks a child process to do.
type child struct {
	Op    string             `json:"op"` // "rollback" or "flatten"
	Pool  storage.Pool       `json:"pool"`
	Vol   storage.Volume     `json:"volume"`
	To    storage.PointRef   `json:"to"`
	Pre   storage.PointRef   `json:"pre"`
	Refs  []storage.PointRef `json:"refs,omitempty"`
	Phase string             `json:"phase"`  // file the child notes its phase in
	Rec   string             `json:"record"` // file the child records the restored state in
}

func note(path, what string) {
	_ = os.WriteFile(path, []byte(what), 0o600)
}

// runChild performs one crash case's operation; the parent's
// STRATA_CRASH_AT kills it inside.
func runChild(t *testing.T, c Config, raw string) {
	var ch child
	if err := json.Unmarshal([]byte(raw), &ch); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	switch ch.Op {
	case "rollback":
		note(ch.Phase, "pre")
		pre := ch.Pre
		if err := c.Driver.TakePoint(ctx, ch.Pool, ch.Vol, &pre, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		note(ch.Phase, "restore")
		step := storage.RestoreStep{Progress: storage.NoProgress{}, Record: func(fp storage.Fingerprint) error {
			b, _ := json.Marshal(fp)
			note(ch.Rec, string(b))
			return nil
		}}
		if pre.Moved {
			step.MoveTo = pre.Ref
		}
		if err := c.Driver.RestorePoint(ctx, ch.Pool, ch.Vol, ch.To, step); err != nil {
			t.Fatal(err)
		}
		note(ch.Phase, "done")
	case "flatten":
		if _, err := c.Driver.Flatten(ctx, ch.Pool, ch.Vol, ch.Refs, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		note(ch.Phase, "done")
	default:
		t.Fatalf("unknown child op %q", ch.Op)
	}
}

// spawn runs ch in a child killed at step; killed tells whether it
// reached the step.
func (s *suite) spawn(t *testing.T, ch child, step, trace string) (killed bool) {
	t.Helper()
	raw, _ := json.Marshal(ch)
	var parts []string
	for _, p := range strings.Split(s.name, "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw), "STRATA_CRASH_AT="+step, "STRATA_CRASH_TRACE="+trace)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("child (crash at %s) failed: %v\n%s", step, err, out)
	}
	return false
}

// crashes kills a rollback and a flatten at every step the driver names,
// then recovers as snapshot does: a pre-rollback point that was not
// complete is removed (the volume as it was), a restore under way is
// finished (run again with the state it recorded) or undone.
func (s *suite) crashes(t *testing.T) {
	reached := map[string]bool{}
	for _, m := range s.Driver.PointMethods() {
		for _, f := range m.Formats {
			for _, step := range s.crashRollback(t, m, f, "", false) {
				reached[step] = true
				s.crashRollback(t, m, f, step, true)
				s.crashRollback(t, m, f, step, false)
			}
		}
	}
	for _, f := range s.formats() {
		for _, step := range s.crashFlatten(t, f, "") {
			reached[step] = true
			s.crashFlatten(t, f, step)
		}
	}
	for _, step := range s.CrashSteps {
		if !reached[step] {
			t.Errorf("no rollback or flatten reached crash step %q", step)
		}
	}
}

// traced reads the steps a child passed.
func traced(path string) []string {
	raw, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// crashRollback runs a rollback by method m in a child killed at step
// and recovers (finishing it, or undoing it); with no step it only traces
// the steps the rollback passes, and returns them.
func (s *suite) crashRollback(t *testing.T, m storage.PointMethod, f storage.Format, step string, finish bool) (steps []string) {
	name := fmt.Sprintf("rollback/%s/%s/%s/finish=%v", m.Name, f, step, finish)
	if step == "" {
		name = fmt.Sprintf("rollback/%s/%s/trace", m.Name, f)
	}
	t.Run(name, func(t *testing.T) {
		v := s.volume(t, "crash", f)
		s.plan(t, v, m)
		write(t, v, 0xa1)
		to := s.take(t, v, m.Name, false)
		write(t, v, 0xb2)
		if err := s.Driver.CheckRestore(s.ctx, s.pool, v, to); err != nil {
			t.Fatal(err)
		}
		// The pre-rollback point by the same method: every path of it
		// (a moved live volume included) is crashed on every pool.
		pre, err := s.Driver.PlanPoint(s.ctx, s.pool, v, newUID(), storage.PointOptions{Method: m.Name, ReplacingLive: m.ReplacesLive})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		ch := child{Op: "rollback", Pool: s.pool, Vol: v, To: to, Pre: pre, Phase: filepath.Join(dir, "phase"), Rec: filepath.Join(dir, "record")}
		trace := filepath.Join(dir, "trace")
		killed := s.spawn(t, ch, step, trace)
		if step == "" {
			if killed {
				t.Fatal("a child with no crash step was killed")
			}
			steps = traced(trace)
			expect(t, v, 0xa1, "after a whole rollback in a child")
			t.Logf("crash steps of a %s rollback: %v", m.Name, steps)
			s.remove(t, v, to)
			s.remove(t, v, pre)
			return
		}
		if !killed {
			t.Fatalf("a %s rollback traced %s but a child told to crash there was not killed", m.Name, step)
		}
		phase := s.recoverRollback(t, v, to, pre, ch, step, finish)
		s.Driver.CleanRestores(s.pool, v)
		if !s.exists(t, v, to) {
			t.Fatal("the point rolled back to is gone after the recovery")
		}
		s.remove(t, v, to)
		_ = s.Driver.RemovePoint(s.ctx, s.pool, v, pre)
		expect(t, v, map[bool]byte{true: 0xa1, false: 0xb2}[finish && phase == "restore"], "after removing every point")
	})
	return steps
}

// recoverRollback recovers volume v as snapshot does from a rollback to
// point to, with pre-rollback point pre, killed at step in the phase the
// child noted (returned): an incomplete pre-rollback point is removed; a
// restore under way is finished (finish) or undone.
func (s *suite) recoverRollback(t *testing.T, v storage.Volume, to, pre storage.PointRef, ch child, step string, finish bool) string {
	t.Helper()
	phase, _ := os.ReadFile(ch.Phase)
	switch string(phase) {
	case "pre": // the pre-rollback point was not complete: undone
		if err := s.Driver.RemovePoint(s.ctx, s.pool, v, pre); err != nil {
			t.Fatalf("RemovePoint of an interrupted point: %v", err)
		}
		expect(t, v, 0xb2, "after undoing a pre-rollback point interrupted at "+step)
	case "restore":
		var done *storage.Fingerprint
		if b, err := os.ReadFile(ch.Rec); err == nil {
			var fp storage.Fingerprint
			if json.Unmarshal(b, &fp) == nil {
				done = &fp
			}
		}
		if finish {
			s.finishRestore(t, v, to, pre, done, step)
		} else {
			s.undoRestore(t, v, to, pre, done, step)
		}
	default:
		t.Fatalf("the child was killed in phase %q", phase)
	}
	return string(phase)
}

// finishRestore runs an interrupted restore again with the state its
// first run recorded (done).
func (s *suite) finishRestore(t *testing.T, v storage.Volume, to, pre storage.PointRef, done *storage.Fingerprint, step string) {
	t.Helper()
	var rec *storage.Fingerprint
	st := storage.RestoreStep{Progress: storage.NoProgress{}, Done: done, Record: func(fp storage.Fingerprint) error { rec = &fp; return nil }}
	if pre.Moved {
		st.MoveTo = pre.Ref
	}
	if err := s.Driver.RestorePoint(s.ctx, s.pool, v, to, st); err != nil {
		t.Fatalf("RestorePoint run again after a crash at %s: %v", step, err)
	}
	if rec == nil && done != nil {
		rec = done // the first run had finished its record
	}
	s.recorded(t, v, rec)
	expect(t, v, 0xa1, "after finishing a rollback interrupted at "+step)
}

// undoRestore undoes an interrupted restore: the volume is settled under
// its live name first (a restore moved it aside), then the pre-rollback
// point is put back.
func (s *suite) undoRestore(t *testing.T, v storage.Volume, to, pre storage.PointRef, done *storage.Fingerprint, step string) {
	t.Helper()
	if _, ok, _ := s.Driver.Fingerprint(s.pool, v); !ok && !pre.Moved {
		st := storage.RestoreStep{Progress: storage.NoProgress{}, Done: done, Record: func(storage.Fingerprint) error { return nil }}
		if err := s.Driver.RestorePoint(s.ctx, s.pool, v, to, st); err != nil {
			t.Fatalf("settle a restore interrupted at %s: %v", step, err)
		}
	}
	if kept := s.undo(t, v, pre); kept {
		s.remove(t, v, pre)
	}
	expect(t, v, 0xb2, "after undoing a rollback interrupted at "+step)
}

// crashFlatten is crashRollback for a flatten of a linked clone.
func (s *suite) crashFlatten(t *testing.T, f storage.Format, step string) (steps []string) {
	name := fmt.Sprintf("flatten/%s/%s", f, step)
	if step == "" {
		name = fmt.Sprintf("flatten/%s/trace", f)
	}
	t.Run(name, func(t *testing.T) {
		if !s.features.LinkedClones {
			t.Skip("no linked clones to flatten")
		}
		src := s.volume(t, "src", f)
		write(t, src, 0xa1)
		g := storage.Image{Path: s.Driver.VolumePath(s.pool, storage.NewID(), f), Format: f}
		if _, _, err := s.Driver.Freeze(s.ctx, s.pool, storage.FreezeSource{Volume: src, Format: f}, g, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Driver.RemoveImages(context.Background(), s.pool, []string{g.Path}) })
		plan, err := s.Driver.PlanClone(s.ctx, g, s.pool, false)
		if err != nil {
			t.Fatal(err)
		}
		c := storage.Volume{ID: storage.NewID(), Name: "clone", Pool: s.pool.Name, Format: plan.Format, Backing: plan.Backing}
		c.Path = s.Driver.VolumePath(s.pool, c.ID, plan.Format)
		if err := s.Driver.Clone(s.ctx, s.pool, g, c, plan, storage.NoProgress{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Driver.Delete(context.Background(), s.pool, c, true) })
		write(t, c, 0xb2)
		cp := s.take(t, c, "", false)
		s.removeLater(t, c, cp)
		write(t, c, 0xc3)
		dir := t.TempDir()
		ch := child{Op: "flatten", Pool: s.pool, Vol: c, Refs: []storage.PointRef{cp}, Phase: filepath.Join(dir, "phase")}
		trace := filepath.Join(dir, "trace")
		killed := s.spawn(t, ch, step, trace)
		if step == "" {
			if killed {
				t.Fatal("a child with no crash step was killed")
			}
			steps = traced(trace)
			expect(t, c, 0xc3, "after a whole flatten in a child")
			return
		}
		if !killed {
			t.Fatalf("a flatten traced %s but a child told to crash there was not killed", step)
		}
		expect(t, c, 0xc3, "a clone whose flatten was interrupted at "+step)
		if _, err := s.Driver.Flatten(s.ctx, s.pool, c, []storage.PointRef{cp}, storage.NoProgress{}); err != nil {
			t.Fatalf("Flatten run again after a crash at %s: %v", step, err)
		}
		if err := s.Driver.RemoveImages(s.ctx, s.pool, []string{g.Path}); err != nil {
			t.Fatal(err)
		}
		expect(t, c, 0xc3, "a clone flattened again, its golden removed")
		s.removeLater(t, c, s.rollback(t, c, cp))
		expect(t, c, 0xb2, "a flattened clone rolled back to its point")
	})
	return steps
}
