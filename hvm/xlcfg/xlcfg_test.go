package xlcfg_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
)

func TestDecodeSyntax(t *testing.T) {
	src := `# comment
name = "a" ; memory = 0x100   # hex, comment after a value
vcpus = 010
maxmem = "1024"
extra = 'it\'s'
cpuid = "x\ty\x41\101\\"
disk = [ "one",
         "two", # comment inside a list
         [ "nested", [ 1 ] ],
       ]
disk += [ "three" ]
cmdline = "a"
cmdline += "b"
boot = "c"
boot = "d"
triple = '''has ' and " inside'''
triple2 = """multi
line"""
`
	c, err := xlcfg.Decode("t.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) *xlcfg.Value {
		s := c.Get(k)
		if s == nil {
			t.Fatalf("%s not set", k)
		}
		return s.Value
	}
	for k, want := range map[string]int64{"memory": 256, "vcpus": 8, "maxmem": 1024} {
		n, err := xlcfg.ParseInt(get(k).Text)
		if err != nil || n != want {
			t.Errorf("%s = %d, %v; want %d", k, n, err, want)
		}
	}
	if s := get("cpuid").Text; s != "x\tyAA\\" {
		t.Errorf("escapes: %q", s)
	}
	if d := get("disk"); d.Kind != xlcfg.List || len(d.Items) != 4 || d.Items[2].Items[1].Items[0].Text != "1" || d.Items[3].Text != "three" {
		t.Errorf("disk = %s", d)
	}
	if s := get("cmdline").Text; s != "ab" {
		t.Errorf("+= on a string gave %q", s)
	}
	if s := get("boot").Text; s != "d" {
		t.Errorf("the last boot should win, got %q", s)
	}
	if s := get("triple").Text; s != `has ' and " inside` {
		t.Errorf("triple = %q", s)
	}
	if s := get("triple2").Text; s != "multi\nline" {
		t.Errorf("triple2 = %q", s)
	}
	if s := get("extra").Text; s != "it's" {
		t.Errorf("extra = %q", s)
	}
	if s := c.Get("triple2"); s.Line != 17 {
		t.Errorf("triple2 on line %d, want 17", s.Line)
	}
	found := false
	for _, w := range c.Warnings {
		if w.Code == "repeated-key" && w.Key == "boot" {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning about boot set twice: %v", c.Warnings)
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "10": 10, "0x1F": 31, "017": 15, "-5": -5} {
		if got, err := xlcfg.ParseInt(in); err != nil || got != want {
			t.Errorf("ParseInt(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "08", "1k", "yes", "True", "0x", "1_000"} {
		if _, err := xlcfg.ParseInt(in); err == nil {
			t.Errorf("ParseInt(%q) did not fail", in)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ src, line, want string }{
		{"name = \"a\"\nmemory = 256 * 2\n", ":2:", "Python"},
		{"name = 'a'\nimport sys\n", ":2:", "Python"},
		{"for i in range(3):\n  pass\n", ":1:", "Python"},
		{"name = 'a'\nif x:\n  memory = 1\n", ":2:", "Python"},
		{"name = \"a\ngo\"\n", ":1:", "not closed"},
		{"disk = [ 'a'\n", ":1:", "not closed"},
		{"acpi = yes\n", ":1:", "value"},
		{"Name = 'x'\n", ":1:", "key"},
		{"a = 'x' 'y'\n", ":1:", "after the value"},
		{"a = \"\\q\"\n", ":1:", "unknown escape"},
		{"a = [ 1 ]\na += 'x'\n", ":2:", "mixes"},
		{"\n\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n", ":3:", "Python"},
		{strings.Repeat("[", 40), ":1:", "nested deeper"},
	} {
		_, err := xlcfg.Decode("bad.cfg", []byte("x = "+tc.src))
		if strings.HasPrefix(tc.src, "[") {
			_, err = xlcfg.Decode("bad.cfg", []byte("x = "+tc.src))
		} else {
			_, err = xlcfg.Decode("bad.cfg", []byte(tc.src))
		}
		if err == nil || !strings.Contains(err.Error(), "bad.cfg"+tc.line) || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Decode(%q) = %v; want an ErrInvalid error at %s mentioning %q", tc.src, err, tc.line, tc.want)
		}
	}
	if _, err := xlcfg.Decode("big.cfg", make([]byte, xlcfg.MaxSize+1)); err == nil {
		t.Error("a config over MaxSize was accepted")
	}
}

func TestPythonPreamble(t *testing.T) {
	data, err := os.ReadFile(hvmtest.Dir() + "/seeds/win2k3-xm.cfg")
	if err != nil {
		t.Fatal(err)
	}
	g, ws, err := xlcfg.Parse("win2k3-xm.cfg", data)
	if err != nil {
		t.Fatal(err)
	}
	var pre *xlcfg.Warning
	deprecated := map[string]bool{}
	for i, w := range ws {
		if w.Code == "python-preamble" {
			pre = &ws[i]
		}
		if w.Code == "deprecated-key" {
			deprecated[w.Key] = true
		}
	}
	if pre == nil || !strings.Contains(pre.Message, "lines 5, 6, 7, 8, 9, 10, 22") {
		t.Errorf("preamble warning = %v, want one naming lines 5-10 and 22", pre)
	}
	for _, k := range []string{"builder", "kernel", "stdvga", "vncviewer"} {
		if !deprecated[k] {
			t.Errorf("no deprecation warning for %s: %v", k, ws)
		}
	}
	if _, ok := g.Extra["arch_libdir"]; ok {
		t.Error("arch_libdir from the preamble leaked into Extra")
	}
	want := []hvm.Disk{
		{Path: "/var/lib/xen/images/win2k3.img", Vdev: "hda", Access: "rw"},
		{Path: "/var/tmp/windows2k3.iso", Vdev: "hdc", Access: "ro", CDROM: true},
	}
	if !reflect.DeepEqual(g.Disks, want) {
		t.Errorf("disks = %+v, want %+v", g.Disks, want)
	}
	if g.Name != "win2k3" || *g.Memory != 512 || g.Boot != "d" || g.Display.VGA != "cirrus" || g.NICs[0].Type != "ioemu" || g.NICs[0].Bridge != "xenbr0" || g.USBDevices[0] != "tablet" {
		t.Errorf("guest = %+v", g)
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want error
		text string
	}{
		{"name='a'\ntype='hvm'\nbuilder='linux'\n", xlcfg.ErrBuilderType, "contradicts"},
		{"name='a'\ntype='pvh'\n", xlcfg.ErrNotHVM, "PVH"},
		{"name='a'\nkernel='/boot/vmlinuz'\n", xlcfg.ErrNotHVM, "PV guest"},
		{"name='a'\nbootloader='pygrub'\n", xlcfg.ErrNotHVM, "PV guest"},
	} {
		_, _, err := xlcfg.Parse("x.cfg", []byte(tc.src))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "x.cfg") {
			t.Errorf("Parse(%q) = %v, want %v mentioning %q", tc.src, err, tc.want, tc.text)
		}
	}
	// All value problems at once, each naming its line.
	_, _, err := xlcfg.Parse("x.cfg", []byte("type='hvm'\nname='a'\nmemory='lots'\nvcpus=[1]\ndisk=['zip:/x,hda,w']\n"))
	for _, want := range []string{"x.cfg:3: memory", "x.cfg:4: vcpus", "x.cfg:5: disk", `unknown prefix "zip:"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestParseDisk(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want hvm.Disk
	}{
		{"file:/x,ioemu:hda,w", hvm.Disk{Path: "/x", Vdev: "hda", Access: "rw"}},
		{"phy:/dev/vg/lv,hda,w", hvm.Disk{Device: "/dev/vg/lv", Vdev: "hda", Access: "rw"}},
		{"tap:qcow2:/img,xvda,w", hvm.Disk{Path: "/img", Vdev: "xvda", Access: "rw", Format: "qcow2", Backend: "tap"}},
		{"tap:aio:/root/some.img,xvda,w", hvm.Disk{Path: "/root/some.img", Vdev: "xvda", Access: "rw", Backend: "tap"}},
		{",hdc:cdrom,r", hvm.Disk{Vdev: "hdc", Access: "ro", CDROM: true}},
		{"file:/x.iso,hdc:cdrom,r", hvm.Disk{Path: "/x.iso", Vdev: "hdc", Access: "ro", CDROM: true}},
		{"file:/x.iso,ioemu:hdc:cdrom,r", hvm.Disk{Path: "/x.iso", Vdev: "hdc", Access: "ro", CDROM: true}},
		{"iscsi:iqn.2001-04.com.example:disk,hda,w", hvm.Disk{Path: "iqn.2001-04.com.example:disk", Vdev: "hda", Access: "rw", Script: "block-iscsi"}},
		{"/dev/vg/lv,raw,hda,rw,backendtype=phy", hvm.Disk{Device: "/dev/vg/lv", Format: "raw", Vdev: "hda", Access: "rw"}},
		{"/img,qcow2,hdb,rw", hvm.Disk{Path: "/img", Format: "qcow2", Vdev: "hdb", Access: "rw"}},
		{"/root/boot.iso,raw,hdc,ro,devtype=cdrom", hvm.Disk{Path: "/root/boot.iso", Format: "raw", Vdev: "hdc", Access: "ro", CDROM: true}},
		{"format=qcow2, vdev=xvda, access=rw, backendtype=qdisk, target=/a,b c", hvm.Disk{Path: "/a,b c", Format: "qcow2", Vdev: "xvda", Access: "rw", Backend: "qdisk"}},
		{"vdev=hdc,access=ro,devtype=cdrom,format=empty", hvm.Disk{Vdev: "hdc", Access: "ro", CDROM: true}},
		{"vdev=hdd,cdrom,discard,target=/y.iso", hvm.Disk{Path: "/y.iso", Vdev: "hdd", CDROM: true, Discard: hvm.Bool(true)}},
		{"raw:/img,hda,w", hvm.Disk{Path: "/img", Format: "raw", Vdev: "hda", Access: "rw"}},
		{"/x,hda,w", hvm.Disk{Path: "/x", Vdev: "hda", Access: "rw"}},
	} {
		got, err := xlcfg.ParseDisk(tc.spec)
		if err != nil {
			t.Errorf("ParseDisk(%q): %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseDisk(%q) = %+v, want %+v", tc.spec, got, tc.want)
		}
		// The xl form reads back to the same disk.
		s, err := xlcfg.FormatDisk(got)
		if err != nil {
			t.Errorf("FormatDisk(%+v): %v", got, err)
			continue
		}
		if back, err := xlcfg.ParseDisk(s); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("ParseDisk(FormatDisk) = %+v, %v via %q; want %+v", back, err, s, got)
		}
	}
	for _, spec := range []string{"zip:/x,hda,w", "/x", "/x,raw", "/x,bogus,hda,w", "/x,hda,w,extra", ",hdc,r", "format=empty,vdev=hdc,target=/x", "vdev=hda,colour=red,target=/x", "/x,hda,q", "/x,raw,floppy,w", "vdev=hda,devtype=tape,target=/x", strings.Repeat("a", xlcfg.MaxSpecSize+1)} {
		if d, err := xlcfg.ParseDisk(spec); err == nil || !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ParseDisk(%.40q) = %+v, %v; want an error", spec, d, err)
		}
	}
}

func TestParseVif(t *testing.T) {
	n, unknown, err := xlcfg.ParseVif("type=ioemu, bridge=xenbr0 ,mac=00:16:3E:5C:2A:17, model=e1000,rate=10MB/s,mtu=1500,accel=x,ip=10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	want := hvm.NIC{MAC: "00:16:3e:5c:2a:17", Bridge: "xenbr0", Model: "e1000", Type: "ioemu", Rate: "10MB/s", MTU: hvm.Int(1500), IP: "10.0.0.2", Extra: map[string]string{"accel": "x"}}
	if !reflect.DeepEqual(n, want) || !reflect.DeepEqual(unknown, []string{"accel"}) {
		t.Errorf("ParseVif = %+v %v", n, unknown)
	}
	s, err := xlcfg.FormatVif(n)
	if err != nil {
		t.Fatal(err)
	}
	if back, _, err := xlcfg.ParseVif(s); err != nil || !reflect.DeepEqual(back, n) {
		t.Errorf("round trip via %q = %+v, %v", s, back, err)
	}
	for _, spec := range []string{"bridge", "mac=00:16:3e", "mac=zz:16:3e:00:00:01", "mtu=big", "=x"} {
		if _, _, err := xlcfg.ParseVif(spec); err == nil {
			t.Errorf("ParseVif(%q) did not fail", spec)
		}
	}
}

// TestRoundTrip imports every HVM config (corpus and seeds), renders xl,
// imports that again and expects the same guest; the xm rendering must
// import to a guest with the same hardware.
func TestRoundTrip(t *testing.T) {
	corpus, err := hvmtest.Corpus()
	if err != nil {
		t.Fatal(err)
	}
	seeds, _ := hvmtest.Seeds()
	n := 0
	for _, c := range append(corpus, seeds...) {
		data, err := os.ReadFile(c.CfgPath)
		if err != nil {
			t.Fatal(err)
		}
		g, _, err := xlcfg.Parse(c.Name, data)
		if errors.Is(err, xlcfg.ErrNotHVM) {
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		out, err := xlcfg.Render(g)
		if err != nil {
			t.Errorf("%s: Render: %v", c.Name, err)
			continue
		}
		back, ws, err := xlcfg.Parse(c.Name+".rendered", out)
		if err != nil {
			t.Errorf("%s: the rendered config does not parse: %v\n%s", c.Name, err, out)
			continue
		}
		for _, w := range ws {
			t.Errorf("%s: the rendered config gave a warning: %s", c.Name, w)
		}
		// xl has no place for xm's device_model (it ignores the key):
		// only the xm rendering keeps it.
		if back.DeviceModel.XMPath == "" {
			back.DeviceModel.XMPath = g.DeviceModel.XMPath
		}
		if !reflect.DeepEqual(g, back) {
			t.Errorf("%s: round trip changed the guest\nbefore: %+v\nafter:  %+v\n%s", c.Name, g, back, out)
		}
		n++
		if g.Firmware == "ovmf" || g.Disks != nil && g.Disks[0].Format == "qed" || g.Display.Spice != nil || g.DirectBoot != nil || g.Disks != nil && strings.HasPrefix(g.Disks[len(g.Disks)-1].Path, "rbd:") {
			continue // xm cannot express these
		}
		xm, err := xlcfg.RenderXM(g)
		if err != nil {
			t.Errorf("%s: RenderXM: %v", c.Name, err)
			continue
		}
		fromXM, _, err := xlcfg.Parse(c.Name+".xm", xm)
		if err != nil {
			t.Errorf("%s: the xm rendering does not parse: %v\n%s", c.Name, err, xm)
			continue
		}
		if len(fromXM.Disks) != len(g.Disks) || !reflect.DeepEqual(fromXM.Memory, g.Memory) || fromXM.EffectiveVCPUs() != g.EffectiveVCPUs() || fromXM.EffectiveMaxVCPUs() != g.EffectiveMaxVCPUs() {
			t.Errorf("%s: xm round trip changed the hardware\n%s", c.Name, xm)
		}
		for i := range g.Disks {
			a, b := g.Disks[i], fromXM.Disks[i]
			ka, sa := a.Source()
			kb, sb := b.Source()
			if ka != kb || sa != sb || a.Vdev != b.Vdev || a.CDROM != b.CDROM || a.ReadOnly() != b.ReadOnly() {
				t.Errorf("%s: xm disk %d: %+v became %+v", c.Name, i, a, b)
			}
		}
	}
	t.Logf("%d configs round-trip through xl", n)
}

func TestRenderRefusesInjection(t *testing.T) {
	g := &hvm.Guest{Name: "a", Memory: hvm.Int(64), Extra: map[string]string{"foo": "1\nvnc = 0"}}
	if _, err := xlcfg.Render(g); err == nil {
		t.Error("an extra value with a newline was written")
	}
	g.Extra = map[string]string{"memory": "1"}
	if _, err := xlcfg.Render(g); err == nil {
		t.Error("an extra key that shadows a modelled key was written")
	}
	g.Extra = nil
	g.Disks = []hvm.Disk{{Volume: "win", Vdev: "hda"}}
	if _, err := xlcfg.Render(g); err == nil || !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("an unresolved volume rendered: %v", err)
	}
	// Strings that need escapes survive.
	g.Disks = nil
	g.Display.VNCPasswd = `a"b'c\d`
	out, err := xlcfg.Render(g)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := xlcfg.Parse("x", out)
	if err != nil || back.Display.VNCPasswd != g.Display.VNCPasswd {
		t.Errorf("password %q came back as %q (%v)\n%s", g.Display.VNCPasswd.Value(), back.Display.VNCPasswd.Value(), err, out)
	}
}
