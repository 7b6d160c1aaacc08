package rbd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/run"
	"github.com/strata-vm/strata/storage/storagetest"
)

// helperEnv carries the helper built for this test binary to the
// children the conformance suite's crash cases run (they inherit it).
const helperEnv = "STRATA_TEST_RBD_HELPER"

var (
	helperOnce sync.Once
	helperDir  string
	helperErr  error
)

// helperBinary builds cmd/strata-rbd once per test binary (its children
// reuse it).
func helperBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(helperEnv); p != "" {
		return p
	}
	helperOnce.Do(func() {
		if helperDir, helperErr = os.MkdirTemp("", "strata-rbd-"); helperErr != nil {
			return
		}
		bin, err := storagetest.BuildRBDHelper(helperDir)
		if err != nil {
			helperErr = err
			return
		}
		os.Setenv(helperEnv, bin)
	})
	if helperErr != nil {
		t.Fatalf("build strata-rbd: %v", helperErr)
	}
	return os.Getenv(helperEnv)
}

// helperOps is a helper of its own for one test, with no fallback: a
// call the helper cannot run fails the test.
func helperOps(t testing.TB) *rbd.Helper {
	h := rbd.NewHelper(helperBinary(t), nil)
	h.Strict = true
	return h
}

// eachPath runs f with the driver on the tools (one process per call)
// and on the helper.
func eachPath(t *testing.T, f func(t *testing.T, d rbd.Driver)) {
	t.Run("cli", func(t *testing.T) { f(t, rbd.Driver{Client: &rbd.Client{}}) })
	t.Run("helper", func(t *testing.T) { f(t, rbd.Driver{Ops: helperOps(t)}) })
}

// TestFingerprintIsTheSameOnBothPaths: the fingerprint of an image (and
// the state a rollback predicts from a snapshot) read through the tools
// and through the helper are equal, byte for byte in what they hash:
// journals keep fingerprints, and the process that compares one may run
// the other path. Checked on a plain image with data, a resized one with
// a restore generation, and a linked clone (whose diff includes its
// parent's objects).
func TestFingerprintIsTheSameOnBothPaths(t *testing.T) {
	ctx := context.Background()
	p := testPool(t)
	cli, h := &rbd.Client{}, helperOps(t)
	dc, dh := rbd.Driver{Client: cli}, rbd.Driver{Ops: h}
	v := storage.Volume{ID: storage.NewID(), Name: "fp", Format: storage.FormatRaw}
	v.Path = dc.VolumePath(p, v.ID, v.Format)
	if err := dc.Create(ctx, p, v.Path, v.Format, 64<<20); err != nil {
		t.Fatal(err)
	}
	s, err := rbd.ParsePath(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	same := func(when string, snap string) {
		t.Helper()
		a, err := cli.State(ctx, s, snap)
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.State(ctx, s, snap)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != b.ID || a.Size != b.Size || a.Modified != b.Modified || !bytes.Equal(a.Diff, b.Diff) {
			t.Fatalf("%s: the tools read %+v (diff %q), the helper %+v (diff %q)", when, a, a.Diff, b, b.Diff)
		}
		if snap != "" {
			return
		}
		fa, oka, erra := dc.Fingerprint(p, v)
		fb, okb, errb := dh.Fingerprint(p, v)
		if erra != nil || errb != nil || !oka || !okb || fa != fb {
			t.Fatalf("%s: fingerprint by the tools %+v %v %v, by the helper %+v %v %v", when, fa, oka, erra, fb, okb, errb)
		}
	}
	same("a new image", "")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x41 0 64k", "-c", "write -P 0x41 20M 5M", v.Path)
	same("with data", "")
	if err := cli.SnapCreate(ctx, s, "s"); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x42 40M 64k", v.Path)
	if err := dc.Resize(ctx, p, v.Path, v.Format, 80<<20, false); err != nil {
		t.Fatal(err)
	}
	if err := cli.SetGeneration(ctx, s, "0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	same("resized, with a generation", "")
	same("at its snapshot", "s")
	if g, err := h.Generation(ctx, s); err != nil || g != "0123456789abcdef" {
		t.Fatalf("the helper reads the generation %q %v", g, err)
	}
	// A linked clone of the snapshot.
	if err := cli.SnapProtect(ctx, s, "s"); err != nil {
		t.Fatal(err)
	}
	c := s.WithImage(rbd.ImageName(storage.NewID()))
	if err := cli.Clone(ctx, s, "s", c); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x43 8M 64k", rbd.Path(c))
	v, s = storage.Volume{ID: "clone", Name: "clone", Format: storage.FormatRaw, Path: rbd.Path(c)}, c
	same("a linked clone", "")
	// Missing: both say so.
	v, s = storage.Volume{ID: "gone", Name: "gone", Format: storage.FormatRaw, Path: rbd.Path(s.WithImage("strata-gone"))}, s.WithImage("strata-gone")
	if _, ok, err := dh.Fingerprint(p, v); ok || err != nil {
		t.Fatalf("the helper's fingerprint of a missing image: %v %v", ok, err)
	}
	if _, err := h.State(ctx, s, ""); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the helper's state of a missing image: %v, want not found", err)
	}
}

// TestHelperNeverCountsItself: the helper lists a client holding the
// image open (qemu-io) as the tools do, and never itself: its
// reads open images read-only, and its own watch (an image it has open
// read-write for a change) is left out of the list.
func TestHelperNeverCountsItself(t *testing.T) {
	ctx := context.Background()
	p := testPool(t)
	h := helperOps(t)
	d := rbd.Driver{Ops: h}
	v := storage.Volume{ID: storage.NewID(), Name: "w", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 4<<20); err != nil {
		t.Fatal(err)
	}
	s, _ := rbd.ParsePath(v.Path)
	// Snapshots taken and the state read meanwhile: the helper opens the
	// image read-write for each snapshot.
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 10 && err == nil; i++ {
			err = h.SnapCreate(ctx, s, "p"+string(rune('a'+i)))
			if err == nil {
				_, err = h.State(ctx, s, "")
			}
		}
		done <- err
	}()
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		if w, err := h.Watchers(ctx, s); err != nil || len(w) != 0 {
			t.Fatalf("the helper lists watchers %v (%v) while only it opens the image", w, err)
		}
	}
	stop := storagetest.HoldRBDOpen(t, v.Path)
	defer stop()
	w, err := h.Watchers(ctx, s)
	if err != nil || len(w) != 1 {
		t.Fatalf("watchers of an image qemu-io holds, by the helper: %v %v", w, err)
	}
	cw, err := (&rbd.Client{}).Watchers(ctx, s)
	if err != nil || len(cw) != 1 || cw[0] != w[0] {
		t.Fatalf("rbd status lists %v (%v), the helper %v", cw, err, w)
	}
}

// TestHelperFallsBackToTheTools: a helper that is missing, refused
// (writable by others, a link, not a regular file), exits at once, or
// cannot connect to the cluster leaves the calls to the tools (and
// Strict makes them fail instead, as STRATA_RBD_CLIENT=helper does).
func TestHelperFallsBackToTheTools(t *testing.T) {
	ctx := context.Background()
	p := testPool(t)
	dir := t.TempDir()
	good := helperBinary(t)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	writable := filepath.Join(dir, "writable", rbd.HelperName)
	link := filepath.Join(dir, "link", rbd.HelperName)
	exits := filepath.Join(dir, "exits", rbd.HelperName)
	for _, f := range []string{writable, link, exits} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(writable, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exits, []byte("#!/bin/sh\necho 'cannot load' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{writable, link, filepath.Join(dir, "exits")} {
		if err := rbd.CheckHelper(bad); err == nil {
			t.Errorf("CheckHelper(%s) accepted it", bad)
		}
	}
	if err := rbd.CheckHelper(good); err != nil {
		t.Fatalf("CheckHelper of the built helper: %v", err)
	}
	v := storage.Volume{ID: storage.NewID(), Name: "fb", Format: storage.FormatRaw}
	v.Path = rbd.Driver{Client: &rbd.Client{}}.VolumePath(p, v.ID, v.Format)
	if err := (rbd.Driver{Client: &rbd.Client{}}).Create(ctx, p, v.Path, v.Format, 4<<20); err != nil {
		t.Fatal(err)
	}
	s, _ := rbd.ParsePath(v.Path)
	for i, path := range []string{filepath.Join(dir, "missing", rbd.HelperName), exits} {
		h := rbd.NewHelper(path, nil)
		if err := h.SnapCreate(ctx, s, "fallback"+string(rune('0'+i))); err != nil {
			t.Fatalf("helper %s: the tools did not take over: %v", path, err)
		}
		if err := h.Err(); err == nil {
			t.Fatalf("helper %s: no reason it cannot be used", path)
		}
		strict := rbd.NewHelper(path, nil)
		strict.Strict = true
		if err := strict.SnapCreate(ctx, s, "strict"); !errors.Is(err, storage.ErrPrecondition) {
			t.Fatalf("strict helper %s: %v, want a failed precondition", path, err)
		}
	}
	if err := rbd.NewHelper(exits, nil).Err(); err == nil || !strings.Contains(err.Error(), "cannot load") {
		t.Fatalf("a helper that exits: %v, want its stderr in the reason", err)
	}
	// A cluster the helper cannot connect to (a ceph.conf naming no
	// monitor): the tools answer, with their own error.
	conf := filepath.Join(dir, "nomon.conf")
	if err := os.WriteFile(conf, []byte("[global]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := rbd.NewHelper(good, nil)
	ns := s
	ns.Conf = conf
	_, err = h.Snapshots(ctx, ns)
	var re *run.Error
	if !errors.As(err, &re) || re.Argv[0] != "rbd" {
		t.Fatalf("a cluster the helper cannot reach: %v, want the rbd tool's error", err)
	}
	if snaps, err := h.Snapshots(ctx, s); err != nil || len(snaps) != 2 {
		t.Fatalf("the helper on the reachable cluster: %v %v", snaps, err)
	}
}

// With STRATA_RBD_CLIENT=helper (Strict) and a helper that cannot run, a
// restore point is refused when it is planned, before strata records it:
// a refusal changes nothing (it left a creating point for doctor, whose
// undo went to the same helper).
func TestStrictHelperThatCannotRunRefusesThePointAtPlan(t *testing.T) {
	h := rbd.NewHelper(filepath.Join(t.TempDir(), "missing", rbd.HelperName), nil)
	h.Strict = true
	d := rbd.Driver{Ops: h}
	v := storage.Volume{ID: storage.NewID(), Name: "strict", Format: storage.FormatRaw, Path: "rbd:pool/strata-0123456789abcdef"}
	_, err := d.PlanPoint(context.Background(), storage.Pool{}, v, "0123456789ab", storage.PointOptions{})
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), rbd.ClientEnv+"=helper") {
		t.Fatalf("PlanPoint with a strict helper that cannot run: %v, want a failed precondition naming %s", err, rbd.ClientEnv)
	}
	loose := rbd.NewHelper(h.Path, nil)
	if _, err := (rbd.Driver{Ops: loose}).PlanPoint(context.Background(), storage.Pool{}, v, "0123456789ab", storage.PointOptions{}); err != nil {
		t.Fatalf("PlanPoint without Strict (the tools take over): %v", err)
	}
}

// Questions asked at once that fail for one cause (the helper cannot
// run) give one error, not the same line twice: a refusal is one line.
func TestQuestionsAskedAtOnceReportOneCauseOnce(t *testing.T) {
	h := rbd.NewHelper(filepath.Join(t.TempDir(), "missing", rbd.HelperName), nil)
	h.Strict = true
	v := storage.Volume{ID: storage.NewID(), Name: "once", Format: storage.FormatRaw, Path: "rbd:pool/strata-0123456789abcdef"}
	err := (rbd.Driver{Ops: h}).CheckRestore(context.Background(), storage.Pool{}, v, storage.PointRef{Method: rbd.MethodSnapshot, Ref: "strata-0123456789ab"})
	if !errors.Is(err, storage.ErrPrecondition) || strings.Count(err.Error(), rbd.ClientEnv) != 1 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("CheckRestore with a strict helper that cannot run: %q, want the cause once, on one line", err)
	}
}
