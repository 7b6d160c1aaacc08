package libvirt_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/hvm/lint"
)

const exposedDomain = `<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>open</name>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <serial type='tcp'>
      <source mode='bind' host='0.0.0.0' service='4555'/>
      <protocol type='telnet'/>
      <target port='0'/>
    </serial>
    <graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0'>
      <listen type='address' address='0.0.0.0'/>
    </graphics>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-monitor'/>
    <qemu:arg value='tcp:0.0.0.0:4444,server=on,wait=off'/>
  </qemu:commandline>
</domain>
`

// What libvirt XML can open to the network arrives in the guest where
// lint sees it: the VNC listen address, a TCP serial bound to every
// interface, and a monitor in qemu:commandline (dropped without a word
// before).
func TestLibvirtImportKeepsExposuresVisible(t *testing.T) {
	g, ws, err := libvirt.ParseXML("open.xml", []byte(exposedDomain))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range lint.Check(g) {
		if lint.IsExposure(f) {
			got[f.Field] = f.ID
		}
	}
	for f, id := range map[string]string{"display.vnclisten": lint.IDVNCExposed, "serial[0]": lint.IDChardevExposed, "extra.device_model_args": lint.IDDeviceModelArgsExposed} {
		if got[f] != id {
			t.Errorf("exposures %v: want %s at %s", got, id, f)
		}
	}
	if !strings.Contains(strings.Join(ws, "\n"), "qemu:commandline") {
		t.Errorf("no warning about qemu:commandline: %q", ws)
	}
	// xen:commandline is libvirt's form of xl's device_model_args.
	xen := strings.Replace(strings.Replace(exposedDomain, "qemu:", "xen:", -1), "domain/qemu/1.0", "domain/xen/1.0", 1)
	xen = strings.Replace(xen, "xmlns:qemu", "xmlns:xen", 1)
	g, _, err = libvirt.ParseXML("open.xml", []byte(xen))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Extra["device_model_args"], `"-monitor"`) {
		t.Errorf("xen:commandline not kept: %v", g.Extra)
	}
}

// A domain XML that does not parse never has a piece of a password in
// the error (encoding/xml quotes the entity it trips on).
func TestLibvirtParseErrorNeverQuotesPassword(t *testing.T) {
	for _, bad := range []string{
		`<domain type='kvm'><name>a</name><devices><graphics type='vnc' passwd='se&Zq9pw;'/></devices></domain>`,
		`<domain type='kvm'><name>a</name><devices><graphics type='vnc' passwd='Zq9pw<'/></devices></domain>`,
	} {
		_, _, err := libvirt.ParseXML("bad.xml", []byte(bad))
		if err == nil || strings.Contains(err.Error(), "Zq9pw") || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("error %v", err)
		}
	}
}
