package snapshot_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/store"
)

const goldenDef = `api_version: strata/v1
name: web
uuid: 11111111-2222-4333-8444-555555555555
memory: 1024
disks:
  - volume: web-sys
    vdev: hda
    format: raw
  - volume: web-data
    vdev: hdb
  - path: /srv/images/web-swap.img
    vdev: hdd
  - media: install-iso
    vdev: hdc
    cdrom: true
nics:
  - mac: 00:16:3e:00:00:01
    bridge: xenbr0
  - mac: 00:16:3e:00:00:02
    bridge: xenbr1
    model: e1000
`

func TestCloneDefinition(t *testing.T) {
	inUse := map[string]bool{"00:16:3E:00:00:01": true, "00:16:3e:00:00:02": true}
	r := snapshot.DefinitionRewrite{
		Name: "web-7",
		Volumes: map[string]snapshot.RewriteDisk{
			"web-sys":  {Volume: "web-7-disk1", Format: storage.FormatQcow2},
			"web-data": {Volume: "web-7-disk2", Format: storage.FormatRaw},
		},
		Paths: map[string]snapshot.RewriteDisk{"/srv/images/web-swap.img": {Volume: "web-7-disk3", Format: storage.FormatQcow2}},
		InUse: inUse,
	}
	def, uuid, macs, err := snapshot.CloneDefinition(goldenDef, r)
	if err != nil {
		t.Fatal(err)
	}
	g, err := hvm.Unmarshal("clone", []byte(def))
	if err != nil {
		t.Fatalf("the clone's definition does not parse: %v\n%s", err, def)
	}
	if g.Name != "web-7" || g.UUID != uuid || uuid == "11111111-2222-4333-8444-555555555555" || !hvm.UUIDPattern.MatchString(uuid) || *g.Memory != 1024 {
		t.Errorf("identity: name %q uuid %q memory %v", g.Name, g.UUID, g.Memory)
	}
	want := []struct{ volume, path, format string }{
		{"web-7-disk1", "", "qcow2"}, // a linked clone of a raw disk is qcow2
		{"web-7-disk2", "", ""},      // raw stays implicit
		{"web-7-disk3", "", "qcow2"}, // a disk given by the source image's path
		{"", "", ""},                 // media is kept
	}
	for i, w := range want {
		d := g.Disks[i]
		if d.Volume != w.volume || d.Path != w.path || d.Format != w.format {
			t.Errorf("disk %d: %+v, want volume %q path %q format %q", i, d, w.volume, w.path, w.format)
		}
	}
	if g.Disks[3].Media != "install-iso" || g.NICs[1].Model != "e1000" || g.NICs[1].Bridge != "xenbr1" {
		t.Errorf("fields not kept: %+v %+v", g.Disks[3], g.NICs[1])
	}
	if len(macs) != 2 || macs[0] == macs[1] {
		t.Fatalf("macs %v", macs)
	}
	for i, m := range macs {
		if g.NICs[i].MAC != m || !strings.HasPrefix(m, hvm.XenOUI+":") || m == "00:16:3e:00:00:01" || m == "00:16:3e:00:00:02" {
			t.Errorf("NIC %d: MAC %q", i, m)
		}
		if !inUse[m] {
			t.Errorf("the new MAC %s was not added to the in-use set", m)
		}
	}
	// A second clone from the same in-use set never repeats a MAC.
	_, _, macs2, err := snapshot.CloneDefinition(goldenDef, r)
	if err != nil || macs2[0] == macs[0] || macs2[0] == macs[1] || macs2[1] == macs[0] || macs2[1] == macs[1] {
		t.Errorf("second clone MACs %v (first %v): %v", macs2, macs, err)
	}

	// An empty definition gives name and UUID only.
	def, uuid, macs, err = snapshot.CloneDefinition("", snapshot.DefinitionRewrite{Name: "bare-1"})
	if err != nil {
		t.Fatal(err)
	}
	g, err = hvm.Unmarshal("bare", []byte(def))
	if err != nil || g.Name != "bare-1" || g.UUID != uuid || len(g.Disks) != 0 || len(macs) != 0 {
		t.Errorf("empty definition: %v %+v %v", err, g, macs)
	}
	if _, _, _, err := snapshot.CloneDefinition("name: x\n", snapshot.DefinitionRewrite{Name: "y"}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("a broken definition: %v", err)
	}
}

func TestParseSourceRef(t *testing.T) {
	for in, want := range map[string][2]string{"web": {"web", ""}, "web@3": {"web", "3"}, "web@clean": {"web", "clean"}} {
		n, p, err := snapshot.ParseSourceRef(in)
		if err != nil || n != want[0] || p != want[1] {
			t.Errorf("ParseSourceRef(%q) = %q, %q, %v", in, n, p, err)
		}
	}
	for _, in := range []string{"web@", "web@0", "web@-1", "web@a/b"} {
		if _, _, err := snapshot.ParseSourceRef(in); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ParseSourceRef(%q): %v", in, err)
		}
	}
}

func TestCloneNames(t *testing.T) {
	if got := strings.Join(snapshot.CloneOptions{Name: "w"}.CloneNames(), ","); got != "w" {
		t.Errorf("no count: %s", got)
	}
	if got := strings.Join(snapshot.CloneOptions{Name: "w", Count: 3}.CloneNames(), ","); got != "w-1,w-2,w-3" {
		t.Errorf("count 3: %s", got)
	}
}

// The library without the CLI: a golden of a volume, linked and full
// clones, the delete guard, flatten.
func TestGoldenLibrary(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "home"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	m := snapshot.New(st, time.Minute)
	if _, err := st.CreateVolume(ctx, store.CreateOptions{Name: "v", Size: 8 << 20, Format: storage.FormatRaw}); err != nil {
		t.Fatal(err)
	}
	g, err := m.CreateGolden(ctx, snapshot.GoldenOptions{Name: "g", Source: snapshot.TargetRef{Name: "v", Volume: true}})
	if err != nil {
		t.Fatal(err)
	}
	if g.Kind != snapshot.GoldenVolume || len(g.Disks) != 1 {
		t.Fatalf("golden %+v", g)
	}
	if st, err := os.Stat(g.Disks[0].Path); err != nil || st.Mode().Perm() != 0o400 {
		t.Errorf("golden image: %v %v", err, st)
	}
	linked, err := m.Clone(ctx, snapshot.CloneOptions{Golden: "g", Name: "l", Count: 2})
	if err != nil || len(linked) != 2 || !linked[0].Disks[0].Linked {
		t.Fatalf("linked clones: %+v %v", linked, err)
	}
	full, err := m.Clone(ctx, snapshot.CloneOptions{Golden: "g", Name: "f", Full: true})
	if err != nil || full[0].Disks[0].Linked || full[0].Disks[0].Backing != nil || full[0].Disks[0].Method != snapshot.CloneCopy {
		t.Fatalf("full clone: %+v %v", full, err)
	}
	err = m.DeleteGolden(ctx, "g")
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `volume "l-1"`) || !strings.Contains(err.Error(), `volume "l-2"`) || strings.Contains(err.Error(), `"f"`) {
		t.Fatalf("delete under linked clones: %v", err)
	}
	infos, err := m.GoldenList(ctx)
	if err != nil || len(infos) != 1 || infos[0].Clones != 3 || infos[0].LinkedClones != 2 {
		t.Fatalf("golden list: %+v %v", infos, err)
	}
	if _, err := m.Flatten(ctx, snapshot.TargetRef{Name: "l-1", Volume: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteVolume(ctx, "l-2", false); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteGolden(ctx, "g"); err != nil {
		t.Fatalf("delete after flatten and delete of the clones: %v", err)
	}
	if _, err := m.GoldenShow(ctx, "g"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("show after delete: %v", err)
	}
}
