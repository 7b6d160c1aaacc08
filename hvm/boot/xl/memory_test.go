// Like xl_test.go, these do not run a real Xen (none can run here): the
// scripted runner stands in for xl and checks the exact argv of xl save
// and xl restore.
package xl_test

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/xl"
	"github.com/strata-vm/strata/storage"
)

// xlMagic begins the save files xl writes (tools/xl savefileheader_magic).
const xlMagic = "Xen saved domain, xl format\n \x00 \r"

// A memory point's save is a plain `xl save DOMID FILE` of the running
// domain: no -c (the domain would run on and its disks move on from the
// instant of its RAM), no -p (the domain would stay, its images held
// open and locked), so the domain ends with the save and its disks are
// of the RAM's instant. The file is strata's afterwards, 0600.
func TestSaveStateIsAPlainXLSaveOfTheDomain(t *testing.T) {
	g := guest(t, "win7")
	state := g.Run.Path("mem.state")
	if err := os.WriteFile(state, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, _ := newDriver(t, "",
		step{argv: cmd("xl list"), out: sample(t, "list-win7.txt")},
		step{argv: []string{"xl", "save", "5", state}, stderr: "Saving to " + state + " new xl format (info 0x3/0x0/1797)\n"},
	)
	var ss boot.StateSaver = d
	if err := ss.SaveState(context.Background(), g, state); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(state)
	if err != nil || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("the state file after xl save: %v %v", st, err)
	}
}

// A paused domain's memory is not saved (the point would resume it), a
// stopped guest has none, and a failed xl save says what xl said.
func TestSaveStateRefusals(t *testing.T) {
	g := guest(t, "xp-sp3")
	d, _ := newDriver(t, "", step{argv: cmd("xl list"), out: sample(t, "list-xp-paused.txt")})
	is(t, d.SaveState(context.Background(), g, g.Run.Path("mem.state")), storage.ErrPrecondition)

	d, _ = newDriver(t, "", step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")})
	is(t, d.SaveState(context.Background(), g, g.Run.Path("mem.state")), storage.ErrPrecondition)

	w := guest(t, "win7")
	state := w.Run.Path("mem.state")
	d, _ = newDriver(t, "",
		step{argv: cmd("xl list"), out: sample(t, "list-win7.txt")},
		step{argv: []string{"xl", "save", "5", state}, code: 1, stderr: "libxl: error: libxl_dom_suspend.c:380:suspend_common_wait_guest_timeout: Domain 5:guest did not suspend, timed out\n"},
	)
	if err := d.SaveState(context.Background(), w, state); err == nil {
		t.Fatal("a failed xl save succeeded")
	}
}

// Start from a state file is xl restore with the config rendered into the
// runtime directory (secrets in the file, not on the command line), -p,
// then unpause once state.json names the domain, as a create.
func TestStartFromStateIsXLRestorePausedThenUnpause(t *testing.T) {
	g := guest(t, "win7")
	cfg := g.Run.Path(xl.ConfigFile)
	state := g.Run.Path("mem.state")
	if err := os.WriteFile(state, []byte(xlMagic+"the domain"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, f := newDriver(t, "",
		step{argv: cmd("xl list"), out: sample(t, "list-dom0.txt")},
		step{argv: []string{"xl", "restore", "-p", cfg, state}},
		step{argv: cmd("xl domid win7"), out: "5\n"},
		step{argv: cmd("xl unpause 5")},
		step{argv: cmd("xl list"), out: sample(t, "list-win7.txt")},
		step{argv: cmd("xl list -l 5"), out: sample(t, "list-l-hvm.json")},
	)
	st, err := d.Start(context.Background(), g, boot.StartOptions{FromState: state})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != boot.Running || st.Domain != "5" {
		t.Errorf("status %+v", st)
	}
	for _, argv := range f.ran {
		for _, a := range argv {
			if a == vncSecret {
				t.Errorf("the VNC password is on a command line: %q", argv)
			}
		}
	}
	if rs, err := g.Run.ReadState(); err != nil || rs == nil || rs.Domain != "5" {
		t.Errorf("state.json %+v %v", rs, err)
	}
}

// A state file that is not a complete xl save is refused before xl runs.
func TestStartFromAStateFileXLDidNotWriteIsRefused(t *testing.T) {
	g := guest(t, "win7")
	state := g.Run.Path("mem.state")
	if err := os.WriteFile(state, []byte("LibvirtQemudSave"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, _ := newDriver(t, "")
	_, err := d.Start(context.Background(), g, boot.StartOptions{FromState: state})
	is(t, err, storage.ErrPrecondition)
}
