package lvm_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
)

// replay is a Client that answers report commands from recordings (by
// the argv's last word, the VG/LV asked about) and fails every change:
// a guardrail must refuse before LVM is asked to change anything.
func replay(t *testing.T, byTarget map[string]string) *lvm.Client {
	return &lvm.Client{Exec: func(_ context.Context, argv []string, change bool) ([]byte, error) {
		if change {
			t.Fatalf("a change was run: %v", argv)
		}
		name, ok := byTarget[argv[len(argv)-1]]
		if !ok {
			t.Fatalf("no recording for %v", argv)
		}
		r := recording(t, name)
		return []byte(r.Stdout), r.err()
	}}
}

func TestThinPoolOverItsLimitRefusesNewDataWithTheNumbers(t *testing.T) {
	d := lvm.Driver{Client: replay(t, map[string]string{"tvg/pool": "lvs-thin-pool"})}
	// The recorded thin pool's metadata is 10.84% used.
	p := storage.Pool{Name: "fast", Driver: lvm.Name, LVM: &storage.LVMPool{VG: "tvg", ThinPool: "pool", MetadataLimit: 10}}
	err := d.Create(context.Background(), p, d.VolumePath(p, "0123456789abcdef", storage.FormatRaw), storage.FormatRaw, 1<<20)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "10.84%") || !strings.Contains(err.Error(), "limit of 10%") || !strings.Contains(err.Error(), "lvextend") {
		t.Fatalf("a new volume in a thin pool over its metadata limit: %v", err)
	}
	p.LVM.MetadataLimit = 0 // the default, 75%: room
	if _, err := d.FreeBytes(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func TestOverflowedThickPointIsReportedInvalidAndRefused(t *testing.T) {
	const ref = "tvg/strata.point.0123456789abcdef.small"
	d := lvm.Driver{Client: replay(t, map[string]string{ref: "lvs-classic-snapshot-invalid"})}
	v := storage.Volume{ID: "0123456789abcdef", Name: "web", Format: storage.FormatRaw, Path: "/dev/tvg/strata.vol.0123456789abcdef", Device: true}
	pr := storage.PointRef{Method: lvm.MethodThick, Ref: ref}
	err := d.CheckRestore(context.Background(), storage.Pool{}, v, pr)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "overflowed") {
		t.Fatalf("CheckRestore of an overflowed point: %v", err)
	}
	if err := d.RestorePoint(context.Background(), storage.Pool{}, v, pr, storage.RestoreStep{}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("RestorePoint of an overflowed point: %v", err)
	}
	pct, invalid, ok, err := d.PointUsage(context.Background(), pr)
	if err != nil || !ok || !invalid || pct != 100 {
		t.Fatalf("PointUsage: %v %v %v %v", pct, invalid, ok, err)
	}
}

func TestLVPathsMapBack(t *testing.T) {
	d := lvm.Driver{}
	p := storage.Pool{LVM: &storage.LVMPool{VG: "vg0"}}
	path := d.VolumePath(p, "0123456789abcdef", storage.FormatRaw)
	if path != "/dev/vg0/strata.vol.0123456789abcdef" {
		t.Fatalf("VolumePath: %q", path)
	}
	vg, lv, ok := lvm.SplitDevPath(path)
	if !ok || vg != "vg0" {
		t.Fatalf("SplitDevPath(%q): %q %q %v", path, vg, lv, ok)
	}
	if kind, ids, ok := lvm.ParseLVName(lv); !ok || kind != lvm.KindVolume || !slices.Equal(ids, []string{"0123456789abcdef"}) {
		t.Fatalf("ParseLVName(%q): %q %q %v", lv, kind, ids, ok)
	}
	for _, bad := range []string{"/dev/vg0", "/dev/vg0/a/b", "/srv/vg0/lv", "/dev/-vg/lv", "/dev/vg0/"} {
		if _, _, ok := lvm.SplitDevPath(bad); ok {
			t.Errorf("SplitDevPath(%q) took it for an LV", bad)
		}
	}
	locs := d.Locations(p, storage.Volume{ID: "0123456789abcdef", Path: path})
	if locs[0] != path || !slices.Contains(locs, "/dev/mapper/vg0-strata.vol.0123456789abcdef") {
		t.Fatalf("Locations: %v", locs)
	}
}

func TestLVMPoolsHoldRawVolumesOnly(t *testing.T) {
	d := lvm.Driver{Client: replay(t, nil)}
	p := storage.Pool{LVM: &storage.LVMPool{VG: "vg0"}}
	err := d.Create(context.Background(), p, d.VolumePath(p, "0123456789abcdef", storage.FormatQcow2), storage.FormatQcow2, 1<<20)
	if !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "--format raw") {
		t.Fatalf("a qcow2 volume in an lvm pool: %v", err)
	}
	if err := d.AddPool(context.Background(), &storage.Pool{Name: "x", Driver: lvm.Name}); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "--vg") {
		t.Fatalf("AddPool with no VG: %v", err)
	}
}

// A thick volume's space is lvcreate's to refuse (atomically, no vgs
// first); its refusal is told with the VG's numbers, read only then.
func TestThickLVThatDoesNotFitIsRefusedWithTheNumbers(t *testing.T) {
	var ran []string
	d := lvm.Driver{Client: &lvm.Client{Exec: func(_ context.Context, argv []string, change bool) ([]byte, error) {
		ran = append(ran, argv[1])
		name := map[string]string{"lvcreate": "lvcreate-no-space", "vgs": "vgs"}[argv[1]]
		if name == "" {
			t.Fatalf("ran %v", argv)
		}
		r := recording(t, name)
		return []byte(r.Stdout), r.err()
	}}}
	p := storage.Pool{Name: "bulk", Driver: lvm.Name, LVM: &storage.LVMPool{VG: "tvg"}}
	err := d.Create(context.Background(), p, d.VolumePath(p, "0123456789abcdef", storage.FormatRaw), storage.FormatRaw, 8<<30)
	if !errors.Is(err, storage.ErrPrecondition) || !errors.Is(err, lvm.ErrNoSpace) || !strings.Contains(err.Error(), "a new volume needs 8") ||
		!strings.Contains(err.Error(), `volume group "tvg" has 504`) || !strings.Contains(err.Error(), "vgextend") {
		t.Fatalf("a thick volume bigger than the VG's free space: %v", err)
	}
	if !slices.Equal(ran, []string{"lvcreate", "vgs"}) {
		t.Fatalf("ran %v, want lvcreate then vgs", ran)
	}
}
