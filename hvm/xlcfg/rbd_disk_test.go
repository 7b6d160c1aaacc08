package xlcfg_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/xlcfg"
)

// TestFormatRBDDiskForQdisk: a disk on an rbd pool's volume is written
// for xl as target=rbd:POOL/IMAGE with backendtype=qdisk (only QEMU's
// backend opens RBD images), parses back the same, and is refused for
// the kernel backends and for xm.
func TestFormatRBDDiskForQdisk(t *testing.T) {
	d := hvm.Disk{Path: "rbd:strata/ns1/strata-0123456789abcdef:conf=/etc/ceph/ceph.conf", Vdev: "xvda", Format: "raw"}
	spec, err := xlcfg.FormatDisk(d)
	if err != nil {
		t.Fatal(err)
	}
	if want := "format=raw,vdev=xvda,backendtype=qdisk,target=rbd:strata/ns1/strata-0123456789abcdef:conf=/etc/ceph/ceph.conf"; spec != want {
		t.Fatalf("spec %q, want %q", spec, want)
	}
	back, err := xlcfg.ParseDisk(spec)
	if err != nil || back.Path != d.Path || back.Backend != "qdisk" {
		t.Fatalf("parsed back %+v %v", back, err)
	}
	d.Backend = "phy"
	if _, err := xlcfg.FormatDisk(d); err == nil || !strings.Contains(err.Error(), "qdisk") {
		t.Fatalf("rbd with backend phy: %v", err)
	}
	d.Backend = ""
	if _, err := xlcfg.FormatDiskXM(d); err == nil || !strings.Contains(err.Error(), "xl") {
		t.Fatalf("rbd in xm form: %v", err)
	}
}
