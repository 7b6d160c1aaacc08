package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An argv that itself contains "--" must reach the command untouched in
// the --volume form too (the guest form already works).
func TestSnapshotRunVolumeArgvWithDoubleDash(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	out := ok(t, home, "snapshot", "run", "--volume", "v", "--", "/bin/echo", "a", "--", "b")
	if strings.TrimSpace(out) != "a -- b" {
		t.Fatalf("stdout %q, want %q", out, "a -- b")
	}
}

// A command killed by signal N: strata exits 128+N, like a shell.
func TestSnapshotRunSignalExitCode(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	r := runIn(t, home, nil, "snapshot", "run", "--volume", "v", "--", "/bin/sh", "-c", "kill -TERM $$")
	if r.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %d, want %d", r.code, 128+int(syscall.SIGTERM))
	}
}

// SIGTERM to strata reaches the command as SIGTERM (it can clean up), not SIGKILL.
func TestSnapshotRunForwardsSIGTERM(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	cmd := exec.Command(strataBinary(t), "--home", home, "snapshot", "run", "--volume", "v", "--",
		"/bin/sh", "-c", "trap 'exit 42' TERM; sleep 10 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 42 {
		t.Fatalf("exit %d, want 42 (the command's own TERM handler)", code)
	}
}

func TestSnapshotRunOnVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "frag", "qcow2", "")
	ok(t, home, "snapshot", "run", "--volume", "frag", "--", "true")
	if got := ids(points(t, home, "--volume", "frag")); got != "1,2" {
		t.Errorf("points %s", got)
	}
}

// snapshot run of a raw volume on a pool without reflink takes full-copy
// points (pre, and post as the rollback's undo point) but warns about the
// method once.
func TestSnapshotRunWarnsAboutFullCopiesOnce(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "plain", "raw", "")
	r := runIn(t, home, nil, "snapshot", "run", "--volume", "plain", "--rollback-on-failure", "--", "false")
	if got := ids(points(t, home, "--volume", "plain")); got != "1,2" {
		t.Fatalf("points %s, want pre and post", got)
	}
	if n := strings.Count(r.stderr, "are full copies"); n != 1 {
		t.Fatalf("the full-copy warning came %d times:\n%s", n, r.stderr)
	}
}

// A failed command on a full-copy volume with --rollback-on-failure: the
// post point and the rollback's undo point would hold the same state, so
// the rollback's undo point is the post point (paired with the pre point,
// no separate pre-rollback point), which holds the live data the rollback
// moved aside: one copy of the failed state's bytes, not two (the copy
// made for a post point is gone). Both ways back still restore: to the
// post point (the failed state), then to the pre point. stderr says so.
func TestSnapshotRunOnFullCopiesKeepsOneCopyOfTheFailedState(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "plain", "raw", "")
	d.write(t, 0x01)
	script := fmt.Sprintf("qemu-io -f raw -c 'write -P 0x02 0 1M' -c 'write -P 0x02 16M 1M' %s >/dev/null && exit 3", d.path)
	r := runIn(t, home, nil, "snapshot", "run", "--volume", "plain", "--rollback-on-failure", "--", "sh", "-c", script)
	if r.code != 3 {
		t.Fatalf("exit %d, want the command's 3: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "its undo point is the post point") {
		t.Fatalf("stderr does not say the post point is the rollback's undo point:\n%s", r.stderr)
	}
	d.expect(t, 0x01, "after the failed command's rollback")
	ps := points(t, home, "--volume", "plain")
	if len(ps) != 2 || ps[0].Kind != "pre" || ps[1].Kind != "post" || ps[1].PreID == nil || *ps[1].PreID != ps[0].ID {
		t.Fatalf("points after a failed run on a full-copy volume: %+v (want pre and its post, no pre-rollback)", ps)
	}
	// Two copies in all (pre's, and the failed state moved aside), each
	// of the 2 MiB written: not three.
	var files int
	var used int64
	ents, _ := os.ReadDir(filepath.Join(filepath.Dir(d.path), ".strata-points"))
	for _, e := range ents {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(filepath.Dir(d.path), ".strata-points", e.Name()), &st); err != nil {
			t.Fatal(err)
		}
		files++
		used += st.Blocks * 512
	}
	if files != 2 || used > 5<<20 {
		t.Fatalf("point files after the run: %d using %d bytes (want 2 copies of 2 MiB)", files, used)
	}
	ok(t, home, "snapshot", "rollback", "--volume", "plain", fmt.Sprint(ps[1].ID))
	d.expect(t, 0x02, "rollback to the post point of the failed command")
	ok(t, home, "snapshot", "rollback", "--volume", "plain", fmt.Sprint(ps[0].ID))
	d.expect(t, 0x01, "rollback to the pre point again")
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Fatalf("doctor: exit %d, %+v", code, fs)
	}
}

// Without --description, the pre and post points are described by the
// command as typed (words joined by spaces), not as a Go list "[a b]".
func TestSnapshotRunDescribesPointsByTheCommand(t *testing.T) {
	home := t.TempDir()
	ok(t, home, "volume", "create", "v", "--size", "1M")
	ok(t, home, "snapshot", "run", "--volume", "v", "--", "/bin/echo", "patch", "one")
	var ps []struct {
		Description string `json:"description"`
	}
	jsonOf(t, home, &ps, "snapshot", "list", "--volume", "v")
	if len(ps) != 2 || ps[0].Description != "/bin/echo patch one" || ps[1].Description != "/bin/echo patch one" {
		t.Fatalf("descriptions of the pre and post points: %+v, want %q", ps, "/bin/echo patch one")
	}
}
