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

// features.guest_agent renders the agent's virtio channel for KVM (a unix
// socket whose path libvirt chooses), which libvirt validates and defines,
// and reads back as the flag; for Xen (no virtio-serial) nothing.
func TestGuestAgentRendersTheAgentChannel(t *testing.T) {
	g := &hvm.Guest{Name: "qa-agent", Memory: hvm.Int(256), Boot: "c", OS: "linux",
		Features: hvm.Features{GuestAgent: hvm.Bool(true)},
		Disks:    []hvm.Disk{{Path: "/img.qcow2", Vdev: "xvda", Format: "qcow2"}}}
	kvm, err := libvirt.Render(g, libvirt.KVM)
	if err != nil {
		t.Fatal(err)
	}
	want := `<channel type="unix">` + "\n" + `      <target type="virtio" name="org.qemu.guest_agent.0"></target>` + "\n" + `    </channel>`
	if !strings.Contains(string(kvm), want) {
		t.Fatalf("KVM XML lacks the agent channel %s:\n%s", want, kvm)
	}
	xen, err := libvirt.Render(g, libvirt.Xen)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(xen), "channel") {
		t.Fatalf("Xen XML has a channel:\n%s", xen)
	}
	back, warns, err := libvirt.ParseXML("qa-agent.xml", kvm)
	if err != nil {
		t.Fatal(err)
	}
	if !back.HasGuestAgent() || len(warns) != 0 {
		t.Fatalf("read back: guest_agent %v, warnings %v", back.Features.GuestAgent, warns)
	}
	g.Features.GuestAgent = nil
	if plain, _ := libvirt.Render(g, libvirt.KVM); strings.Contains(string(plain), "channel") {
		t.Fatalf("a guest without the flag has a channel:\n%s", plain)
	}

	for _, tool := range []string{"virt-xml-validate", "virsh"} {
		if _, err := run.Look(tool); err != nil {
			t.Skipf("cannot check XML with libvirt's tools: %v", err)
		}
	}
	p := filepath.Join(t.TempDir(), "qa-agent.xml")
	if err := os.WriteFile(p, kvm, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := run.Output(ctx, "virt-xml-validate", p, "domain"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := run.Output(ctx, "virsh", "-q", "-c", "test:///default", "define", p); err != nil {
		t.Fatalf("virsh define: %v", err)
	}
}
