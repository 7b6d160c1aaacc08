package qemu_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/qemu"
)

// TestArgvRBDDiskUsesTheRBDDriver: an rbd pool's volume is handed to
// QEMU as the rbd block driver's options (pool, namespace, image, conf,
// user; commas in values doubled), not as a legacy filename; an rbd:
// filename with other options, written by hand, passes as it is.
func TestArgvRBDDiskUsesTheRBDDriver(t *testing.T) {
	g := &hvm.Guest{Name: "r", Memory: hvm.Int(64), Boot: "c", Disks: []hvm.Disk{
		{Path: "rbd:strata/ns1/strata-0123456789abcdef:id=strata:conf=/etc/ceph/a,b.conf", Vdev: "hda", Format: "raw"},
		{Path: `rbd:p/img:mon_host=10.0.0.1\:3300`, Vdev: "hdb", Format: "raw"},
	}}
	if err := g.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	argv, err := qemu.Argv(g, qemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(argv, " ")
	for _, w := range []string{
		"file.driver=rbd,file.pool=strata,file.namespace=ns1,file.image=strata-0123456789abcdef,file.conf=/etc/ceph/a,,b.conf,file.user=strata,format=raw",
		`file=rbd:p/img:mon_host=10.0.0.1\:3300,format=raw`,
	} {
		if !strings.Contains(line, w) {
			t.Errorf("argv lacks %s:\n%s", w, line)
		}
	}
}
