package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// validateXML checks rendered domain XML with libvirt's own schema and
// test driver, independent readers of what strata wrote.
func validateXML(t *testing.T, xml string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "d.xml")
	if err := os.WriteFile(f, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "virt-xml-validate", f, "domain")
	storagetest.Cmd(t, "virsh", "-c", "test:///default", "define", f)
}

// A console off loopback guarded by a password is rendered on loopback
// when the password is left out, never open; stderr and the file say why,
// and --show-secrets renders it as defined.
func TestRenderWithoutPasswordKeepsConsoleOnLoopback(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	ok(t, h, "guest", "define", "w", "--vnc", "--vnclisten", "0.0.0.0", "--vncpasswd-file", writeFile(t, "s3cret-vnc\n"))
	r := runIn(t, h, nil, "guest", "render", "w", "--format", "xl")
	if r.code != 0 || !strings.Contains(r.stdout, `vnclisten = "127.0.0.1"`) || strings.Contains(r.stdout, `vnclisten = "0.0.0.0"`) || strings.Contains(r.stdout, "s3cret") {
		t.Fatalf("render xl without --show-secrets: exit %d\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.stderr, "0.0.0.0") || !strings.Contains(r.stderr, "--show-secrets") {
		t.Errorf("stderr does not say why the console moved: %s", r.stderr)
	}
	if !strings.Contains(r.stdout, "# the VNC console is on 127.0.0.1 here, not 0.0.0.0") {
		t.Errorf("the rendered file does not say why:\n%s", r.stdout)
	}
	// Read back by strata's xl parser, in another home: nothing exposed.
	other := filepath.Join(t.TempDir(), "other")
	ok(t, other, "guest", "import", writeFile(t, r.stdout), "--name", "back")
	if ids := lintIDs(t, other, "back"); strings.Contains(ids, "exposed") {
		t.Errorf("the rendered config is exposed: %s", ids)
	}
	if out := ok(t, h, "guest", "render", "w", "--format", "xl", "--show-secrets"); !contains(out, `vnclisten = "0.0.0.0"`, `vncpasswd = "s3cret-vnc"`) {
		t.Errorf("--show-secrets does not render the guest as defined:\n%s", out)
	}
	// SPICE too, and libvirt XML (where a SPICE console without a
	// password gets disable-ticketing: open).
	ok(t, h, "guest", "set", "w", "display.spice.enabled=true", "display.spice.host=0.0.0.0", "--secret-file", "spicepasswd="+writeFile(t, "s3cret-spice"))
	for _, hv := range []string{"xen", "kvm"} {
		r := runIn(t, h, nil, "guest", "render", "w", "--format", "libvirt", "--hypervisor", hv)
		if r.code != 0 || strings.Contains(r.stdout, `"0.0.0.0"`) || strings.Contains(r.stdout, "s3cret") || !strings.Contains(r.stdout, `<graphics type="spice"`) {
			t.Fatalf("render libvirt %s: exit %d\n%s%s", hv, r.code, r.stdout, r.stderr)
		}
		validateXML(t, r.stdout)
	}
	// The QEMU argv never holds the password, so it keeps the address
	// and password=on.
	if argv := ok(t, h, "guest", "render", "w", "--format", "qemu"); !strings.Contains(argv, "0.0.0.0:0,to=99,password=on") {
		t.Errorf("qemu argv:\n%s", argv)
	}
}

// A guest whose lint finds a control surface the network can reach is
// not rendered, in any format, without --allow-exposed (exit 7).
func TestRenderRefusesExposedWithoutAllowExposed(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	ok(t, h, "guest", "define", "w")
	for i, tc := range []struct {
		yaml string // what the definition adds
		want string
	}{
		{"serial: [\"tcp:0.0.0.0:4444,server,nowait\"]", "serial[0]"},
		{"serial: [pty, \"udp:127.0.0.1:9999@0.0.0.0:9998\"]", "serial[1]"},
		{"parallel: [\"telnet::2323,server\"]", "parallel[0]"},
		{"display: {vnclisten: 0.0.0.0}", "display.vnclisten"},
		{"display: {vnc: false, spice: {enabled: true, host: \"::\", port: 5930}}", "display.spice.host"},
		{"extra: {device_model_args: '[ \"-monitor\", \"telnet::4444,server,nowait\" ]'}", "extra.device_model_args"},
		{"extra: {device_model_args_hvm: '[ \"-qmp\", \"tcp:[::]:4445,server=on\" ]'}", "extra.device_model_args_hvm"},
		{"extra: {vfb: '[ \"vnc=1,vnclisten=0.0.0.0\" ]'}", "extra.vfb[0]"},
		{"extra: {serial: '\"tcp:0.0.0.0:4444,server\"'}", "extra.serial[0]"},
		{"device_model: {override: /tmp/qemu-system-i386}", "device_model.override"},
	} {
		name := fmt.Sprintf("e%d", i)
		ok(t, h, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: "+name+"\nmemory: 256\n"+tc.yaml+"\n"))
		for _, format := range []string{"xl", "xm", "libvirt", "qemu"} {
			fails(t, h, 7, []string{tc.want, "--allow-exposed"}, "guest", "render", name, "--format", format)
		}
		if out := ok(t, h, "guest", "render", name, "--format", "xl", "--allow-exposed"); len(out) == 0 {
			t.Errorf("%s: --allow-exposed rendered nothing", tc.yaml)
		}
	}
	// The same guest without the exposure renders.
	ok(t, h, "guest", "render", "w", "--format", "xl")
	// A libvirt import keeps what the XML exposes, and render refuses it.
	xml := `<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>open</name><memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/><protocol type='raw'/><target port='0'/></serial>
  </devices>
  <qemu:commandline><qemu:arg value='-gdb'/><qemu:arg value='tcp::1234'/></qemu:commandline>
</domain>`
	ok(t, h, "guest", "import", "--libvirt", writeFile(t, xml))
	fails(t, h, 7, []string{"serial[0]", "extra.device_model_args", "-gdb"}, "guest", "render", "open", "--format", "libvirt", "--hypervisor", "kvm")
	r := runIn(t, h, nil, "guest", "render", "open", "--format", "libvirt", "--hypervisor", "kvm", "--allow-exposed")
	if r.code != 0 || !strings.Contains(r.stdout, `host="0.0.0.0"`) {
		t.Fatalf("render --allow-exposed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	validateXML(t, r.stdout)
}
