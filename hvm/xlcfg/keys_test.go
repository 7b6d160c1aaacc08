package xlcfg_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage/run"
)

type coverageRow struct {
	line                                 int
	key, dialect, treatment, example, xl string
}

func coverageTable(t *testing.T) []coverageRow {
	t.Helper()
	f, err := os.Open(filepath.Join(hvmtest.Dir(), "xl-keys.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []coverageRow
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 6 {
			t.Fatalf("xl-keys.tsv:%d: %d columns, want 6 (key, dialect, treatment, example, xl, note)", n, len(c))
		}
		rows = append(rows, coverageRow{line: n, key: c[0], dialect: c[1], treatment: c[2], example: c[3], xl: c[4]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestKeyCoverageTable imports every row of testdata/hvm/xl-keys.tsv and
// checks the key is treated as the row says: modelled keys round-trip
// through xl and render to libvirt (xen, kvm) and QEMU, verbatim keys
// land in extra and are written back, dropped keys give a warning naming
// them, refused keys an error naming them.
func TestKeyCoverageTable(t *testing.T) {
	rows := coverageTable(t)
	for _, r := range rows {
		key := strings.ReplaceAll(r.key, "-", "_")
		src := "name = \"cov\"\ntype = \"hvm\"\nmemory = 128\n" + r.key + " = " + r.example + "\n"
		g, ws, err := xlcfg.Parse("cov.cfg", []byte(src))
		where := "xl-keys.tsv:" + strconv.Itoa(r.line) + " " + r.key + " = " + r.example
		warned := slices.ContainsFunc(ws, func(w xlcfg.Warning) bool { return w.Key == key })
		if r.treatment == string(xlcfg.Refused) {
			if err == nil || !strings.Contains(err.Error(), r.key+": refused") {
				t.Errorf("%s: Parse = %v, want an error saying %s is refused", where, err, r.key)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		_, inExtra := g.Extra[key]
		switch r.treatment {
		case string(xlcfg.Dropped):
			if inExtra || !warned {
				t.Errorf("%s: dropped: in extra %v, warned %v (%v)", where, inExtra, warned, ws)
			}
			continue
		case string(xlcfg.Verbatim):
			if _, ok := g.Extra[r.xl]; !ok {
				t.Errorf("%s: verbatim: extra = %v, want %s in it", where, g.Extra, r.xl)
			}
		case string(xlcfg.Modelled):
			if inExtra {
				t.Errorf("%s: modelled, but kept in extra", where)
			}
			if r.key != key && !warned {
				t.Errorf("%s: a hyphenated key was read without a warning", where)
			}
		default:
			t.Errorf("%s: treatment %q is not modelled, verbatim, dropped or refused", where, r.treatment)
			continue
		}
		out, err := xlcfg.Render(g)
		if err != nil {
			t.Errorf("%s: Render: %v", where, err)
			continue
		}
		if r.xl != "-" && !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(r.xl)+` = `).Match(out) {
			t.Errorf("%s: the xl rendering has no %s:\n%s", where, r.xl, out)
		}
		back, _, err := xlcfg.Parse("cov-rendered.cfg", out)
		if err != nil {
			t.Errorf("%s: the xl rendering does not parse: %v\n%s", where, err, out)
			continue
		}
		if back.DeviceModel.XMPath == "" {
			back.DeviceModel.XMPath = g.DeviceModel.XMPath // xm only: see TestRoundTrip
		}
		if !reflect.DeepEqual(g, back) {
			t.Errorf("%s: xl round trip changed the guest\nbefore: %+v\nafter:  %+v", where, g, back)
		}
		if r.treatment != string(xlcfg.Modelled) {
			continue
		}
		// xlcfg.Modelled: valid, and every renderer takes it.
		f := g.Clone()
		if err := f.FillDefaults(); err != nil {
			t.Fatal(err)
		}
		if err := f.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", where, err)
			continue
		}
		for _, hv := range []libvirt.Hypervisor{libvirt.Xen, libvirt.KVM} {
			if _, err := libvirt.Render(f, hv); err != nil {
				t.Errorf("%s: libvirt %s: %v", where, hv, err)
			}
		}
		if _, err := qemu.Argv(f, qemu.Options{}); err != nil {
			t.Errorf("%s: qemu: %v", where, err)
		}
		if !strings.Contains(r.dialect, "xm") || f.Firmware == "ovmf" || f.Display.Spice != nil || f.DirectBoot != nil || f.Passthrough != "" {
			continue // xm cannot express these
		}
		xm, err := xlcfg.RenderXM(f)
		if err != nil {
			t.Errorf("%s: RenderXM: %v", where, err)
		}
		if f.DeviceModel.XMPath != "" && !strings.Contains(string(xm), "device_model = \""+f.DeviceModel.XMPath+"\"") {
			t.Errorf("%s: the xm rendering lost the device_model path:\n%s", where, xm)
		}
	}
}

// TestKeyCoverageTableComplete checks that the table lists every key the
// importer names (modelled, dropped, refused, known verbatim) with the
// treatment the importer gives it, and every key of the corpora.
func TestKeyCoverageTableComplete(t *testing.T) {
	rows := coverageTable(t)
	byKey := map[string][]string{}
	for _, r := range rows {
		byKey[r.key] = append(byKey[r.key], r.treatment)
	}
	check := func(key string, want xlcfg.Treatment) {
		got := byKey[key]
		if len(got) == 0 {
			t.Errorf("xl-keys.tsv has no row for %s (%s)", key, want)
			return
		}
		if key != "snapshot" && !slices.Contains(got, string(want)) {
			t.Errorf("xl-keys.tsv says %s is %v; the importer has it %s", key, got, want)
		}
	}
	for k, tr := range xlcfg.ListedKeys() {
		check(k, tr)
	}
	for _, r := range rows {
		if got, _ := xlcfg.KeyTreatment(strings.ReplaceAll(r.key, "-", "_")); r.key != "snapshot" && string(got) != r.treatment {
			t.Errorf("xl-keys.tsv:%d: %s is %s in the table, %s in the importer", r.line, r.key, r.treatment, got)
		}
	}
	corpus, err := hvmtest.Corpus()
	if err != nil {
		t.Fatal(err)
	}
	seeds, _ := hvmtest.Seeds()
	for _, c := range append(corpus, seeds...) {
		data, err := os.ReadFile(c.CfgPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := xlcfg.Decode(c.Name, data)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		for _, s := range cfg.Settings {
			if len(byKey[s.Key]) == 0 {
				t.Errorf("%s: key %s has no row in xl-keys.tsv", c.Name, s.Key)
			}
		}
	}
	t.Logf("xl-keys.tsv: %d rows, %d keys", len(rows), len(byKey))
}

// The examples the issue gave, each imported to what it means.
func TestIssueExamplesImport(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want hvm.Disk
	}{
		{"/dev/vg/guest,,hda,,backendtype=phy", hvm.Disk{Device: "/dev/vg/guest", Vdev: "hda"}},
		{"/srv/win.iso,,hdc,cdrom", hvm.Disk{Path: "/srv/win.iso", Vdev: "hdc", CDROM: true}},
		{"qcow2:/data/w.qcow2,,hda", hvm.Disk{Path: "/data/w.qcow2", Format: "qcow2", Vdev: "hda"}},
		{"/root/image.iso,,hdc,,cdrom", hvm.Disk{Path: "/root/image.iso", Vdev: "hdc", CDROM: true}},
		{"/dev/vg/guest-volume,,hda", hvm.Disk{Path: "/dev/vg/guest-volume", Vdev: "hda"}},
		{"phy:sdb1,hdb,w", hvm.Disk{Device: "/dev/sdb1", Vdev: "hdb", Access: "rw"}},
		{"/img,raw,xvda,rw,direct-io-safe,trusted,specification=xen,grant_usage=0", hvm.Disk{Path: "/img", Format: "raw", Vdev: "xvda", Access: "rw", Options: []string{"direct-io-safe", "trusted", "specification=xen", "grant_usage=0"}}},
	} {
		got, err := xlcfg.ParseDisk(tc.spec)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("xlcfg.ParseDisk(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			continue
		}
		s, err := xlcfg.FormatDisk(got)
		if back, err2 := xlcfg.ParseDisk(s); err != nil || err2 != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("%q: FormatDisk gave %q (%v), which reads back as %+v (%v)", tc.spec, s, err, back, err2)
		}
	}
	for _, spec := range []string{"/x,raw,hda,rw,format=qcow2", "/x,,hda,r,access=rw", "vdev=hda,/x,,hdb", "/x,,hda,,specification=nvme", "/x,,hda,,frobnicate"} {
		if d, err := xlcfg.ParseDisk(spec); err == nil {
			t.Errorf("xlcfg.ParseDisk(%q) = %+v, want an error", spec, d)
		}
	}

	src := `name = "xp"
type = "hvm"
memory = 512
boot = "cda"
soundhw = "all"
vif = [ "type=netfront,mac=00:16:3E:00:00:01" ]
passthrough = "share_pt"
pci = [ "01:00.0" ]
device-model = "/usr/lib64/xen/bin/qemu-dm"
localtime = 1
rtc_timeoffset = -3600
`
	g, ws, err := xlcfg.Parse("xp.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if g.Boot != "cd" || !slices.Equal(g.SoundHW, []string{"all"}) || g.NICs[0].Type != "vif" || g.NICs[0].MAC != "00:16:3e:00:00:01" ||
		g.Passthrough != "share_pt" || g.DeviceModel.XMPath != "/usr/lib64/xen/bin/qemu-dm" || !hvm.Val(g.Localtime, false) || hvm.Val(g.RTCTimeOffset, 0) != -3600 {
		t.Errorf("imported %+v", g)
	}
	codes := map[string]string{}
	for _, w := range ws {
		codes[w.Key] = w.Code
	}
	if codes["boot"] != "ignored-key" || codes["device_model"] != "deprecated-key" && codes["device_model"] != "hyphen-key" {
		t.Errorf("warnings %v", ws)
	}
	if !slices.ContainsFunc(ws, func(w xlcfg.Warning) bool {
		return w.Code == "hyphen-key" && strings.Contains(w.Message, "device-model")
	}) {
		t.Errorf("no warning about device-model: %v", ws)
	}
	if f := g.Clone(); f.FillDefaults() != nil || f.Validate() != nil {
		t.Errorf("the imported guest does not validate: %v", f.Validate())
	}
	if cards := g.SoundCards(); !slices.Equal(cards, []string{"sb16", "es1370"}) {
		t.Errorf("soundhw all = %v, want sb16 and es1370", cards)
	}
	f := g.Clone()
	_ = f.FillDefaults()
	x, err := libvirt.Render(f, libvirt.Xen)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<passthrough state="on" mode="share_pt"></passthrough>`, `<sound model="sb16">`, `<sound model="es1370">`, `<model type="netfront">`} {
		if !strings.Contains(string(x), want) {
			t.Errorf("libvirt xen XML has no %s:\n%s", want, x)
		}
	}
	if _, err := run.Look("virt-xml-validate"); err == nil {
		p := filepath.Join(t.TempDir(), "xp.xml")
		if err := os.WriteFile(p, x, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := run.Output(context.Background(), "virt-xml-validate", p, "domain"); err != nil {
			t.Errorf("the XML with passthrough does not validate: %v %s\n%s", err, out, x)
		}
	}
	argv, err := qemu.Argv(f, qemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(argv, " "); !strings.Contains(a, "-device sb16,audiodev=snd0") || !strings.Contains(a, "-device ES1370,audiodev=snd0") {
		t.Errorf("qemu argv without the cards of soundhw all: %s", a)
	}
	xm, err := xlcfg.RenderXM(&hvm.Guest{Name: "xp", Memory: hvm.Int(64), DeviceModel: g.DeviceModel})
	if err != nil || !strings.Contains(string(xm), `device_model = "/usr/lib64/xen/bin/qemu-dm"`) {
		t.Errorf("xm rendering lost the device_model path: %v\n%s", err, xm)
	}

	// Forms of xl.cfg(5) and xm beyond single keys.
	g, ws, err = xlcfg.Parse("forms.cfg", []byte("name = \"f\"\ntype = \"hvm\"\nmemory = 64\nvnclisten = \"127.0.0.1:3\"\nacpi = True\napic = False\nfirmware = \"/usr/lib/xen/boot/hvmloader.custom\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Display.VNCListen != "127.0.0.1" || hvm.Val(g.Display.VNCDisplay, -1) != 3 || !*g.Features.ACPI || *g.Features.APIC || g.Extra["firmware"] != `"/usr/lib/xen/boot/hvmloader.custom"` {
		t.Errorf("forms: %+v", g)
	}
	if !slices.ContainsFunc(ws, func(w xlcfg.Warning) bool { return w.Code == "python-boolean" && w.Key == "acpi" }) {
		t.Errorf("no warning about acpi = True: %v", ws)
	}
	for _, src := range []string{"vnclisten = \"127.0.0.1:3\"\nvncdisplay = 4\n", "firmware = \"pvgrub64\"\n", "acpi = Truest\n"} {
		if _, _, err := xlcfg.Parse("bad.cfg", []byte("name = \"f\"\ntype = \"hvm\"\nmemory = 64\n"+src)); err == nil {
			t.Errorf("%q was accepted", src)
		}
	}

	// A hyphenated key that is no key at all is refused, naming it.
	if _, _, err := xlcfg.Parse("x.cfg", []byte("name = \"a\"\ntype = \"hvm\"\nmax-speed = 3\n")); err == nil || !strings.Contains(err.Error(), `"max-speed"`) || !strings.Contains(err.Error(), "x.cfg:3") {
		t.Errorf("max-speed: %v", err)
	}
}
