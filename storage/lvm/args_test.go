package lvm_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/lvm"
)

// The argv of each operation, as lvm(8) takes it: sizes in bytes ("b"),
// --yes where LVM would otherwise ask, thin snapshots' activation skip
// spelled out. (The recordings in testdata/lvm hold the same argv as LVM
// accepted it in the guest: TestClientReplaysRecordedCommands.)
func TestCommandsAreBuiltAsLVMTakesThem(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		got  []string
		want string
	}{
		{lvm.CreateArgs(lvm.CreateOptions{VG: "vg", Name: "a", Size: 64 << 20, Tags: []string{"strata", "t2"}}),
			"lvm lvcreate --yes -n a -L 67108864b vg --addtag strata --addtag t2"},
		{lvm.CreateArgs(lvm.CreateOptions{VG: "vg", Name: "a", Size: 1 << 30, ThinPool: "pool"}),
			"lvm lvcreate --yes -n a -V 1073741824b --thinpool vg/pool"},
		{lvm.CreateThinPoolArgs(lvm.ThinPoolOptions{VG: "vg", Name: "pool", Size: 1 << 30, MetadataSize: 8 << 20, ErrorWhenFull: true, Tags: []string{"strata"}}),
			"lvm lvcreate --yes --type thin-pool -n pool -L 1073741824b --poolmetadatasize 8388608b --addtag strata vg"},
		{lvm.ThinSnapshotArgs(lvm.ThinSnapshotOptions{VG: "vg", Origin: "a", Name: "p", ReadOnly: true, Tags: []string{"strata"}}),
			"lvm lvcreate --yes -s -n p -p r -k y -a n --addtag strata vg/a"},
		{lvm.ThinSnapshotArgs(lvm.ThinSnapshotOptions{VG: "vg", Origin: "p", Name: "a", Activate: true}),
			"lvm lvcreate --yes -s -n a -p rw -k n -a y vg/p"},
		{lvm.ThinSnapshotArgs(lvm.ThinSnapshotOptions{VG: "vg", Origin: "p", Name: "a", Activate: true, KeepSkip: true}),
			"lvm lvcreate --yes -s -n a -p rw -k y -K -a y vg/p"},
		{lvm.SnapshotArgs(lvm.SnapshotOptions{VG: "vg", Origin: "a", Name: "s", PercentOrigin: 100}),
			"lvm lvcreate --yes -s -n s -l 100%ORIGIN vg/a"},
		{lvm.SnapshotArgs(lvm.SnapshotOptions{VG: "vg", Origin: "a", Name: "s", Size: 4 << 20, ReadOnly: true, Tags: []string{"strata"}}),
			"lvm lvcreate --yes -s -n s -L 4194304b -p r --addtag strata vg/a"},
		{lvm.RenameArgs("vg", "a", "b"), "lvm lvrename vg a b"},
		{lvm.ExtendArgs("vg", "a", 80<<20), "lvm lvextend --yes -L 83886080b vg/a"},
		{lvm.RemoveArgs("vg", "a"), "lvm lvremove --yes vg/a"},
		{lvm.MergeArgs("vg", "s"), "lvm lvconvert --yes --merge --interval 1 vg/s"},
		{lvm.ActivateArgs("vg", "a", true), "lvm lvchange -a y -K vg/a"},
		{lvm.ActivateArgs("vg", "a", false), "lvm lvchange -a n vg/a"},
		{lvm.ChangeArgs("vg", "a", lvm.ChangeOptions{AddTags: []string{"x"}, DelTags: []string{"y"}, Writable: &no, SkipActivation: &yes, ErrorWhenFull: &yes}),
			"lvm lvchange --addtag x --deltag y -p r -k y --errorwhenfull y vg/a"},
		{lvm.CreateVGArgs("vg", []string{"/dev/vda", "/dev/vdb"}), "lvm vgcreate --yes vg /dev/vda /dev/vdb"},
		{lvm.VGArgs("vg"), "lvm vgs --reportformat json --units b --nosuffix -o vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,lv_count,vg_tags,vg_attr vg"},
		{lvm.LVsArgs("vg", ""), "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_uuid,lv_attr,lv_size,origin,pool_lv,data_percent,metadata_percent,lv_tags,lv_device_open,segtype,lv_path,lv_dm_path,lv_when_full vg"},
		{lvm.LVsArgs("vg", "a"), "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_uuid,lv_attr,lv_size,origin,pool_lv,data_percent,metadata_percent,lv_tags,lv_device_open,segtype,lv_path,lv_dm_path,lv_when_full vg/a"},
	}
	for _, c := range cases {
		if !slices.Equal(c.got, strings.Fields(c.want)) {
			t.Errorf("got  %s\nwant %s", strings.Join(c.got, " "), c.want)
		}
	}
}
