package xllist_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/storage/inuse/xllist"
)

// The samples are hand-written in Xen 4.17's shapes (testdata/xl/README.md):
// no Xen runs on the machines these tests run on.
func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "xl", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLongOfAnHVMDomainWithFilePhyAndQdiskDisks(t *testing.T) {
	doms, err := xllist.ParseLong(sample(t, "list-l-hvm.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(doms) != 1 {
		t.Fatalf("%d domains, want 1", len(doms))
	}
	d := doms[0]
	if d.DomID != 5 || d.Name != "win7" || d.Type != "hvm" || d.UUID != "6a2c1d8e-3b0f-4d57-9f3a-2a1e7c5b9d40" {
		t.Errorf("domain %+v", d)
	}
	want := []xllist.Disk{
		{Path: "/var/lib/strata/pools/default/vol-9f2c.qcow2", Vdev: "hda", Backend: "qdisk", Format: "qcow2", ReadWrite: true},
		{Path: "/dev/vg0/win7-data", Vdev: "hdb", Backend: "phy", Format: "raw", Script: "/etc/xen/scripts/block", ReadWrite: true},
		{Path: "/var/lib/strata/media/win7-sp1.iso", Vdev: "hdc", Backend: "qdisk", Format: "raw", CDROM: true},
	}
	if len(d.Disks) != len(want) {
		t.Fatalf("disks %+v", d.Disks)
	}
	for i := range want {
		if d.Disks[i] != want[i] {
			t.Errorf("disk %d: %+v, want %+v", i, d.Disks[i], want[i])
		}
	}
	if !d.VNC.Enabled || d.VNC.FindUnused || d.VNC.Listen != "127.0.0.1" || d.VNC.Display == nil || *d.VNC.Display != 3 {
		t.Errorf("vnc %+v", d.VNC)
	}
	// on_poweroff is destroy, libxl's default, which its JSON leaves out.
	if d.OnPoweroff != "" || d.OnReboot != "restart" || d.OnCrash != "preserve" {
		t.Errorf("lifecycle %q %q %q", d.OnPoweroff, d.OnReboot, d.OnCrash)
	}
}

func TestParseLongOfDom0Only(t *testing.T) {
	doms, err := xllist.ParseLong(sample(t, "list-l-dom0.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(doms) != 1 || doms[0].DomID != 0 || doms[0].Name != "Domain-0" || doms[0].Type != "pv" || len(doms[0].Disks) != 0 || doms[0].VNC.Enabled {
		t.Errorf("%+v", doms)
	}
}

func TestParseLongOfThreeDomains(t *testing.T) {
	doms, err := xllist.ParseLong(sample(t, "list-l-two.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(doms) != 3 {
		t.Fatalf("%d domains", len(doms))
	}
	xp, web := doms[1], doms[2]
	if xp.Name != "xp-sp3" || xp.DomID != 12 || len(xp.Disks) != 2 || xp.Disks[1].Path != "" || xp.Disks[1].Format != "empty" || !xp.Disks[1].CDROM {
		t.Errorf("xp-sp3: %+v", xp)
	}
	if !xp.VNC.Enabled || !xp.VNC.FindUnused || xp.VNC.Display != nil {
		t.Errorf("xp-sp3 vnc: %+v", xp.VNC)
	}
	if web.Name != "web01" || web.Type != "pvh" || len(web.Disks) != 1 || web.Disks[0].Path != "/dev/vg0/web01" || web.Disks[0].Backend != "phy" {
		t.Errorf("web01: %+v", web)
	}
}

func TestParseLongOfNothing(t *testing.T) {
	for _, out := range []string{"", "[\n]\n"} {
		doms, err := xllist.ParseLong([]byte(out))
		if err != nil || len(doms) != 0 {
			t.Errorf("%q: %v %v", out, doms, err)
		}
	}
}

func TestParseLongRefusesWhatItCannotRead(t *testing.T) {
	for _, out := range []string{
		"(domain\n    (domid 5)\n    (create_info)\n)\n", // output_format="sxp"
		`{"domid": 5}`,          // not an array
		`[{"config": {}}]`,      // no domid
		"Parsing config from x", // not JSON
	} {
		if _, err := xllist.ParseLong([]byte(out)); err == nil {
			t.Errorf("%q: no error", out)
		}
	}
}

func TestParseTableStates(t *testing.T) {
	es, err := xllist.ParseTable(sample(t, "list-all.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name   string
		id     int
		state  string
		has    string
		reason byte
	}{
		{"Domain-0", 0, "r-----", "r", '-'},
		{"win7", 5, "-b----", "b", '-'},
		{"xp-sp3", 12, "--p---", "p", '-'},
		{"web01", 14, "r-----", "r", '-'},
		{"old-crashed", 9, "---sc-", "s", 'c'},
		{"going-away", 16, "-----d", "d", '-'},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries: %+v", len(es), es)
	}
	for i, w := range want {
		e := es[i]
		if e.Name != w.name || e.DomID != w.id || e.State != w.state || e.ShutdownReason() != w.reason {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
		for _, c := range []byte("rbpsd") {
			if e.Has(c) != (c == w.has[0]) {
				t.Errorf("%s: Has(%c) = %v", e.Name, c, e.Has(c))
			}
		}
	}
	if es[0].MemMiB != 4095 || es[0].VCPUs != 4 || es[0].CPUSeconds != 5123.4 {
		t.Errorf("dom0 %+v", es[0])
	}
}

func TestParseTableRefusesWhatItCannotRead(t *testing.T) {
	for _, out := range []string{
		"",
		"win7 is an invalid domain identifier (rc=-6)\n",
		"Name ID Mem VCPUs State Time(s)\nwin7 5 2048 2 -b-- 1.0\n",
		"Name ID Mem VCPUs State Time(s)\nwin7 five 2048 2 -b---- 1.0\n",
	} {
		if _, err := xllist.ParseTable([]byte(out)); err == nil {
			t.Errorf("%q: no error", out)
		}
	}
}
