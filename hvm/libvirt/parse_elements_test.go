package libvirt_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/libvirt"
	"github.com/strata-vm/strata/storage"
)

// domainWith wraps elements in a minimal HVM domain.
func domainWith(elements string) []byte {
	return []byte("<domain type='xen'><name>e</name><os><type>hvm</type>" +
		"<boot dev='fd'/></os>" + elements + "</domain>")
}

// Each element parser shows its edges through ParseXML: what libvirt's
// two spellings of one thing become, and which of them wins.
func TestParseXMLElementEdges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		elements string
		check    func(*hvm.Guest) bool
	}{
		{"current memory below memory makes memory the ceiling",
			"<memory unit='MiB'>1024</memory><currentMemory unit='MiB'>512</currentMemory>",
			func(g *hvm.Guest) bool { return *g.Memory == 512 && g.MaxMem != nil && *g.MaxMem == 1024 }},
		{"equal current memory and memory leave no ceiling",
			"<memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory>",
			func(g *hvm.Guest) bool { return *g.Memory == 512 && g.MaxMem == nil }},
		{"vcpu current below the count starts fewer",
			"<vcpu current='1'>4</vcpu>",
			func(g *hvm.Guest) bool { return *g.VCPUs == 1 && *g.MaxVCPUs == 4 }},
		{"vnc listener address wins over the listen attribute",
			"<devices><graphics type='vnc' port='5903' listen='0.0.0.0'><listen type='address' address='127.0.0.1'/></graphics></devices>",
			func(g *hvm.Guest) bool {
				d := g.Display
				return d.VNCListen == "127.0.0.1" && !*d.VNCUnused && *d.VNCDisplay == 3
			}},
		{"spice alone turns vnc off",
			"<devices><graphics type='spice' autoport='yes'/></devices>",
			func(g *hvm.Guest) bool { return !*g.Display.VNC && g.Display.Spice.Port == nil }},
		{"no graphics turns vnc off",
			"",
			func(g *hvm.Guest) bool { return g.Display.VNC != nil && !*g.Display.VNC }},
		{"variable clock on local time keeps the offset",
			"<clock offset='variable' basis='localtime' adjustment='3600'/>",
			func(g *hvm.Guest) bool { return *g.Localtime && *g.RTCTimeOffset == 3600 }},
		{"the guest agent channel is a feature, not a dropped channel",
			"<devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>",
			func(g *hvm.Guest) bool { return g.Features.GuestAgent != nil && *g.Features.GuestAgent }},
	} {
		g, _, err := libvirt.ParseXML("e.xml", domainWith(tc.elements))
		if err != nil || !tc.check(g) {
			t.Errorf("%s: got %+v, %v", tc.name, g, err)
		}
	}
}

// Warnings come in the order of the element families, and a problem in
// one element stops the parse with an invalid-argument error.
func TestParseXMLWarningsInElementOrder(t *testing.T) {
	_, ws, err := libvirt.ParseXML("e.xml", domainWith("<cpu mode='host-passthrough'/><devices><watchdog model='i6300esb'/></devices>"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"boot device", "<cpu>", "watchdog"}
	if len(ws) != len(want) {
		t.Fatalf("warnings %q, want %d", ws, len(want))
	}
	for i, w := range want {
		if !strings.Contains(ws[i], w) || !strings.HasPrefix(ws[i], "e.xml: ") {
			t.Errorf("warning %d = %q, want one about %s", i, ws[i], w)
		}
	}
	for _, bad := range []string{
		"<clock offset='variable' adjustment='soon'/>",
		"<memory unit='furlong'>1</memory>",
		"<devices><serial type='spiceport'><source channel='x'/></serial></devices>",
	} {
		g, _, err := libvirt.ParseXML("e.xml", domainWith(bad))
		if g != nil || !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: got %v, %v; want an invalid-argument error", bad, g, err)
		}
	}
}
