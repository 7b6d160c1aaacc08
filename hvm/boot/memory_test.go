package boot_test

import (
	"context"
	"errors"
	"os"
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

// Every driver saves and resumes a guest's memory (qemu by QMP migrate,
// libvirt by its save and restore, xl by xl save and restore); libvirt
// and xl save it themselves (boot.StateSaver). A start from a state file
// the driver did not write (here QEMU's stream given to libvirt and xl)
// is refused before the toolstack is touched (none runs here: libvirt's
// socket does not exist, and xl would fail without Xen).
func TestEveryDriverResumesFromItsOwnMemoryStateOnly(t *testing.T) {
	g := &hvm.Guest{Name: "win7"}
	dir := t.TempDir()
	lv := libvirt.New(libvirt.Config{Socket: filepath.Join(dir, "no-libvirtd.sock")})
	x := xl.New(xl.Config{})
	for _, d := range []boot.Driver{qemu.New(qemu.Config{}), lv, x} {
		if err := d.Supports(g, boot.MemoryState); err != nil {
			t.Errorf("%s Supports memory-state: %v", d.Name(), err)
		}
	}
	for _, d := range []boot.Driver{lv, x} {
		if _, ok := d.(boot.StateSaver); !ok {
			t.Errorf("%s saves memory itself but is no StateSaver", d.Name())
		}
	}
	state := filepath.Join(dir, "x.state")
	if err := os.WriteFile(state, []byte("QEVM\x00\x00\x00\x03rest of a QEMU stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []boot.Driver{lv, x} {
		_, err := d.Start(context.Background(), &boot.Guest{ID: "0123456789abcdef", Def: g, Run: &boot.RunDir{Dir: dir}}, boot.StartOptions{FromState: state})
		if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "not a complete state of the "+d.Name()+" driver") {
			t.Errorf("%s start from QEMU's state file: %v", d.Name(), err)
		}
	}
}

// CheckState refuses what cannot be resumed from, saying why, and takes
// a complete state file of the driver that wrote it.
func TestCheckStateRefusesWhatCannotBeResumedFrom(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.state")
	os.WriteFile(good, []byte("LibvirtQemudSave and the rest"), 0o600)
	part := filepath.Join(dir, "part.state")
	os.WriteFile(part, []byte("LibvirtQemudPart and the rest"), 0o600)
	link := filepath.Join(dir, "link.state")
	os.Symlink(good, link)
	for _, c := range []struct {
		driver, path string
		size         int64
		want         string
	}{
		{boot.Libvirt, good, 0, ""},
		{boot.Libvirt, good, 29, ""},
		{boot.Libvirt, good, 4096, "not the 4096"},
		{boot.Libvirt, part, 0, "not a complete state"},
		{boot.QEMU, good, 0, "not a complete state"},
		{boot.Libvirt, link, 0, "symbolic link"},
		{boot.Libvirt, filepath.Join(dir, "gone.state"), 0, "no such file"},
		{boot.Libvirt, dir, 0, "not a regular file"},
		{"bhyve", good, 0, "does not know"},
	} {
		err := boot.CheckState(c.driver, c.path, c.size)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s: %v", c.driver, filepath.Base(c.path), err)
		case c.want != "" && (!errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s size %d: %v, want %q", c.driver, filepath.Base(c.path), c.size, err, c.want)
		}
	}
}
