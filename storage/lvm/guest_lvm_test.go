package lvm_test

// The guest half of the real-LVM tests: TestRealLVMInAGuest (host side,
// lvm_guest_host_test.go) compiles this package's tests, boots the LVM
// test guest with two scratch disks and runs TestGuest* there, where
// device-mapper exists. Outside the guest they skip.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/hvm/boot/boottest/guesttest"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/run"
)

// recordPrefix starts a line holding one recorded command (a Recording
// as JSON) on the guest's output; the host test writes them to
// testdata/lvm when asked (STRATA_LVM_RECORD=1).
const recordPrefix = "STRATA-LVM-RECORD "

// Recording is one real LVM command and what it did, as kept in
// testdata/lvm.
type Recording struct {
	Name       string   `json:"name"`
	LVMVersion string   `json:"lvm_version"`
	Regenerate string   `json:"regenerate"`
	Argv       []string `json:"argv"`
	ExitCode   int      `json:"exit_code"`
	Stdout     string   `json:"stdout"`
	Stderr     string   `json:"stderr"`
}

const regenerate = "STRATA_LVM_RECORD=1 go test -tags urfave_cli_no_docs -count=1 -run TestRealLVMInAGuest ./storage/lvm"

// recorder is a Client whose commands run for real; the next ones after
// record(names...) are printed as recordings, one name each in order
// ("" skips a command).
type recorder struct {
	lvm.Client
	version string
	next    []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Exec = func(ctx context.Context, argv []string, change bool) ([]byte, error) {
		out, err := run.Output(ctx, argv...)
		if len(r.next) > 0 && r.next[0] != "" {
			rec := Recording{Name: r.next[0], LVMVersion: r.version, Regenerate: regenerate, Argv: argv, Stdout: string(out)}
			var re *run.Error
			if errors.As(err, &re) {
				rec.ExitCode, rec.Stderr = re.ExitCode, re.Stderr
			}
			b, _ := json.Marshal(rec)
			fmt.Printf("%s%s\n", recordPrefix, b)
		}
		if len(r.next) > 0 {
			r.next = r.next[1:]
		}
		return out, err
	}
	v, err := r.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.version = v
	return r
}

func (r *recorder) record(names ...string) *recorder { r.next = names; return r }

func inGuest(t *testing.T) {
	t.Helper()
	if !guesttest.InGuest() {
		t.Skip("runs inside the LVM test guest (TestRealLVMInAGuest boots it): the host has no device-mapper")
	}
}

// dev writes and reads an LV's device, past the page cache.
func writeDev(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func readDev(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

func fill(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

func mustLV(t *testing.T, c *recorder, vg, name string) lvm.LV {
	t.Helper()
	l, err := c.LV(context.Background(), vg, name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func name(t *testing.T, kind string, ids ...string) string {
	t.Helper()
	n, err := lvm.LVName(kind, ids...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

const mib = 1 << 20

// A file the host test gives the guest (guesttest.Options.Files), as a
// scenario gives it a static strata binary.
const (
	extraPath    = "strata/extra/hello"
	extraContent = "hello from the host\n"
)

func TestGuestSeesTheFilesItWasGiven(t *testing.T) {
	inGuest(t)
	b, err := os.ReadFile("/" + extraPath)
	fi, err2 := os.Stat("/" + extraPath)
	if err != nil || err2 != nil || string(b) != extraContent || fi.Mode().Perm() != 0o750 {
		t.Fatalf("/%s: %q %v %v %v", extraPath, b, err, fi, err2)
	}
}

// One guest boot runs everything on one VG over the two scratch disks,
// in order: thick LVs and classic snapshots, merge, overflow, thin pool,
// thin snapshots and a rename-away rollback, tags, names, and real
// failures classified.
func TestGuestRealLVM(t *testing.T) {
	inGuest(t)
	ctx := context.Background()
	c := newRecorder(t)
	t.Logf("lvm %s", c.version)
	disks := strings.Fields(os.Getenv(boottest.DisksEnv))
	if len(disks) < 2 {
		t.Fatalf("want two scratch disks, have %q", disks)
	}
	const vg = "tvg"
	// The third disk is the driver conformance suite's.
	if err := c.CreateVG(ctx, vg, disks[:2]...); err != nil {
		t.Fatal(err)
	}
	info, err := c.record("vgs").VG(ctx, vg)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != vg || info.ExtentSize != 4*mib || info.Free != info.Size || info.Size < 400*mib || info.FreeCount*info.ExtentSize != info.Free {
		t.Fatalf("vg %+v", info)
	}
	tags := []string{lvm.TagStrata}

	t.Run("ThickLVClassicSnapshotAndMerge", func(t *testing.T) {
		vol := name(t, lvm.KindVolume, "0123456789abcdef")
		if err := c.Create(ctx, lvm.CreateOptions{VG: vg, Name: vol, Size: 64 * mib, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		l := mustLV(t, c.record("lvs-thick"), vg, vol)
		if l.Size != 64*mib || l.Attr.Thin || l.Attr.Snapshot || !l.Attr.Active || !l.Attr.Writable || !l.HasTag(lvm.TagStrata) || l.Path != "/dev/"+vg+"/"+vol || l.DeviceOpen {
			t.Fatalf("thick lv %+v", l)
		}
		writeDev(t, l.Path, 0, fill('A', mib))
		point := name(t, lvm.KindPoint, "0123456789abcdef", "p1")
		start := time.Now()
		if err := c.Snapshot(ctx, lvm.SnapshotOptions{VG: vg, Origin: vol, Name: point, PercentOrigin: 100, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		t.Logf("classic snapshot (100%%ORIGIN of 64 MiB): %v", time.Since(start).Round(time.Millisecond))
		writeDev(t, l.Path, 0, fill('B', mib))
		s := mustLV(t, c.record("lvs-classic-snapshot"), vg, point)
		if !s.Attr.Snapshot || s.Origin != vol || s.Attr.Invalid || s.DataPercent == nil || *s.DataPercent <= 0 || s.Size < 64*mib {
			t.Fatalf("classic snapshot %+v", s)
		}
		if o := mustLV(t, c, vg, vol); o.Attr.Type != 'o' {
			t.Fatalf("origin attr %q", o.Attr.Raw)
		}
		if got := readDev(t, s.Path, 0, mib); !bytes.Equal(got, fill('A', mib)) {
			t.Fatal("the snapshot does not hold the origin's old bytes")
		}
		// LVM makes no classic snapshot of a classic snapshot: a thick
		// rollback cannot merge a copy of a point made that way.
		err := c.record("lvcreate-snapshot-of-snapshot").Snapshot(ctx, lvm.SnapshotOptions{VG: vg, Origin: point, Name: name(t, lvm.KindTemp, "x"), PercentOrigin: 100})
		if err == nil {
			t.Fatal("lvm made a snapshot of a classic snapshot")
		}
		t.Logf("snapshot of a snapshot: %v", err)
		start = time.Now()
		deferred, err := c.Merge(ctx, vg, point)
		if err != nil || deferred {
			t.Fatalf("merge: deferred %v, %v", deferred, err)
		}
		t.Logf("merge of a 1 MiB change: %v", time.Since(start).Round(time.Millisecond))
		if got := readDev(t, l.Path, 0, mib); !bytes.Equal(got, fill('A', mib)) {
			t.Fatal("after the merge the origin does not hold the snapshot's bytes")
		}
		if _, err := c.LV(ctx, vg, point); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the merged snapshot is still there: %v", err)
		}

		// A snapshot smaller than the change overflows: invalid, and
		// merging it is refused.
		small := name(t, lvm.KindPoint, "0123456789abcdef", "small")
		if err := c.Snapshot(ctx, lvm.SnapshotOptions{VG: vg, Origin: vol, Name: small, Size: 4 * mib, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		writeDev(t, l.Path, 0, fill('C', 12*mib))
		s = mustLV(t, c.record("lvs-classic-snapshot-invalid"), vg, small)
		if !s.Attr.Invalid || !s.Attr.Snapshot {
			t.Fatalf("an overflowed snapshot is not invalid: %+v", s)
		}
		_, err = c.record("", "lvconvert-merge-invalid").Merge(ctx, vg, small)
		if err == nil {
			t.Fatal("merging an invalid snapshot succeeded")
		}
		t.Logf("merge of an invalid snapshot: %v", err)
		if err := c.Remove(ctx, vg, small); err != nil {
			t.Fatal(err)
		}

		// A merge into an origin in use (a mounted filesystem; an open
		// file descriptor alone does not stop LVM 2.03.16 from merging
		// at once) waits for the origin's next activation: Merge says
		// so, and the snapshot stays, merging, until then. The marker
		// is written past the small filesystem's end.
		if out, err := exec.Command("mke2fs", "-q", l.Path, "8192").CombinedOutput(); err != nil {
			t.Fatalf("mke2fs: %v %s", err, out)
		}
		writeDev(t, l.Path, 60*mib, fill('G', mib))
		p2 := name(t, lvm.KindPoint, "0123456789abcdef", "p2")
		if err := c.Snapshot(ctx, lvm.SnapshotOptions{VG: vg, Origin: vol, Name: p2, PercentOrigin: 100, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		writeDev(t, l.Path, 60*mib, fill('H', mib))
		if err := syscall.Mount(l.Path, "/mnt", "ext2", 0, ""); err != nil {
			t.Fatalf("mount: %v", err)
		}
		deferred, err = c.record("lvs-merge-snapshot", "lvconvert-merge-mounted", "lvs-merging-origin").Merge(ctx, vg, p2)
		if uerr := syscall.Unmount("/mnt", 0); uerr != nil {
			t.Fatalf("umount: %v", uerr)
		}
		if err != nil || !deferred {
			t.Fatalf("merge into a mounted origin: deferred %v, %v", deferred, err)
		}
		if o := mustLV(t, c, vg, vol); !o.Attr.Merging || o.Attr.Type != 'O' {
			t.Fatalf("the origin of a deferred merge reads %+v", o)
		}
		if _, err := c.LV(ctx, vg, p2); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the merging snapshot is not hidden: %v", err)
		}
		if err := c.Deactivate(ctx, vg, vol); err != nil {
			t.Fatal(err)
		}
		if err := c.Activate(ctx, vg, vol); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		for i := 0; mustLV(t, c, vg, vol).Attr.Merging; i++ {
			if i == 120 {
				t.Fatal("the deferred merge did not finish after the origin's activation")
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("deferred merge done %v after the origin's activation", time.Since(start).Round(time.Millisecond))
		if got := readDev(t, l.Path, 60*mib, mib); !bytes.Equal(got, fill('G', mib)) {
			t.Fatal("after the deferred merge the origin does not hold the snapshot's bytes")
		}
		if err := c.Remove(ctx, vg, vol); err != nil {
			t.Fatal(err)
		}
	})

	pool := "pool"
	t.Run("ThinPoolThinSnapshotRenameAwayRollback", func(t *testing.T) {
		if err := c.CreateThinPool(ctx, lvm.ThinPoolOptions{VG: vg, Name: pool, Size: 128 * mib, ErrorWhenFull: true, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		p := mustLV(t, c.record("lvs-thin-pool"), vg, pool)
		if !p.Attr.ThinPool || p.WhenFull != "error" || p.DataPercent == nil || p.MetadataPercent == nil || *p.MetadataPercent <= 0 {
			t.Fatalf("thin pool %+v", p)
		}
		vol := name(t, lvm.KindVolume, "fedcba9876543210")
		if err := c.Create(ctx, lvm.CreateOptions{VG: vg, Name: vol, Size: 64 * mib, ThinPool: pool, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		l := mustLV(t, c, vg, vol)
		if !l.Attr.Thin || l.Pool != pool || !l.Attr.Active || l.Size != 64*mib {
			t.Fatalf("thin lv %+v", l)
		}
		writeDev(t, l.Path, 0, fill('A', mib))
		// What the guardrails read in-process (DM_TABLE_STATUS) is what
		// dmsetup and lvs say: the thin LV's table names its pool's
		// thin-pool device, whose status gives lvs's percentages.
		num, err := os.Stat(l.Path)
		if err != nil {
			t.Fatal(err)
		}
		table, err := lvm.QueryDM(lvm.DMQuery{Dev: uint64(num.Sys().(*syscall.Stat_t).Rdev), Table: true})
		if err != nil || len(table.Targets) != 1 || table.Targets[0].Type != "thin" {
			t.Fatalf("table of a thin lv: %+v %v", table, err)
		}
		st, err := lvm.QueryDM(lvm.DMQuery{Name: vg + "-" + pool + "-tpool"})
		if err != nil || len(st.Targets) != 1 || st.Targets[0].Type != "thin-pool" || !strings.HasPrefix(table.Targets[0].Params, fmt.Sprintf("%d:%d ", st.Dev>>8&0xfff, st.Dev&0xff|st.Dev>>12&0xfff00)) {
			t.Fatalf("status of the thin pool: %+v %v (the thin lv's table: %+v)", st, err, table)
		}
		out, err := exec.Command("dmsetup", "status", "--noflush", st.Name).Output()
		tg := st.Targets[0]
		// (The kernel ends a thin-pool's status with a space.)
		if want := strings.TrimSpace(fmt.Sprintf("%d %d %s %s", tg.Start, tg.Length, tg.Type, tg.Params)); err != nil || strings.TrimSpace(string(out)) != want {
			t.Fatalf("dmsetup status %s: %q %v, read in-process: %q", st.Name, out, err, want)
		}
		ps, err := lvm.ParseThinPoolStatus(tg.Params)
		tp := mustLV(t, c, vg, pool)
		if err != nil || tp.DataPercent == nil || tp.MetadataPercent == nil || math.Abs(ps.DataPercent()-*tp.DataPercent) > 0.01 || math.Abs(ps.MetadataPercent()-*tp.MetadataPercent) > 0.01 || ps.Health() != '-' {
			t.Fatalf("thin pool status %+v (%v%%, %v%%) against lvs %v%%, %v%%: %v", ps, ps.DataPercent(), ps.MetadataPercent(), pct(tp.DataPercent), pct(tp.MetadataPercent), err)
		}
		t.Logf("thin pool status %q: data %.2f%%, metadata %.2f%%", tg.Params, ps.DataPercent(), ps.MetadataPercent())
		point := name(t, lvm.KindPoint, "fedcba9876543210", "p1")
		start := time.Now()
		if err := c.ThinSnapshot(ctx, lvm.ThinSnapshotOptions{VG: vg, Origin: vol, Name: point, ReadOnly: true, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		t.Logf("thin snapshot: %v", time.Since(start).Round(time.Millisecond))
		s := mustLV(t, c.record("lvs-thin-snapshot"), vg, point)
		if !s.Attr.Thin || s.Origin != vol || s.Attr.Active || !s.Attr.SkipActivation || s.Attr.Writable || s.Pool != pool {
			t.Fatalf("thin snapshot %+v", s)
		}
		writeDev(t, l.Path, 0, fill('B', mib))

		// Rollback by rename-away: the live LV aside, a writable
		// snapshot of the point under the live name, the old live LV
		// removed only after that.
		aside := name(t, lvm.KindAside, "fedcba9876543210", "op1")
		start = time.Now()
		if err := c.Rename(ctx, vg, vol, aside); err != nil {
			t.Fatal(err)
		}
		if err := c.ThinSnapshot(ctx, lvm.ThinSnapshotOptions{VG: vg, Origin: point, Name: vol, Activate: true, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		t.Logf("rename-away rollback (rename + snapshot): %v", time.Since(start).Round(time.Millisecond))
		live := mustLV(t, c, vg, vol)
		if !live.Attr.Active || !live.Attr.Writable || live.Attr.SkipActivation || live.Origin != point {
			t.Fatalf("new live lv %+v", live)
		}
		if got := readDev(t, live.Path, 0, mib); !bytes.Equal(got, fill('A', mib)) {
			t.Fatal("after the rollback the live lv does not hold the point's bytes")
		}
		if got := readDev(t, "/dev/"+vg+"/"+aside, 0, mib); !bytes.Equal(got, fill('B', mib)) {
			t.Fatal("the lv set aside lost its bytes")
		}
		writeDev(t, live.Path, 0, fill('D', mib))
		if err := c.Extend(ctx, vg, vol, 80*mib); err != nil {
			t.Fatal(err)
		}
		if l := mustLV(t, c, vg, vol); l.Size != 80*mib {
			t.Fatalf("extended to %d bytes", l.Size)
		}
		writeDev(t, live.Path, 79*mib, fill('E', mib))
		if err := c.record("lvextend-smaller").Extend(ctx, vg, vol, 64*mib); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("extend to a smaller size: %v", err)
		} else {
			t.Logf("extend to a smaller size: %v", err)
		}
		if err := c.Remove(ctx, vg, aside); err != nil {
			t.Fatal(err)
		}
		// The point survives the rollback and a write to the new live
		// LV; activated (-K) it reads as when it was taken.
		if err := c.Activate(ctx, vg, point); err != nil {
			t.Fatal(err)
		}
		s = mustLV(t, c, vg, point)
		if !s.Attr.Active || !s.Attr.SkipActivation {
			t.Fatalf("activated point %+v", s)
		}
		if got := readDev(t, s.Path, 0, mib); !bytes.Equal(got, fill('A', mib)) {
			t.Fatal("the point changed")
		}
		if err := c.Deactivate(ctx, vg, point); err != nil {
			t.Fatal(err)
		}
		all, err := c.record("lvs-vg").LVs(ctx, vg)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range all {
			names = append(names, l.Name)
		}
		slices.Sort(names)
		if want := []string{pool, point, vol}; !slices.Equal(names, want) {
			t.Fatalf("lvs %v, want %v", names, want)
		}
	})

	t.Run("Tags", func(t *testing.T) {
		vol := name(t, lvm.KindVolume, "fedcba9876543210")
		ro := false
		if err := c.Change(ctx, vg, vol, lvm.ChangeOptions{AddTags: []string{"strata.home=h1", "x"}, Writable: &ro}); err != nil {
			t.Fatal(err)
		}
		if err := c.Change(ctx, vg, vol, lvm.ChangeOptions{DelTags: []string{"x"}}); err != nil {
			t.Fatal(err)
		}
		l := mustLV(t, c.record("lvs-tags"), vg, vol)
		if !l.HasTag("strata.home=h1") || !l.HasTag(lvm.TagStrata) || l.HasTag("x") || l.Attr.Writable {
			t.Fatalf("tags %v attr %q", l.Tags, l.Attr.Raw)
		}
	})

	t.Run("NameMappingRoundTrip", func(t *testing.T) {
		idsets := [][]string{{"vol.with_under+plus", "a/b c"}, {"_tmeta", "snapshot", "é"}}
		var made []string
		for _, ids := range idsets {
			n := name(t, lvm.KindGolden, ids...)
			if err := c.Create(ctx, lvm.CreateOptions{VG: vg, Name: n, Size: 4 * mib, ThinPool: pool, Tags: tags}); err != nil {
				t.Fatalf("%q: %v", n, err)
			}
			made = append(made, n)
		}
		all, err := c.LVs(ctx, vg)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, l := range all {
			kind, got, ok := lvm.ParseLVName(l.Name)
			if !ok || kind != lvm.KindGolden {
				continue
			}
			found++
			if !slices.ContainsFunc(idsets, func(ids []string) bool { return slices.Equal(ids, got) }) {
				t.Fatalf("%q reads back as %q", l.Name, got)
			}
		}
		if found != len(idsets) {
			t.Fatalf("found %d of %d golden lvs in %+v", found, len(idsets), all)
		}
		for _, n := range made {
			if err := c.Remove(ctx, vg, n); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("RealFailuresClassified", func(t *testing.T) {
		vol := name(t, lvm.KindVolume, "fedcba9876543210")
		check := func(what string, err, kind error) {
			t.Helper()
			if !errors.Is(err, kind) {
				t.Fatalf("%s: want %v, got %v", what, kind, err)
			}
			var re *run.Error
			if !errors.As(err, &re) && kind != storage.ErrNotFound {
				t.Fatalf("%s: no run.Error in %v", what, err)
			}
			t.Logf("%s: %v", what, err)
		}
		check("exists", c.record("lvcreate-exists").Create(ctx, lvm.CreateOptions{VG: vg, Name: vol, Size: 4 * mib, ThinPool: pool}), storage.ErrExists)
		_, err := c.record("lvs-not-found").LV(ctx, vg, "nope")
		check("lv not found", err, storage.ErrNotFound)
		_, err = c.record("vgs-not-found").VG(ctx, "novg")
		check("vg not found", err, storage.ErrNotFound)
		check("rename not found", c.record("lvrename-not-found").Rename(ctx, vg, "nope", "nope2"), storage.ErrNotFound)
		check("rename onto existing", c.record("lvrename-exists").Rename(ctx, vg, vol, pool), storage.ErrExists)
		check("remove not found", c.record("lvremove-not-found").Remove(ctx, vg, "nope"), storage.ErrNotFound)
		err = c.record("lvcreate-no-space").Create(ctx, lvm.CreateOptions{VG: vg, Name: "big", Size: 8 << 30})
		check("no space", err, storage.ErrPrecondition)
		if !errors.Is(err, lvm.ErrNoSpace) {
			t.Fatalf("no space is not ErrNoSpace: %v", err)
		}
		// An open LV can be neither removed nor deactivated.
		f, err := os.Open("/dev/" + vg + "/" + vol)
		if err != nil {
			t.Fatal(err)
		}
		if l := mustLV(t, c.record("lvs-open"), vg, vol); !l.DeviceOpen || !l.Attr.Open {
			t.Fatalf("an open lv reads %+v", l)
		}
		check("remove open", c.record("lvremove-open").Remove(ctx, vg, vol), storage.ErrInUse)
		check("deactivate open", c.record("lvchange-deactivate-open").Deactivate(ctx, vg, vol), storage.ErrInUse)
		f.Close()
		// What strata's own checks would refuse, LVM refuses too.
		_, err = c.record("lvcreate-reserved-name").Exec(ctx, []string{"lvm", "lvcreate", "--yes", "-n", "snapshot1", "-L", "4m", vg}, true)
		check("reserved name", lvm.Classify(err, "create"), storage.ErrInvalid)
		_, err = c.record("lvcreate-bad-size").Exec(ctx, []string{"lvm", "lvcreate", "--yes", "-n", "x", "-L", "lots", vg}, true)
		check("bad size", lvm.Classify(err, "create"), storage.ErrInvalid)
	})
}
