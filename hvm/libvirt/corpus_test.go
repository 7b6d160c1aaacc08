package libvirt_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
	"libvirt.org/go/libvirtxml"
)

// minCorpusPass is how many HVM configs of the corpus must convert to XML
// that means what libvirt's own converter produced. Raise it, never lower
// it.
const minCorpusPass = 25

// pvConfigs are the corpus configs of PV or PVH guests, which strata
// refuses.
var pvConfigs = map[string]bool{
	"xlconfigdata/test-channel-pty":                 true,
	"xlconfigdata/test-max-eventchannels":           true,
	"xlconfigdata/test-paravirt-cmdline-extra-root": true,
	"xlconfigdata/test-paravirt-cmdline":            true,
	"xlconfigdata/test-paravirt-maxvcpus":           true,
	"xlconfigdata/test-pvh-type":                    true,
	"xlconfigdata/test-usbctrl":                     true,
	"xmconfigdata/test-disk-drv-blktap-raw":         true,
}

// invalidNames are corpus guests whose names strata's catalog refuses.
var invalidNames = map[string]bool{"xmconfigdata/test-escape-paths": true}

func load(t *testing.T, c hvmtest.Config) (*hvm.Guest, error) {
	t.Helper()
	data, err := os.ReadFile(c.CfgPath)
	if err != nil {
		t.Fatal(err)
	}
	g, _, err := xlcfg.Parse(c.Name+".cfg", data)
	if err != nil {
		return nil, err
	}
	if err := g.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	err = g.Validate()
	switch {
	case invalidNames[c.Name]:
		if err == nil || !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "name:") {
			t.Errorf("%s: Validate = %v, want an error about the name", c.Name, err)
		}
	case err != nil:
		t.Errorf("%s: Validate: %v", c.Name, err)
	}
	return g, nil
}

// TestCorpus imports every corpus config, renders Xen domain XML and
// compares its meaning with the XML libvirt produced from the same config.
func TestCorpus(t *testing.T) {
	configs, err := hvmtest.Corpus()
	if err != nil {
		t.Fatal(err)
	}
	pass, hvmCount, withXML := 0, 0, 0
	for _, c := range configs {
		g, err := load(t, c)
		if pvConfigs[c.Name] {
			if err == nil || !errors.Is(err, xlcfg.ErrNotHVM) || !errors.Is(err, storage.ErrNotSupported) {
				t.Errorf("%s: a PV config gave %v, want an ErrNotHVM error", c.Name, err)
			} else if !strings.Contains(err.Error(), "HVM guests only") && !strings.Contains(err.Error(), "does not manage") {
				t.Errorf("%s: the error %q does not say why", c.Name, err)
			}
			continue
		}
		hvmCount++
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if c.XMLPath == "" {
			continue
		}
		withXML++
		out, err := libvirt.Render(g, libvirt.Xen)
		if err != nil {
			t.Errorf("%s: Render: %v", c.Name, err)
			continue
		}
		want, err := os.ReadFile(c.XMLPath)
		if err != nil {
			t.Fatal(err)
		}
		if diff := compare(t, want, out); diff != "" {
			t.Errorf("%s: rendered XML differs from libvirt's in meaning:\n%s\nrendered:\n%s", c.Name, diff, out)
			continue
		}
		pass++
	}
	t.Logf("corpus: %d of %d HVM configs with a libvirt XML render to XML that means the same (%d HVM configs imported, %d PV configs refused, %d configs in all)", pass, withXML, hvmCount, len(pvConfigs), len(configs))
	if pass < minCorpusPass {
		t.Errorf("only %d corpus configs pass, want at least %d", pass, minCorpusPass)
	}
}

// TestParseXML reads every HVM corpus XML back into a guest, renders it
// again and checks the meaning survives.
func TestParseXML(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(hvmtest.Dir(), "libvirt-xenconfig", "*", "*.xml"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		g, _, err := libvirt.ParseXML(filepath.Base(f), data)
		if !strings.Contains(string(data), ">hvm</type>") {
			if err == nil || !errors.Is(err, storage.ErrNotSupported) {
				t.Errorf("%s: a PV domain gave %v, want a not-supported error", f, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		out, err := libvirt.Render(g, libvirt.Xen)
		if err != nil {
			t.Errorf("%s: Render: %v", f, err)
			continue
		}
		if diff := compare(t, data, out); diff != "" {
			t.Errorf("%s: XML → guest → XML changed the meaning:\n%s", f, diff)
			continue
		}
		n++
	}
	t.Logf("ParseXML: %d HVM domain XML files round-trip", n)
}

// TestValidXML checks that everything rendered, for Xen and KVM, is valid
// domain XML and that libvirt defines it (test driver, no daemon).
func TestValidXML(t *testing.T) {
	for _, tool := range []string{"virt-xml-validate", "virsh"} {
		if _, err := run.Look(tool); err != nil {
			t.Skipf("cannot check XML with libvirt's tools: %v", err)
		}
	}
	configs, _ := hvmtest.Corpus()
	seeds, _ := hvmtest.Seeds()
	dir := t.TempDir()
	var paths []string
	for _, c := range append(configs, seeds...) {
		if pvConfigs[c.Name] {
			continue
		}
		g, err := load(t, c)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if g.Name == "test" { // the test driver already has a domain "test"
			g.Name = "test-guest"
		}
		for _, hv := range []libvirt.Hypervisor{libvirt.Xen, libvirt.KVM} {
			out, err := libvirt.Render(g, hv)
			if err != nil {
				t.Errorf("%s: Render %s: %v", c.Name, hv, err)
				continue
			}
			p := filepath.Join(dir, fmt.Sprintf("%s-%s.xml", strings.ReplaceAll(c.Name, "/", "-"), hv))
			if err := os.WriteFile(p, out, 0o644); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range paths {
		if out, err := run.Output(ctx, "virt-xml-validate", p, "domain"); err != nil {
			data, _ := os.ReadFile(p)
			t.Errorf("%s does not validate: %v %s\n%s", filepath.Base(p), err, out, data)
			continue
		}
		if _, err := run.Output(ctx, "virsh", "-q", "-c", "test:///default", "define", p); err != nil {
			t.Errorf("virsh define %s: %v", filepath.Base(p), err)
		}
	}
	t.Logf("%d domain XML files validated and defined", len(paths))
}

// meaning is what a domain XML says about the guest, normalised.
type meaning struct {
	Name, UUID                    string
	MemoryKiB, CurrentKiB         uint
	VCPU, VCPUCurrent             uint
	OSType                        string
	Boot                          []string
	Features                      []string
	Disks                         []string
	NICs                          []string
	Graphics                      []string
	Inputs                        []string
	Serials                       []string
	Sounds                        []string
	OnPoweroff, OnReboot, OnCrash string
}

func kib(v uint, unit string) uint {
	switch unit {
	case "", "KiB", "k":
		return v
	case "MiB", "M":
		return v * 1024
	}
	return v
}

func meaningOf(d *libvirtxml.Domain) meaning {
	m := meaning{Name: d.Name, UUID: d.UUID, OnPoweroff: d.OnPoweroff, OnReboot: d.OnReboot, OnCrash: d.OnCrash}
	if d.Memory != nil {
		m.MemoryKiB = kib(d.Memory.Value, d.Memory.Unit)
	}
	m.CurrentKiB = m.MemoryKiB
	if d.CurrentMemory != nil {
		m.CurrentKiB = kib(d.CurrentMemory.Value, d.CurrentMemory.Unit)
	}
	if d.VCPU != nil {
		m.VCPU, m.VCPUCurrent = d.VCPU.Value, d.VCPU.Current
		if m.VCPUCurrent == 0 {
			m.VCPUCurrent = m.VCPU
		}
	}
	if d.OS != nil && d.OS.Type != nil {
		m.OSType = d.OS.Type.Type
		for _, b := range d.OS.BootDevices {
			m.Boot = append(m.Boot, b.Dev)
		}
	}
	if f := d.Features; f != nil {
		if f.ACPI != nil {
			m.Features = append(m.Features, "acpi")
		}
		if f.APIC != nil {
			m.Features = append(m.Features, "apic")
		}
		if f.PAE != nil {
			m.Features = append(m.Features, "pae")
		}
		if f.HAP != nil && f.HAP.State == "off" {
			m.Features = append(m.Features, "hap=off")
		}
		if f.Viridian != nil {
			m.Features = append(m.Features, "viridian")
		}
	}
	dev := d.Devices
	if dev == nil {
		return m
	}
	for _, k := range dev.Disks {
		typ, src := "file", ""
		if s := k.Source; s != nil {
			switch {
			case s.File != nil:
				typ, src = "file", s.File.File
			case s.Block != nil:
				typ, src = "block", s.Block.Dev
			case s.Network != nil:
				typ, src = "network", s.Network.Protocol+":"+s.Network.Name
				for _, h := range s.Network.Hosts {
					src += "," + h.Name + ":" + h.Port
				}
			}
		}
		if src == "" {
			typ = "(empty)" // libvirt writes type block or file for an empty drive
		}
		drv := "raw"
		if k.Driver != nil && k.Driver.Type != "" {
			drv = k.Driver.Type
		}
		target := ""
		if k.Target != nil {
			target = k.Target.Dev
		}
		m.Disks = append(m.Disks, fmt.Sprintf("%s %s src=%q target=%s format=%s readonly=%v", typ, k.Device, src, target, drv, k.ReadOnly != nil))
	}
	for _, n := range dev.Interfaces {
		s := ""
		if n.MAC != nil {
			s += "mac=" + strings.ToLower(n.MAC.Address)
		}
		if n.Source != nil && n.Source.Bridge != nil {
			s += " bridge=" + n.Source.Bridge.Bridge
		}
		if n.Model != nil {
			s += " model=" + n.Model.Type
		}
		if n.Script != nil {
			s += " script=" + n.Script.Path
		}
		m.NICs = append(m.NICs, s)
	}
	for _, gr := range dev.Graphics {
		switch {
		case gr.VNC != nil:
			v := gr.VNC
			listen := v.Listen
			for _, l := range v.Listeners {
				if l.Address != nil && l.Address.Address != "" {
					listen = l.Address.Address
				}
			}
			if listen == "" {
				listen = hvm.DefaultVNCListen // what libvirt's default vnc_listen means
			}
			m.Graphics = append(m.Graphics, fmt.Sprintf("vnc listen=%s port=%d autoport=%s passwd=%q", listen, v.Port, v.AutoPort, v.Passwd))
		case gr.Spice != nil:
			s := gr.Spice
			m.Graphics = append(m.Graphics, fmt.Sprintf("spice listen=%s port=%d tls=%d autoport=%s passwd=%q", s.Listen, s.Port, s.TLSPort, s.AutoPort, s.Passwd))
		case gr.SDL != nil:
			m.Graphics = append(m.Graphics, "sdl")
		}
	}
	for _, in := range dev.Inputs {
		if in.Bus == "usb" { // ps2 mouse and keyboard are implicit
			m.Inputs = append(m.Inputs, in.Type)
		}
	}
	for _, s := range dev.Serials {
		m.Serials = append(m.Serials, chardev(s.Source))
	}
	for _, s := range dev.Sounds {
		m.Sounds = append(m.Sounds, s.Model)
	}
	return m
}

func chardev(s *libvirtxml.DomainChardevSource) string {
	switch {
	case s == nil:
		return "none"
	case s.Pty != nil:
		return "pty"
	case s.Null != nil:
		return "null"
	case s.TCP != nil:
		return fmt.Sprintf("tcp %s %s:%s", s.TCP.Mode, s.TCP.Host, s.TCP.Service)
	case s.UDP != nil:
		return fmt.Sprintf("udp %s:%s@%s:%s", s.UDP.ConnectHost, s.UDP.ConnectService, s.UDP.BindHost, s.UDP.BindService)
	case s.File != nil:
		return "file " + s.File.Path
	case s.Dev != nil:
		return "dev " + s.Dev.Path
	}
	return "other"
}

func compare(t *testing.T, want, got []byte) string {
	t.Helper()
	var wd, gd libvirtxml.Domain
	if err := wd.Unmarshal(string(want)); err != nil {
		return "cannot parse the expected XML: " + err.Error()
	}
	if err := gd.Unmarshal(string(got)); err != nil {
		return "cannot parse the rendered XML: " + err.Error()
	}
	wm, gm := meaningOf(&wd), meaningOf(&gd)
	if reflect.DeepEqual(wm, gm) {
		return ""
	}
	var b strings.Builder
	wv, gv := reflect.ValueOf(wm), reflect.ValueOf(gm)
	for i := range wv.NumField() {
		if !reflect.DeepEqual(wv.Field(i).Interface(), gv.Field(i).Interface()) {
			fmt.Fprintf(&b, "  %s: libvirt %v, strata %v\n", wv.Type().Field(i).Name, wv.Field(i).Interface(), gv.Field(i).Interface())
		}
	}
	return b.String()
}
