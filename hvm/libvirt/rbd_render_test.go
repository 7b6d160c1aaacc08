package libvirt_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/libvirt"
)

// TestRenderRBDVolumeAsNetworkDisk: a disk on an rbd pool's volume
// (storage/rbd's path) renders as a network disk naming POOL/NS/IMAGE,
// the ceph.conf as <config file> (the monitors, and the keyring, are
// read from it), a cephx client as <auth> with a secret reference and no
// key; monitors given in the path render as hosts; the XML is valid and
// parses back to the same path.
func TestRenderRBDVolumeAsNetworkDisk(t *testing.T) {
	path := `rbd:strata/ns1/strata-0123456789abcdef:id=strata:conf=/etc/ceph/x\:y.conf`
	g := &hvm.Guest{Name: "r", UUID: "8a3e7a5c-2f1d-4c59-9b7e-0d5a1f3c2b11", Memory: hvm.Int(256), VCPUs: hvm.Int(1),
		Disks: []hvm.Disk{{Path: path, Vdev: "xvda", Format: "raw"}, {Path: `rbd:p/img:mon_host=10.0.0.1\:3300\;10.0.0.2`, Vdev: "xvdb", Format: "raw"}}}
	out, err := libvirt.Render(g, libvirt.KVM)
	if err != nil {
		t.Fatal(err)
	}
	xml := string(out)
	for _, w := range []string{`<disk type="network" device="disk">`, `<source protocol="rbd" name="strata/ns1/strata-0123456789abcdef">`,
		`<config file="/etc/ceph/x:y.conf">`, `<auth username="strata">`, `<secret type="ceph" usage="client.strata secret">`,
		`<source protocol="rbd" name="p/img">`, `<host name="10.0.0.1" port="3300">`, `<host name="10.0.0.2">`} {
		if !strings.Contains(xml, w) {
			t.Errorf("XML lacks %s:\n%s", w, xml)
		}
	}
	if strings.Contains(xml, "key") {
		t.Errorf("the XML carries a key:\n%s", xml)
	}
	back, _, err := libvirt.ParseXML("r.xml", out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Disks[0].Path != path {
		t.Errorf("parsed back as %q, want %q", back.Disks[0].Path, path)
	}
	if _, err := exec.LookPath("virt-xml-validate"); err == nil {
		f := filepath.Join(t.TempDir(), "r.xml")
		if err := os.WriteFile(f, out, 0o600); err != nil {
			t.Fatal(err)
		}
		if o, err := exec.Command("virt-xml-validate", f, "domain").CombinedOutput(); err != nil {
			t.Fatalf("virt-xml-validate: %v\n%s\n%s", err, o, out)
		}
	}
}
