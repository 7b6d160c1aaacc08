package lvm_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/lvm"
)

// A thin-pool status line as the kernel prints it (thin-provisioning.rst;
// `dmsetup status` of LVM 2.03.16's pools in the test guest reads so).
const poolStatus = "1 1108/10240 3277/4096 - rw no_discard_passdown error_if_no_space - 1024"

func TestThinPoolStatusReadsAsLVSReportsIt(t *testing.T) {
	st, err := lvm.ParseThinPoolStatus(poolStatus)
	if err != nil {
		t.Fatal(err)
	}
	if st.UsedMetadata != 1108 || st.TotalMetadata != 10240 || st.UsedData != 3277 || st.TotalData != 4096 || st.Mode != "rw" || st.Health() != '-' {
		t.Fatalf("%+v", st)
	}
	if d, m := st.DataPercent(), st.MetadataPercent(); d < 80.0 || d > 80.01 || m < 10.82 || m > 10.83 {
		t.Fatalf("data %v%%, metadata %v%%", d, m)
	}
	for mode, health := range map[string]byte{"out_of_data_space": 'D', "ro": 'M'} {
		st, err := lvm.ParseThinPoolStatus(strings.Replace(poolStatus, " rw ", " "+mode+" ", 1))
		if err != nil || st.Health() != health {
			t.Errorf("%s: %c %v", mode, st.Health(), err)
		}
	}
	if st, err := lvm.ParseThinPoolStatus("Fail"); err != nil || st.Health() != 'F' {
		t.Errorf("Fail: %+v %v", st, err)
	}
	for _, bad := range []string{"", "1 2/3", "1 1108/0 3277/4096 - rw", "1 a/b 3277/4096 - rw"} {
		if _, err := lvm.ParseThinPoolStatus(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestDeviceMapperNamesMapBackToLVs(t *testing.T) {
	for name, want := range map[string][3]string{
		"cvg-cthin-tpool":            {"cvg", "cthin", "tpool"},
		"my--vg-strata.vol.ab":       {"my-vg", "strata.vol.ab", ""},
		"vg-a--b--c":                 {"vg", "a-b-c", ""},
		"vg0-strata.point.x.y-tpool": {"vg0", "strata.point.x.y", "tpool"},
	} {
		vg, lv, layer, ok := lvm.SplitDMName(name)
		if !ok || [3]string{vg, lv, layer} != want {
			t.Errorf("%q: %q %q %q %v", name, vg, lv, layer, ok)
		}
	}
	for _, bad := range []string{"novg", "-lv", "vg-", "a-b-c-d"} {
		if _, _, _, ok := lvm.SplitDMName(bad); ok {
			t.Errorf("%q split", bad)
		}
	}
}

// The guardrail reads a thin pool's usage from device-mapper: over its
// limit, a new volume is refused with the numbers and no lvm command
// runs at all.
func TestThinPoolGuardrailFromDeviceMapperRunsNoLVM(t *testing.T) {
	var asked []string
	d := lvm.Driver{Client: replay(t, nil), DM: func(q lvm.DMQuery) (lvm.DMDevice, error) {
		asked = append(asked, q.Name)
		if q.Name != "tvg-pool-tpool" || q.Table {
			return lvm.DMDevice{}, storage.Errorf(storage.ErrNotFound, "no %s", q.Name)
		}
		return lvm.DMDevice{Name: q.Name, Targets: []lvm.DMTarget{{Length: 262144, Type: "thin-pool", Params: poolStatus}}}, nil
	}}
	p := storage.Pool{Name: "fast", Driver: lvm.Name, LVM: &storage.LVMPool{VG: "tvg", ThinPool: "pool", DataLimit: 75}}
	err := d.Create(context.Background(), p, d.VolumePath(p, "0123456789abcdef", storage.FormatRaw), storage.FormatRaw, 1<<20)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "80.00%") || !strings.Contains(err.Error(), "limit of 75%") ||
		!strings.Contains(err.Error(), `"tvg/pool"`) || !strings.Contains(err.Error(), "lvextend") {
		t.Fatalf("a new volume in a thin pool at 80%% data (limit 75%%): %v", err)
	}
	if len(asked) != 1 {
		t.Fatalf("asked device-mapper for %q", asked)
	}
	// Under the limits but out of data space: refused too.
	p.LVM.DataLimit = 85
	d.DM = func(q lvm.DMQuery) (lvm.DMDevice, error) {
		return lvm.DMDevice{Name: q.Name, Targets: []lvm.DMTarget{{Type: "thin-pool", Params: strings.Replace(poolStatus, " rw ", " out_of_data_space ", 1)}}}, nil
	}
	err = d.Create(context.Background(), p, d.VolumePath(p, "0123456789abcdef", storage.FormatRaw), storage.FormatRaw, 1<<20)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "out_of_data_space") {
		t.Fatalf("a new volume in a thin pool out of data space: %v", err)
	}
}
