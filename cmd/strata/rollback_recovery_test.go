package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"
)

// slowQcow2 imports a qcow2 volume whose snapshot apply takes a fraction
// of a second (512-byte clusters: qemu-img walks every cluster's
// reference), long enough to act while it runs, holding pattern a in its
// first 32 MiB, with point 1 taken there, and
// pattern b written after it.
func slowQcow2(t *testing.T, home string, a, b byte) disk {
	t.Helper()
	p := filepath.Join(t.TempDir(), "slow.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "64M")
	d := disk{p, "qcow2"}
	d.fill(t, a)
	ok(t, home, "volume", "import", p, "--name", "slow")
	ok(t, home, "snapshot", "create", "--volume", "slow")
	d.fill(t, b)
	return d
}

// fill writes pattern b over the first 32 MiB.
func (d disk) fill(t *testing.T, b byte) {
	t.Helper()
	storagetest.Cmd(t, "qemu-io", "-f", d.format, "-c", fmt.Sprintf("write -P 0x%02x 0 32M", b), d.path)
}

// holds tells whether the first 32 MiB hold pattern b.
func (d disk) holds(t *testing.T, b byte) bool {
	t.Helper()
	return d.hasRange(t, b, "0 32M")
}

// startStrata starts strata in the background.
func startStrata(t *testing.T, home string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(strataBinary(t), append([]string{"--home", home}, args...)...)
	cmd.Env = append(append(os.Environ(), "STRATA_LOCK_TIMEOUT=60s"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &stderr
}

// opensUnder tells whether process pid has a file under dir open: a tool
// counts as at work once it has its image open (between its exec and its
// open, a strata killed would leave nothing to wait for yet).
func opensUnder(pid, dir string) bool {
	fds, _ := os.ReadDir(filepath.Join("/proc", pid, "fd"))
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc", pid, "fd", fd.Name())); err == nil && strings.HasPrefix(l, dir) {
			return true
		}
	}
	return false
}

// waitForTool waits until a process runs with all of words in its
// command line and an argument under dir (other tests, and other test
// binaries, run qemu-img too) and has a file under dir open, and returns
// its pid.
func waitForTool(t *testing.T, dir string, words ...string) int {
	t.Helper()
	// Generous: on a busy machine strata takes a while to get there.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		procs, _ := os.ReadDir("/proc")
		for _, e := range procs {
			raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			args := strings.Split(string(raw), "\x00")
			args[0] = filepath.Base(args[0])
			all := false
			for _, a := range args {
				all = all || strings.HasPrefix(a, dir)
			}
			for _, w := range words {
				found := false
				for _, a := range args {
					if a == w {
						found = true
					}
				}
				all = all && found
			}
			if all && opensUnder(e.Name(), dir) {
				var pid int
				fmt.Sscan(e.Name(), &pid)
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no process %v appeared", words)
	return 0
}

func exitCodeOf(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func qcow2Clean(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "check", path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check %s: %v\n%.2000s", path, err, out)
	}
}

// Ctrl-C or SIGTERM while qemu-img applies a snapshot to the first of a
// guest's two disks: strata lets it finish (never kills a tool that is
// changing an image), then undoes the rollback and says so; the images are
// clean and every point restores its bytes.
func TestSignalDuringQcow2ApplyLetsItFinishThenUndoes(t *testing.T) {
	t.Run("strata", func(t *testing.T) { signalDuringApply(t, false) })
	// A service stop (systemd's KillMode=control-group) signals every
	// process at once: qemu-img dies halfway, strata repairs and undoes.
	t.Run("strata and qemu-img", func(t *testing.T) { signalDuringApply(t, true) })
}

func signalDuringApply(t *testing.T, both bool) {
	home := filepath.Join(t.TempDir(), "home")
	var ds []disk
	for _, name := range []string{"slow1", "slow2"} {
		p := filepath.Join(t.TempDir(), name+".qcow2")
		storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "64M")
		d := disk{p, "qcow2"}
		d.fill(t, 0xa1)
		ok(t, home, "volume", "import", p, "--name", name)
		ds = append(ds, d)
	}
	ok(t, home, "guest", "define", "slow", "--disk", "slow1", "--disk", "slow2")
	ok(t, home, "snapshot", "create", "slow")
	for _, d := range ds {
		d.fill(t, 0xb2)
	}
	cmd, stderr := startStrata(t, home, nil, "snapshot", "rollback", "slow", "1")
	qimg := waitForTool(t, filepath.Dir(filepath.Dir(home)), "qemu-img", "snapshot", "-a")
	if both {
		_ = syscall.Kill(qimg, syscall.SIGTERM)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := exitCodeOf(err); code != 130 || !strings.Contains(stderr.String(), "nothing was rolled back") || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("rollback stopped by SIGTERM: exit %d, want 130 and 'nothing was rolled back'\n%s", code, stderr)
	}
	if syscall.Kill(qimg, 0) == nil {
		t.Errorf("qemu-img (pid %d) still runs after strata exited", qimg)
	}
	for _, d := range ds {
		qcow2Clean(t, d.path)
		if !d.holds(t, 0xb2) {
			t.Errorf("%s is not as it was before the interrupted rollback", d.path)
		}
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor after the interrupted rollback: %s", r.stdout)
	}
	ok(t, home, "snapshot", "rollback", "slow", "1")
	for _, d := range ds {
		if !d.holds(t, 0xa1) {
			t.Errorf("point 1 does not restore the bytes of %s", d.path)
		}
	}
}

// kill -9 of strata alone leaves qemu-img applying the snapshot: the next
// strata (doctor --repair right away) waits for it, says so, and finishes
// the rollback the journal records; every point restores its bytes.
func TestRecoveryWaitsForAnOrphanedQemuImg(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	p := filepath.Join(t.TempDir(), "slow.qcow2")
	storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "256M")
	d := disk{p, "qcow2"}
	// 96 MiB of 512-byte clusters: an apply long enough to outlive strata
	// by far more than doctor takes to start.
	storagetest.Cmd(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 32M 64M", p)
	d.fill(t, 0xa1)
	ok(t, home, "volume", "import", p, "--name", "slow")
	ok(t, home, "snapshot", "create", "--volume", "slow")
	d.fill(t, 0xb2)
	storagetest.Cmd(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x44 32M 64M", p)
	cmd, _ := startStrata(t, home, nil, "snapshot", "rollback", "--volume", "slow", "1")
	qimg := waitForTool(t, filepath.Dir(filepath.Dir(home)), "qemu-img", "snapshot", "-a")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if syscall.Kill(qimg, 0) != nil {
		t.Fatal("qemu-img died with strata: the test needs it to outlive strata")
	}
	r := runIn(t, home, nil, "doctor", "--repair")
	if r.code != 0 || !strings.Contains(r.stderr, "waiting for") {
		t.Errorf("doctor --repair with qemu-img still running: exit %d, want it to wait and say so\n%s%s", r.code, r.stdout, r.stderr)
	}
	qcow2Clean(t, d.path)
	if !d.holds(t, 0xa1) {
		t.Error("the journaled rollback was not finished")
	}
	if got := ids(points(t, home, "--volume", "slow")); got != "1,2" {
		t.Fatalf("points %s, want 1,2", got)
	}
	ok(t, home, "snapshot", "rollback", "--volume", "slow", "2")
	if !d.holds(t, 0xb2) {
		t.Error("the pre-rollback point does not restore the state before the rollback")
	}
}

// A power cut mid-apply kills strata and qemu-img together, and the guest
// is started by hand before any strata command runs: the half-applied
// image must not take its writes (they would land in clusters other
// points share); the next strata command repairs and finishes, and every
// point restores its bytes.
func TestPowerCutMidApplyKeepsEveryPoint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := slowQcow2(t, home, 0xa1, 0xb2)
	ok(t, home, "snapshot", "create", "--volume", "slow") // 2: b
	d.fill(t, 0xc3)
	var p1 pointJSON
	jsonOf(t, home, &p1, "snapshot", "show", "--volume", "slow", "1")
	// strata dies with the image moved aside for the apply ...
	crash(t, home, "rollback:qcow2-moved", "snapshot", "rollback", "--volume", "slow", "1")
	applying := d.path + ".strata-applying"
	// ... and qemu-img dies halfway through it (retried until qemu-img
	// check shows the damage a half-done apply leaves).
	damaged := false
	for delay := 10 * time.Millisecond; delay < 2*time.Second && !damaged; delay += 15 * time.Millisecond {
		cmd := exec.Command("qemu-img", "snapshot", "-a", p1.Disks[0].Ref, applying)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		if cmd.Wait() == nil {
			t.Logf("qemu-img finished within %s", delay)
			break // an apply killed later would finish too
		}
		damaged = exec.Command("qemu-img", "check", "-q", applying).Run() != nil
	}
	if !damaged {
		t.Log("qemu-img finished before it could be killed halfway: the image was not left damaged")
	}
	// The guest, started by hand, writes.
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xee 0 1M", d.path).CombinedOutput(); err == nil {
		t.Errorf("a guest could write to the half-applied image before strata recovered it:\n%s", out)
	}
	r := runIn(t, home, nil, "snapshot", "create", "--volume", "slow") // cron
	if r.code != 0 {
		t.Fatalf("the next command: exit %d\n%s", r.code, r.stderr)
	}
	if damaged && !strings.Contains(r.stderr, "repairing") {
		t.Errorf("the damaged image was not repaired before use:\n%s", r.stderr)
	}
	qcow2Clean(t, d.path)
	if !d.holds(t, 0xa1) {
		t.Error("the interrupted rollback was not finished")
	}
	for _, c := range []struct {
		point string
		b     byte
	}{{"1", 0xa1}, {"2", 0xb2}, {"3", 0xc3}, {"1", 0xa1}} {
		ok(t, home, "snapshot", "rollback", "--volume", "slow", c.point)
		if !d.holds(t, c.b) {
			t.Errorf("point %s does not restore pattern 0x%02x", c.point, c.b)
		}
		qcow2Clean(t, d.path)
	}
}

// strata dies right after a rollback replaced a disk; the guest is
// started and writes; then a cron 'snapshot create' runs. Recovery must
// notice the disk changed, keep the state as a point first and say so:
// the guest's writes end up in a restore point, not nowhere.
func TestRecoveryKeepsWritesMadeAfterAnInterruptedRollback(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r, q := guestWithTwoDisks(t, home) // points 1 (a), 2 (b); disks c
	crash(t, home, "rollback:disk-1", "snapshot", "rollback", "web", "1")
	r.write(t, 0x0e) // the guest writes to the disk already rolled back
	res := runIn(t, home, nil, "snapshot", "create", "web")
	if res.code != 0 || !strings.Contains(res.stderr, "changed") {
		t.Fatalf("cron snapshot create after the interrupted rollback: exit %d, want a warning that the disks changed\n%s", res.code, res.stderr)
	}
	r.expect(t, 0x0a, "raw disk after recovery finished the rollback")
	q.expect(t, 0x0a, "qcow2 disk after recovery finished the rollback")
	var kept *pointJSON
	for _, p := range points(t, home, "web") {
		if strings.Contains(p.Description, "found when recovering") {
			kept = &p
		}
	}
	if kept == nil {
		t.Fatalf("no point keeps the state recovery found: %+v", points(t, home, "web"))
	}
	ok(t, home, "snapshot", "rollback", "web", fmt.Sprint(kept.ID))
	r.expect(t, 0x0e, "the guest's writes, from the point recovery kept")
	q.expect(t, 0x0c, "the other disk as it was, from the point recovery kept")
}

// A crash with nothing written since: recovery finishes without keeping
// an extra point.
func TestRecoveryWithoutLaterWritesKeepsNoExtraPoint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r, q := guestWithTwoDisks(t, home)
	crash(t, home, "rollback:disk-1", "snapshot", "rollback", "web", "1")
	ok(t, home, "snapshot", "list")
	ok(t, home, "doctor", "--repair")
	r.expect(t, 0x0a, "raw disk")
	q.expect(t, 0x0a, "qcow2 disk")
	if got := ids(points(t, home, "web")); got != "1,2,3" {
		t.Errorf("points %s, want 1,2,3 (no point kept for unchanged disks)", got)
	}
}

// A restored copy a killed rollback left behind, unused by the recovery,
// is removed by it: no full copy stays around for doctor to find.
func TestRecoveryRemovesTheCopiesItLeft(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r, _ := guestWithTwoDisks(t, home)
	crash(t, home, "rollback:copy-made", "snapshot", "rollback", "web", "1")
	if left, _ := filepath.Glob(r.path + ".strata-rollback-*"); len(left) != 1 {
		t.Fatalf("the crash was to leave one restored copy: %v", left)
	}
	ok(t, home, "snapshot", "create", "web")
	r.expect(t, 0x0a, "raw disk")
	if left, _ := filepath.Glob(r.path + ".strata-rollback-*"); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	if res := runIn(t, home, nil, "doctor"); res.code != 0 {
		t.Errorf("doctor after recovery: exit %d\n%s", res.code, res.stdout)
	}
}

// smallPool adds pool "small" on a 160 MiB ext4 filesystem and returns
// its mount point.
func smallPool(t *testing.T, home string) string {
	t.Helper()
	mnt := storagetest.LoopFS(t, "ext4", 160<<20)
	ok(t, home, "pool", "add", "small", "--path", filepath.Join(mnt, "pool"))
	return mnt
}

// fillUp fills the filesystem at mnt until 8 MiB are free, and returns
// the file that fills it.
func fillUp(t *testing.T, mnt string) string {
	t.Helper()
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	_ = syscall.Statfs(mnt, &st)
	free := int64(st.Bavail) * st.Bsize
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-8<<20); err != nil {
		t.Fatal(err)
	}
	return filler
}

// fullPool is a raw volume on a small filesystem with 20 MiB of data and
// point 1 (a full copy), the volume then rewritten, and the filesystem
// filled until a third copy cannot fit.
func fullPool(t *testing.T, home string) (disk, string) {
	t.Helper()
	mnt := smallPool(t, home)
	d := newDisk(t, home, "sys", "raw", "small")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 20M", d.path)
	ok(t, home, "snapshot", "create", "--volume", "sys")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 20M", d.path)
	return d, fillUp(t, mnt)
}

// A full-copy rollback that runs out of space (the free-space check
// passed, then another writer filled the disk) is undone in O(1): the live
// image is the old one again, never shared with a point, and later writes
// to it change no point.
func TestFullCopyRollbackOutOfSpaceLeavesNoSharedImage(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d, filler := fullPool(t, home)
	r := runIn(t, home, []string{"STRATA_TEST_SKIP_SPACE_CHECK=1"}, "snapshot", "rollback", "--volume", "sys", "1")
	if r.code == 0 || !strings.Contains(r.stderr, "nothing was rolled back") {
		t.Fatalf("rollback into a full filesystem: exit %d\n%s", r.code, r.stderr)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(d.path, &st); err != nil || st.Nlink != 1 {
		t.Fatalf("the live image has %d links after the failed rollback (a point shares it)", st.Nlink)
	}
	if !d.hasRange(t, 0x22, "0 20M") {
		t.Error("the live image is not as it was")
	}
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x33 0 20M", d.path) // the guest goes on
	os.Remove(filler)
	if got := ids(points(t, home, "--volume", "sys")); got != "1" {
		t.Errorf("points %s, want 1 (the pre-rollback point of a rollback undone in O(1) goes)", got)
	}
	var res struct {
		PreRollback pointJSON `json:"pre_rollback"`
	}
	jsonOf(t, home, &res, "snapshot", "rollback", "--volume", "sys", "1")
	if !d.hasRange(t, 0x11, "0 20M") {
		t.Error("point 1 changed")
	}
	ok(t, home, "snapshot", "rollback", "--volume", "sys", fmt.Sprint(res.PreRollback.ID))
	if !d.hasRange(t, 0x33, "0 20M") {
		t.Error("the pre-rollback point does not hold the state before the rollback")
	}
}

// A rollback reported as failed is being undone when strata dies: the
// next command, even an unrelated cron 'snapshot create' with space freed
// meanwhile, finishes the undo and never applies the failed rollback.
func TestFailedRollbackIsNeverAppliedLater(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	mnt := smallPool(t, home)
	d := newDisk(t, home, "sys", "raw", "small")
	q := newDisk(t, home, "data", "qcow2", "small")
	ok(t, home, "guest", "define", "web", "--disk", "data", "--disk", "sys")
	q.write(t, 0x11)
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 20M", d.path)
	ok(t, home, "snapshot", "create", "web") // 1: both 0x11
	q.write(t, 0x22)
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 20M", d.path)
	filler := fillUp(t, mnt)
	// data (qcow2) is rolled back, then sys (full copy) runs out of space,
	// and strata dies putting data back.
	res := runIn(t, home, []string{"STRATA_TEST_SKIP_SPACE_CHECK=1", "STRATA_CRASH_AT=undo:disk-1"}, "snapshot", "rollback", "web", "1")
	if res.code != -1 {
		t.Fatalf("the rollback was to fail for lack of space and strata to die undoing it: exit %d\n%s", res.code, res.stderr)
	}
	os.Remove(filler)
	ok(t, home, "snapshot", "create", "web")
	q.expect(t, 0x22, "qcow2 disk after the failed rollback was recovered")
	if !d.hasRange(t, 0x22, "0 20M") {
		t.Error("raw disk: the failed rollback was applied later")
	}
}

// strata dies after the rollback restored a full-copy disk's copy and
// before that copy took the live name (the live image is in the
// pre-rollback point), on a
// filesystem with no room for another copy: recovery uses the restored
// copy left behind (the journal recorded its state) and finishes.
func TestRecoveryFinishesWithTheRestoredCopyLeftBehind(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	mnt := smallPool(t, home)
	d := newDisk(t, home, "sys", "raw", "small")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 20M", d.path)
	ok(t, home, "snapshot", "create", "--volume", "sys")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 20M", d.path)
	crash(t, home, "rollback:copy-recorded", "snapshot", "rollback", "--volume", "sys", "1")
	if _, err := os.Stat(d.path); err == nil {
		t.Fatal("the crash was to leave the live image moved into its point")
	}
	if left, _ := filepath.Glob(d.path + ".strata-rollback-*"); len(left) != 1 {
		t.Fatalf("the crash was to leave the restored copy: %v", left)
	}
	fillUp(t, mnt)
	ok(t, home, "doctor", "--repair")
	if !d.hasRange(t, 0x11, "0 20M") {
		t.Error("the interrupted rollback was not finished")
	}
	if got := ids(points(t, home, "--volume", "sys")); got != "1,2" {
		t.Errorf("points %s, want 1,2", got)
	}
	if left, _ := filepath.Glob(d.path + ".strata-rollback-*"); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// strata dies right after taking the pre-rollback point, whose full-copy
// disk is the live image moved into it; a guest started by hand writes
// what it can before any strata command runs. It cannot open the
// full-copy disk (its image is in the point, not under the live name), so
// no point is torn: the pre-rollback point still holds the state before
// the rollback on every disk, and what the guest wrote to its other disk
// is kept in the point recovery takes before it finishes.
func TestWritesAfterACrashTearNoPoint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r, q := guestWithTwoDisks(t, home) // points 1 (a), 2 (b); disks c
	crash(t, home, "rollback:pre-point", "snapshot", "rollback", "web", "1")
	if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0x0e 0 1M", r.path).CombinedOutput(); err == nil {
		t.Errorf("a guest could write to the full-copy disk whose image is the pre-rollback point's:\n%s", out)
	}
	q.write(t, 0x0e)
	res := runIn(t, home, nil, "snapshot", "create", "web")
	if res.code != 0 || !strings.Contains(res.stderr, "changed") {
		t.Fatalf("cron snapshot create: exit %d\n%s", res.code, res.stderr)
	}
	r.expect(t, 0x0a, "raw disk after recovery finished the rollback")
	q.expect(t, 0x0a, "qcow2 disk after recovery finished the rollback")
	var pre, found int
	for _, p := range points(t, home, "web") {
		switch {
		case p.Description == "before rollback to 1":
			pre = p.ID
		case strings.Contains(p.Description, "found when recovering"):
			found = p.ID
		}
	}
	if pre == 0 || found == 0 {
		t.Fatalf("points: %+v", points(t, home, "web"))
	}
	ok(t, home, "snapshot", "rollback", "web", fmt.Sprint(pre))
	r.expect(t, 0x0c, "raw disk from the pre-rollback point")
	q.expect(t, 0x0c, "qcow2 disk from the pre-rollback point")
	ok(t, home, "snapshot", "rollback", "web", fmt.Sprint(found))
	q.expect(t, 0x0e, "the guest's writes, from the point recovery kept")
}

// A guest started by hand while a rollback works on its disks (here while
// the full copy of one disk is restored) cannot open any of them: strata
// holds them with QEMU's own locks from its check to its end.
func TestGuestCannotStartDuringARollback(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "sys", "--size", "512M")
	sys := disk{v.Path, "raw"}
	data := newDisk(t, home, "data", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "data")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 300M", sys.path)
	data.write(t, 0x11)
	ok(t, home, "snapshot", "create", "web")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x22 0 300M", sys.path)
	data.write(t, 0x22)
	cmd, stderr := startStrata(t, home, nil, "snapshot", "rollback", "web", "1")
	waitFor(t, func() bool { left, _ := filepath.Glob(sys.path + ".strata-rollback-*"); return len(left) > 0 })
	for _, d := range []disk{data, sys} {
		// A guest that starts runs until killed: 5 s tell.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-display", "none", "-nodefaults", "-S",
			"-drive", "file="+d.path+",format="+d.format+",if=virtio", "-qmp", "null").CombinedOutput()
		// Held, or (a full-copy disk) moved into its pre-rollback point.
		if ctx.Err() != nil || !(strings.Contains(string(out), "lock") || strings.Contains(string(out), "No such file")) {
			t.Errorf("a guest started on %s during the rollback: %v %s", d.path, err, out)
		}
		cancel()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rollback: %v\n%s", err, stderr)
	}
	if !sys.hasRange(t, 0x11, "0 300M") {
		t.Error("raw disk not rolled back")
	}
	data.expect(t, 0x11, "qcow2 disk")
}

// While a qcow2 image is moved aside for a rollback (or left so by a
// crash until recovery), read-only commands still show the volume, and
// doctor never calls its image missing or advises deleting it.
func TestVolumeBeingRolledBackIsNotMissing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "data", "qcow2", "")
	d.write(t, 0x01)
	ok(t, home, "snapshot", "create", "--volume", "data")
	crash(t, home, "rollback:qcow2-moved", "snapshot", "rollback", "--volume", "data", "1")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "info", "data")
	if v.Format != "qcow2" || v.VirtualSize != 32<<20 {
		t.Errorf("volume info while the image is moved aside: %+v", v)
	}
	ok(t, home, "volume", "list")
	r := runIn(t, home, nil, "--output", "json", "doctor")
	if strings.Contains(r.stdout, "missing-file") || !strings.Contains(r.stdout, "interrupted-operation") {
		t.Errorf("doctor: %s", r.stdout)
	}
	ok(t, home, "doctor", "--repair")
	d.expect(t, 0x01, "after recovery")
}

// Ctrl-C or SIGTERM during a point's delete (its qcow2 snapshots are
// removed one disk at a time): the delete is finished, never left half
// done for the next command.
func TestSignalDuringDeleteFinishesIt(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	for _, name := range []string{"slow1", "slow2"} {
		p := filepath.Join(t.TempDir(), name+".qcow2")
		storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "64M")
		d := disk{p, "qcow2"}
		d.fill(t, 0xa1)
		ok(t, home, "volume", "import", p, "--name", name)
	}
	ok(t, home, "guest", "define", "slow", "--disk", "slow1", "--disk", "slow2")
	ok(t, home, "snapshot", "create", "slow")
	cmd, stderr := startStrata(t, home, nil, "snapshot", "delete", "slow", "1")
	waitForTool(t, filepath.Dir(filepath.Dir(home)), "qemu-img", "snapshot", "-d")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCodeOf(cmd.Wait()); code != 0 {
		t.Errorf("delete stopped by SIGTERM: exit %d, want 0 (finished)\n%s", code, stderr)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor after the interrupted delete: exit %d\n%s", r.code, r.stdout)
	}
	if got := ids(points(t, home, "slow")); got != "" {
		t.Errorf("points %q, want none", got)
	}
}

// Plain doctor after a rollback killed with its restored copy made
// reports the interrupted rollback, and not the copy as an orphan file
// (an admin told "a file no volume references" might delete it before
// --repair): the copy is the journal's, and --repair finishes with it.
func TestDoctorCountsAnInterruptedRollbacksCopyAsItsJournals(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r, _ := guestWithTwoDisks(t, home)
	crash(t, home, "rollback:copy-made", "snapshot", "rollback", "web", "1")
	if left, _ := filepath.Glob(r.path + ".strata-rollback-*"); len(left) != 1 {
		t.Fatalf("the crash was to leave one restored copy: %v", left)
	}
	fs, code := doctor(t, home)
	if code != 7 || kinds(fs) != "interrupted-operation" {
		t.Errorf("doctor after a rollback killed with its copy made: exit %d, %+v", code, fs)
	}
	ok(t, home, "doctor", "--repair")
	r.expect(t, 0x0a, "raw disk")
	if fs, code := doctor(t, home); code != 0 || len(fs) != 0 {
		t.Errorf("doctor after --repair: exit %d, %+v", code, fs)
	}
}

// kill -9 of strata in the moment between a critical qemu-img's exec and
// its open of the image leaves a tool that holds nothing yet but is about
// to apply the snapshot: recovery must not overtake it. Here the tool
// waits before it opens the image (a qemu-img on strata's PATH that
// blocks reading a FIFO, then runs the real one with the same arguments;
// not SIGSTOP: a stopped process in the process group strata's death
// orphans gets SIGHUP and SIGCONT from the kernel), and strata is killed
// meanwhile: doctor --repair waits for it (it names the image on its
// command line) and gives up busy, the rollback still journaled; once
// the tool has run, the next doctor --repair finishes the rollback, and
// every point restores its bytes.
func TestRecoveryWaitsForAToolThatHasNotOpenedTheImageYet(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := slowQcow2(t, home, 0xa1, 0xb2)
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal(err)
	}
	wrap := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -a ] && read go < " + fifo + "; done\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(wrap, "qemu-img"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	release := func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("go\n")
		f.Close()
	}
	cmd, _ := startStrata(t, home, []string{"PATH=" + wrap + ":" + os.Getenv("PATH")}, "snapshot", "rollback", "--volume", "slow", "1")
	tool := waitForTool(t, wrap, "snapshot", "-a")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if opensUnder(fmt.Sprint(tool), filepath.Dir(d.path)) {
		t.Fatal("the tool opened the image before it was let go")
	}
	r := runIn(t, home, []string{"STRATA_LOCK_TIMEOUT=1s"}, "doctor", "--repair")
	if r.code != 5 || !strings.Contains(r.stderr, "waiting for") || !strings.Contains(r.stderr, fmt.Sprintf("pid %d", tool)) {
		t.Fatalf("doctor --repair while a qemu-img about to apply the point waits: exit %d, want 5 after waiting for pid %d\n%s%s", r.code, tool, r.stdout, r.stderr)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 7 || !strings.Contains(r.stdout, "interrupted-operation") {
		t.Errorf("the refused recovery did not leave the rollback journaled: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The tool goes on, applies the point and exits; then recovery runs.
	release()
	for deadline := time.Now().Add(time.Minute); syscall.Kill(tool, 0) == nil && !isZombie(tool); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the let go qemu-img did not finish")
		}
	}
	ok(t, home, "doctor", "--repair")
	qcow2Clean(t, d.path)
	if !d.holds(t, 0xa1) {
		t.Error("the journaled rollback was not finished")
	}
	ok(t, home, "snapshot", "rollback", "--volume", "slow", "2")
	if !d.holds(t, 0xb2) {
		t.Error("the pre-rollback point does not restore the state before the rollback")
	}
}

// isZombie tells whether pid has exited and waits to be reaped.
func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(stat, ')')
	return err != nil || i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}
