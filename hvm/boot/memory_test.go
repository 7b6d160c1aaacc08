package boot_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/libvirt"
	"github.com/strata-vm/strata/hvm/boot/qemu"
	"github.com/strata-vm/strata/hvm/boot/xl"
	"github.com/strata-vm/strata/storage"
)

// Only the qemu driver saves and resumes a guest's memory: libvirt and
// xl say so in Supports and refuse a start from a state file before they
// touch their toolstack (none runs here: the refusal needs none).
func TestOnlyQEMUResumesFromMemoryState(t *testing.T) {
	g := &hvm.Guest{Name: "win7"}
	if err := qemu.New(qemu.Config{}).Supports(g, boot.MemoryState); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	dir := t.TempDir()
	for _, d := range []boot.Driver{
		libvirt.New(libvirt.Config{Socket: filepath.Join(dir, "no-libvirtd.sock")}),
		xl.New(xl.Config{}),
	} {
		if err := d.Supports(g, boot.MemoryState); !errors.Is(err, storage.ErrNotSupported) || !strings.Contains(err.Error(), "without --memory") {
			t.Errorf("%s Supports memory-state: %v", d.Name(), err)
		}
		_, err := d.Start(context.Background(), &boot.Guest{ID: "0123456789abcdef", Def: g, Run: &boot.RunDir{Dir: dir}}, boot.StartOptions{FromState: filepath.Join(dir, "x.state")})
		if !errors.Is(err, storage.ErrNotSupported) {
			t.Errorf("%s start from a state file: %v (want not supported)", d.Name(), err)
		}
	}
}
