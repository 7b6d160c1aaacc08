package main_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/hvm/boot/boottest"
)

// Symlinks planted in a guest's runtime directory are never followed to
// write elsewhere: the serial log QEMU truncates and writes, the
// watcher's log, the lock. The guest starts, writes its own log, and the
// files the links point at keep their bytes.
func TestRunDirSymlinksAreNotFollowed(t *testing.T) {
	home := shortHome(t)
	bootSectorGuest(t, home, "sy", "STRATA-SY", boottest.PowerButton)
	// A start and stop create the runtime directory as strata makes it.
	ok(t, home, "guest", "start", "sy", "--wait-serial", "STRATA-SY")
	ok(t, home, "guest", "stop", "sy", "--timeout", "30s")
	rd := filepath.Join(home, "run", guestID(t, home, "sy"))
	plant := func(name string) string {
		v := filepath.Join(t.TempDir(), "victim-"+name)
		if err := os.WriteFile(v, []byte("precious "+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(rd, name))
		if err := os.Symlink(v, filepath.Join(rd, name)); err != nil {
			t.Fatal(err)
		}
		return v
	}
	intact := func(name, v string) {
		t.Helper()
		if b, err := os.ReadFile(v); err != nil || string(b) != "precious "+name+"\n" {
			t.Errorf("strata wrote through the symlink %s to %s: %q %v", name, v, b, err)
		}
	}

	// The serial log is the guest's to write: a link there is replaced.
	v := plant("serial.log")
	ok(t, home, "guest", "start", "sy", "--wait-serial", "STRATA-SY")
	ok(t, home, "guest", "stop", "sy", "--timeout", "30s")
	intact("serial.log", v)
	if st, err := os.Lstat(filepath.Join(rd, "serial.log")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("serial.log after the start: %v %v", st, err)
	}

	// strata's own files: refused rather than followed.
	victims := map[string]string{}
	for _, name := range []string{"serial.log", "watch.log", "lock"} {
		victims[name] = plant(name)
	}
	r := runIn(t, home, nil, "guest", "start", "sy", "--wait-serial", "STRATA-SY")
	t.Logf("start with planted symlinks: exit %d: %s", r.code, r.stderr)
	if r.code == 0 {
		ok(t, home, "guest", "stop", "sy", "--timeout", "30s")
	}
	for name, v := range victims {
		intact(name, v)
	}
}
