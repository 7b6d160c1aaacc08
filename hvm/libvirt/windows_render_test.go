package libvirt_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/storage/run"
)

func windowsGuest() *hvm.Guest {
	return &hvm.Guest{Name: "win", UUID: "8a3e7a5c-2f1d-4c59-9b7e-0d5a1f3c2b11", Memory: hvm.Int(512), Localtime: hvm.Bool(true),
		Features: hvm.Features{Viridian: &hvm.Viridian{Enabled: true}, HPET: hvm.Bool(false)}}
}

// A Windows guest's clock is local time on Xen and KVM; rtc_timeoffset is
// a variable clock with that adjustment; viridian is <viridian/> for Xen
// and for KVM the Hyper-V enlightenments and clock virt-install gives
// Windows; every rendering is valid domain XML and reads back the same.
func TestRenderGivesWindowsItsClockAndEnlightenments(t *testing.T) {
	g := windowsGuest()
	var files []string
	dir := t.TempDir()
	check := func(name string, hv libvirt.Hypervisor, g *hvm.Guest, want, not []string) {
		t.Helper()
		out, err := libvirt.Render(g, hv)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s := string(out)
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: no %s in\n%s", name, w, s)
			}
		}
		for _, n := range not {
			if strings.Contains(s, n) {
				t.Errorf("%s: %s in\n%s", name, n, s)
			}
		}
		back, _, err := libvirt.ParseXML(name, out)
		if err != nil {
			t.Fatalf("%s: read back: %v", name, err)
		}
		if hvm.Val(back.Localtime, false) != hvm.Val(g.Localtime, false) || hvm.Val(back.RTCTimeOffset, 0) != hvm.Val(g.RTCTimeOffset, 0) || back.Extra["localtime"] != "" {
			t.Errorf("%s: read back localtime %v offset %v extra %v", name, back.Localtime, back.RTCTimeOffset, back.Extra)
		}
		p := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	check("xen-localtime", libvirt.Xen, g, []string{`<clock offset="localtime">`, `<viridian></viridian>`, `<timer name="hpet" present="no">`}, []string{"hypervclock", "<hyperv"})
	check("kvm-localtime", libvirt.KVM, g, []string{`<clock offset="localtime">`, `<relaxed state="on">`, `<vapic state="on">`, `<spinlocks state="on" retries="8191">`, `<timer name="hypervclock" present="yes">`}, []string{"<viridian"})
	g.RTCTimeOffset = hvm.Int(3600)
	check("xen-variable", libvirt.Xen, g, []string{`<clock offset="variable" basis="localtime" adjustment="3600">`}, nil)
	g.Localtime = nil
	g.Features.Viridian.Groups = []string{"base", "freq", "stimer", "hcall_ipi"}
	check("kvm-variable-groups", libvirt.KVM, g, []string{`<clock offset="variable" basis="utc" adjustment="3600">`, `<frequencies state="on">`, `<synic state="on">`, `<stimer state="on">`, `<vpindex state="on">`, `<ipi state="on">`}, nil)
	g.Features.Viridian.Groups = []string{"all"}
	check("kvm-all-groups", libvirt.KVM, g, []string{`<tlbflush state="on">`, `<ipi state="on">`, `<stimer state="on">`, `<frequencies state="on">`}, nil)
	// A guest that says nothing about its clock renders none, as before.
	plain := &hvm.Guest{Name: "lin", Memory: hvm.Int(64)}
	check("kvm-plain", libvirt.KVM, plain, nil, []string{"<clock"})

	if _, err := run.Look("virt-xml-validate"); err != nil {
		t.Skipf("cannot validate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, p := range files {
		if out, err := run.Output(ctx, "virt-xml-validate", p, "domain"); err != nil {
			data, _ := os.ReadFile(p)
			t.Errorf("%s does not validate: %v %s\n%s", filepath.Base(p), err, out, data)
		}
	}
}
