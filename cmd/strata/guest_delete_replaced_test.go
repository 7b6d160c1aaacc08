package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// guest delete of a guest that another command holds (its lifecycle lock:
// a start or stop under way) waits for it; if the name meanwhile became
// another guest's (the first renamed, a new one defined under the name),
// the delete refuses (busy) instead of deleting the new guest, which it
// neither locked nor checked, and undefining the old one elsewhere.
func TestGuestDeleteRefusesAGuestReplacedWhileWaitingForItsLock(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	ok(t, h, "volume", "create", "d1", "--size", "1M")
	ok(t, h, "volume", "create", "d2", "--size", "1M")
	ok(t, h, "guest", "define", "g", "--vnc=false", "--disk", "d1")
	var g struct{ ID string }
	jsonOf(t, h, &g, "guest", "show", "g")
	if g.ID == "" {
		t.Fatal("no guest ID")
	}
	// Hold the first guest's lifecycle lock, as a start under way does.
	lock, err := os.OpenFile(filepath.Join(h, "locks", "run-"+g.ID+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	del := exec.Command(strataBinary(t), "--home", h, "guest", "delete", "g")
	var stderr strings.Builder
	del.Stderr = &stderr
	if err := del.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the delete loaded g and waits for its lock
	ok(t, h, "guest", "set", "g", "name=old")
	ok(t, h, "guest", "define", "g", "--vnc=false", "--disk", "d2")
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	err = del.Wait()
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 6 {
		t.Errorf("guest delete of a name that became another guest's while it waited: %v, stderr %q; want exit 6 (busy)", err, stderr.String())
	}
	var guests []struct{ Name string }
	if err := json.Unmarshal([]byte(ok(t, h, "-o", "json", "guest", "list")), &guests); err != nil || len(guests) != 2 {
		t.Errorf("guests after the refused delete: %+v %v; want old and g", guests, err)
	}
}
