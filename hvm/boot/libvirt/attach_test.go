package libvirt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/libvirt"
	"github.com/strata-vm/strata/storage"
)

// liveDomain is the running domain's XML as libvirt has it.
func (e *env) liveDomain(name string) *libvirtxml.Domain {
	e.t.Helper()
	l := e.raw()
	dm, err := l.DomainLookupByName(name)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := l.DomainGetXMLDesc(dm, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(s); err != nil {
		e.t.Fatal(err)
	}
	return &x
}

func (e *env) liveTargets(name string) []string {
	var out []string
	for _, k := range e.liveDomain(name).Devices.Disks {
		out = append(out, k.Target.Dev+"/"+k.Target.Bus)
	}
	return out
}

// A disk attached through libvirt shows in the live domain as a virtio
// disk; the boot sector cannot grant its unplug, so detach says so and
// the disk stays; IDE is refused before libvirt is asked.
func TestLibvirtHotplugDisk(t *testing.T) {
	e := newEnv(t)
	// libvirt waits 5 s for the guest itself; strata adds little.
	e.d = libvirt.New(libvirt.Config{Socket: e.sock, UnplugTimeout: time.Second})
	g := e.guest()
	c := ctx(t)
	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(e.dir, "extra.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.d.AttachDisk(c, g, hvm.Disk{Path: img, Vdev: "xvdb", Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.liveTargets(g.Def.Name), " "); !strings.Contains(got, "vdb/virtio") {
		t.Fatalf("live disks after attach: %s", got)
	}
	if err := e.d.AttachDisk(c, g, hvm.Disk{Path: img, Vdev: "hdb", Format: "raw"}); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("IDE hot-plug: %v", err)
	}
	if err := e.d.DetachDisk(c, g, "xvdc"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("detach of a disk the domain lacks: %v", err)
	}
	err := e.d.DetachDisk(c, g, "xvdb")
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "did not let disk xvdb go") {
		t.Fatalf("detach from a boot sector: %v", err)
	}
	if got := strings.Join(e.liveTargets(g.Def.Name), " "); !strings.Contains(got, "vdb/virtio") {
		t.Fatalf("the disk left although the guest kept it: %s", got)
	}
}

// A NIC on a bridge the host lacks is refused by libvirt with its reason,
// and leaves the domain without it; a MAC the domain lacks is not found.
func TestLibvirtHotplugNICRefusals(t *testing.T) {
	e := newEnv(t)
	g := e.guest()
	c := ctx(t)
	if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	n := hvm.NIC{MAC: "52:54:00:aa:bb:09", Bridge: "strata-nosuch0", Model: "e1000"}
	err := e.d.AttachNIC(c, g, n)
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "strata-nosuch0") {
		t.Fatalf("attach on a missing bridge: %v", err)
	}
	if nics := e.liveDomain(g.Def.Name).Devices.Interfaces; len(nics) != 0 {
		t.Fatalf("the refused NIC is in the domain: %+v", nics)
	}
	if err := e.d.DetachNIC(c, g, n.MAC); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("detach of a NIC the domain lacks: %v", err)
	}
	noACPI := *g.Def
	noACPI.Features.ACPI = hvm.Bool(false)
	if err := e.d.Supports(&noACPI, boot.AttachNIC); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("Supports attach-nic without ACPI: %v", err)
	}
}
