package lvm_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
	"github.com/strata-vm/strata/storage/run"
)

// recording reads testdata/lvm/NAME.json, made by the real LVM in the
// guest (TestRealLVMInAGuest with STRATA_LVM_RECORD=1).
func recording(t *testing.T, name string) Recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordDir, name+".json"))
	if err != nil {
		t.Fatalf("%v (regenerate: %s)", err, regenerate)
	}
	var r Recording
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.LVMVersion == "" || r.Regenerate == "" || len(r.Argv) == 0 {
		t.Fatalf("%s does not say what made it: %+v", name, r)
	}
	return r
}

func (r Recording) err() error {
	if r.ExitCode == 0 {
		return nil
	}
	return &run.Error{Argv: r.Argv, ExitCode: r.ExitCode, Stderr: r.Stderr, Err: errors.New("exit status")}
}

func oneLV(t *testing.T, name string) lvm.LV {
	t.Helper()
	lvs, err := lvm.ParseLVs([]byte(recording(t, name).Stdout))
	if err != nil || len(lvs) != 1 {
		t.Fatalf("%s: %d lvs, %v", name, len(lvs), err)
	}
	return lvs[0]
}

func pct(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

// What the real lvs and vgs said about each kind of LV, decoded.
func TestRecordedReportsDecode(t *testing.T) {
	vgs, err := lvm.ParseVGs([]byte(recording(t, "vgs").Stdout))
	if err != nil || len(vgs) != 1 {
		t.Fatalf("vgs: %v %v", vgs, err)
	}
	if v := vgs[0]; v.Name != "tvg" || v.ExtentSize != 4<<20 || v.Size != 528482304 || v.Free != v.Size || v.FreeCount != 126 || v.ExtentCount != 126 || v.UUID == "" {
		t.Fatalf("vg %+v", v)
	}

	thick := oneLV(t, "lvs-thick")
	if thick.Size != 64<<20 || thick.Attr.Thin || thick.Attr.Snapshot || !thick.Attr.Active || !thick.Attr.Writable || thick.Attr.Open ||
		thick.DeviceOpen || thick.DataPercent != nil || !slices.Equal(thick.Tags, []string{"strata"}) || thick.SegType != "linear" ||
		thick.Path != "/dev/tvg/strata.vol.0123456789abcdef" || thick.DMPath != "/dev/mapper/tvg-strata.vol.0123456789abcdef" {
		t.Fatalf("thick %+v", thick)
	}

	snap := oneLV(t, "lvs-classic-snapshot")
	if !snap.Attr.Snapshot || snap.Attr.Invalid || snap.Origin != "strata.vol.0123456789abcdef" || pct(snap.DataPercent) <= 0 || pct(snap.DataPercent) >= 100 || snap.Size <= 64<<20 {
		t.Fatalf("classic snapshot %+v (%v%%)", snap, pct(snap.DataPercent))
	}
	bad := oneLV(t, "lvs-classic-snapshot-invalid")
	if !bad.Attr.Snapshot || !bad.Attr.Invalid || bad.Attr.Active || pct(bad.DataPercent) != 100 {
		t.Fatalf("overflowed snapshot %+v", bad)
	}

	pool := oneLV(t, "lvs-thin-pool")
	if !pool.Attr.ThinPool || pool.Attr.Thin || pool.WhenFull != "error" || pct(pool.DataPercent) != 0 || pct(pool.MetadataPercent) <= 0 || pool.Attr.Health != '-' {
		t.Fatalf("thin pool %+v", pool)
	}
	ts := oneLV(t, "lvs-thin-snapshot")
	if !ts.Attr.Thin || ts.Attr.Active || !ts.Attr.SkipActivation || ts.Attr.Writable || ts.Origin != "strata.vol.fedcba9876543210" || ts.Pool != "pool" || ts.DeviceOpen {
		t.Fatalf("thin snapshot %+v", ts)
	}
	open := oneLV(t, "lvs-open")
	if !open.DeviceOpen || !open.Attr.Open {
		t.Fatalf("open lv %+v", open)
	}
	tagged := oneLV(t, "lvs-tags")
	if !tagged.HasTag("strata") || !tagged.HasTag("strata.home=h1") || tagged.HasTag("x") || tagged.Attr.Writable {
		t.Fatalf("tagged lv %+v", tagged)
	}
	all, err := lvm.ParseLVs([]byte(recording(t, "lvs-vg").Stdout))
	if err != nil || len(all) != 3 {
		t.Fatalf("lvs of the vg: %+v %v", all, err)
	}
}

// lv_attr as lvs(8) describes it, one flag at a time.
func TestParseAttrDecodesEachFlag(t *testing.T) {
	for _, c := range []struct {
		raw   string
		check func(lvm.Attr) bool
	}{
		{"-wi-a-----", func(a lvm.Attr) bool { return a.Active && a.Writable && !a.Thin && !a.Snapshot && !a.Open }},
		{"-ri-ao----", func(a lvm.Attr) bool { return !a.Writable && a.Open }},
		{"owi-a-s---", func(a lvm.Attr) bool { return a.Type == 'o' && !a.Snapshot && !a.Merging }},
		{"Owi-a-s---", func(a lvm.Attr) bool { return a.Merging && !a.Snapshot }},
		{"Swi-a-s---", func(a lvm.Attr) bool { return a.Merging && a.Snapshot }},
		{"swi-I-s---", func(a lvm.Attr) bool { return a.Snapshot && a.Invalid && !a.Active }},
		{"swi-S-s---", func(a lvm.Attr) bool { return a.Invalid }},
		{"twi-aotzD-", func(a lvm.Attr) bool { return a.ThinPool && a.Health == 'D' }},
		{"Vri---tz-k", func(a lvm.Attr) bool { return a.Thin && a.SkipActivation && !a.Active && !a.Writable }},
	} {
		a, err := lvm.ParseAttr(c.raw)
		if err != nil || !c.check(a) {
			t.Errorf("%q: %+v %v", c.raw, a, err)
		}
	}
	if _, err := lvm.ParseAttr("-wi-a"); err == nil {
		t.Error("a short lv_attr parsed")
	}
	if _, err := lvm.ParseLVs([]byte(`{"report":[{"lv":[{"lv_name":"a","lv_attr":"-wi-a-----","lv_size":"12.5m"}]}]}`)); err == nil {
		t.Error("a size with a unit parsed")
	}
}

// Each real failure gets its kind, LVM's message (without the warnings
// it adds), and keeps the command's error.
func TestRecordedFailuresAreClassified(t *testing.T) {
	for name, kind := range map[string]error{
		"lvcreate-exists":               storage.ErrExists,
		"lvrename-exists":               storage.ErrExists,
		"lvs-not-found":                 storage.ErrNotFound,
		"vgs-not-found":                 storage.ErrNotFound,
		"lvrename-not-found":            storage.ErrNotFound,
		"lvremove-not-found":            storage.ErrNotFound,
		"lvcreate-no-space":             lvm.ErrNoSpace,
		"lvremove-open":                 storage.ErrInUse,
		"lvchange-deactivate-open":      storage.ErrInUse,
		"lvconvert-merge-invalid":       storage.ErrPrecondition,
		"lvcreate-reserved-name":        storage.ErrInvalid,
		"lvcreate-bad-size":             storage.ErrInvalid,
		"lvextend-smaller":              storage.ErrInvalid,
		"lvcreate-snapshot-of-snapshot": storage.ErrNotSupported,
	} {
		r := recording(t, name)
		err := lvm.Classify(r.err(), "doing "+name)
		if !errors.Is(err, kind) {
			t.Errorf("%s (exit %d: %q): want %v, got %v", name, r.ExitCode, r.Stderr, kind, err)
			continue
		}
		var re *run.Error
		if !errors.As(err, &re) || re.ExitCode != r.ExitCode {
			t.Errorf("%s: the command's error is lost: %v", name, err)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "doing "+name+": lvm: ") || strings.Contains(msg, "Run `") || strings.Contains(msg, "\n") ||
			strings.Contains(msg, "device-mapper modules") {
			t.Errorf("%s: message %q", name, msg)
		}
	}
	if err := lvm.Classify(lvm.Classify(recording(t, "lvcreate-no-space").err(), "x"), "y"); !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("no space is %v", err)
	}
	// A failure no class knows is internal: no kind.
	err := lvm.Classify(&run.Error{Argv: []string{"lvm", "lvs"}, ExitCode: 5, Stderr: "  Something new happened.\n"}, "list")
	for _, k := range []error{storage.ErrInvalid, storage.ErrNotFound, storage.ErrExists, storage.ErrInUse, storage.ErrBusy, storage.ErrPrecondition, storage.ErrNotSupported} {
		if errors.Is(err, k) {
			t.Errorf("an unknown failure is %v", k)
		}
	}
	if !strings.Contains(err.Error(), "Something new happened.") {
		t.Errorf("unknown failure reads %q", err)
	}
	// The host's own failure: no device-mapper.
	err = lvm.Classify(&run.Error{Argv: []string{"lvm", "lvcreate"}, ExitCode: 5, Stderr: "  /dev/mapper/control: open failed: No such device\n  Failure to communicate with kernel device-mapper driver.\n"}, "create")
	if !errors.Is(err, storage.ErrNotSupported) {
		t.Errorf("no device-mapper is %v", err)
	}
	// Seen from lvcreate --type thin-pool --errorwhenfull y (2.03.16).
	err = lvm.Classify(&run.Error{Argv: []string{"lvm", "lvcreate"}, ExitCode: 5, Stderr: "  Option --errorwhenfull is unsupported with thin pools.\n"}, "create")
	if !errors.Is(err, storage.ErrNotSupported) {
		t.Errorf("an unsupported option is %v", err)
	}
}

// The Client runs exactly the argv the real LVM accepted in the guest,
// and reads its answers; a replayed failure comes back classified.
func TestClientReplaysRecordedCommands(t *testing.T) {
	ctx := context.Background()
	// replay answers each command with the next recording, which must
	// have run the same argv.
	replay := func(names ...string) *lvm.Client {
		var recs []Recording
		for _, n := range names {
			recs = append(recs, recording(t, n))
		}
		return &lvm.Client{Exec: func(_ context.Context, argv []string, change bool) ([]byte, error) {
			if len(recs) == 0 {
				t.Fatalf("%v: ran %q after the last recording", names, argv)
			}
			r := recs[0]
			recs = recs[1:]
			if !slices.Equal(argv, r.Argv) {
				t.Fatalf("%s: ran %q, the recording ran %q", r.Name, argv, r.Argv)
			}
			return []byte(r.Stdout), r.err()
		}}
	}
	l, err := replay("lvs-thin-snapshot").LV(ctx, "tvg", "strata.point.fedcba9876543210.p1")
	if err != nil || !l.Attr.Thin || l.Origin != "strata.vol.fedcba9876543210" {
		t.Fatalf("%+v %v", l, err)
	}
	if v, err := replay("vgs").VG(ctx, "tvg"); err != nil || v.Free != v.Size {
		t.Fatalf("%+v %v", v, err)
	}
	if _, err := replay("lvs-not-found").LV(ctx, "tvg", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	if err := replay("lvcreate-no-space").Create(ctx, lvm.CreateOptions{VG: "tvg", Name: "big", Size: 8 << 30}); !errors.Is(err, lvm.ErrNoSpace) {
		t.Fatal(err)
	}
	if err := replay("lvcreate-exists").Create(ctx, lvm.CreateOptions{VG: "tvg", Name: "strata.vol.fedcba9876543210", Size: 4 << 20, ThinPool: "pool"}); !errors.Is(err, storage.ErrExists) {
		t.Fatal(err)
	}
	if err := replay("lvrename-not-found").Rename(ctx, "tvg", "nope", "nope2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	if err := replay("lvremove-open").Remove(ctx, "tvg", "strata.vol.fedcba9876543210"); !errors.Is(err, storage.ErrInUse) {
		t.Fatal(err)
	}
	if _, err := replay("lvs-classic-snapshot-invalid", "lvconvert-merge-invalid").Merge(ctx, "tvg", "strata.point.0123456789abcdef.small"); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatal(err)
	}
	// A merge into an origin in use is deferred: the origin reads
	// merging afterwards.
	if d, err := replay("lvs-merge-snapshot", "lvconvert-merge-mounted", "lvs-merging-origin").Merge(ctx, "tvg", "strata.point.0123456789abcdef.p2"); err != nil || !d {
		t.Fatalf("deferred merge: %v %v", d, err)
	}
	// Checks before LVM: nothing runs.
	never := &lvm.Client{Exec: func(context.Context, []string, bool) ([]byte, error) {
		t.Fatal("ran lvm for a request it should refuse")
		return nil, nil
	}}
	for _, err := range []error{
		never.Create(ctx, lvm.CreateOptions{VG: "vg", Name: "snapshot1", Size: 1}),
		never.Create(ctx, lvm.CreateOptions{VG: "vg", Name: "a", Size: 0}),
		never.Create(ctx, lvm.CreateOptions{VG: "-vg", Name: "a", Size: 1}),
		never.Rename(ctx, "vg", "a", "b_tmeta"),
		never.Snapshot(ctx, lvm.SnapshotOptions{VG: "vg", Origin: "a", Name: "s"}),
		never.Change(ctx, "vg", "a", lvm.ChangeOptions{AddTags: []string{"a b"}}),
		never.Remove(ctx, "vg", "--all"),
	} {
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("want invalid, got %v", err)
		}
	}
	if err := never.Change(ctx, "vg", "a", lvm.ChangeOptions{}); err != nil {
		t.Error(err)
	}
}
