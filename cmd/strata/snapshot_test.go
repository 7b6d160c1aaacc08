package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage/storagetest"
	"golang.org/x/sys/unix"

	bolt "go.etcd.io/bbolt"
)

type pointJSON struct {
	ID          int               `json:"id"`
	Name        string            `json:"name"`
	Target      string            `json:"target"`
	Created     string            `json:"created"`
	Kind        string            `json:"kind"`
	Method      string            `json:"method"`
	Description string            `json:"description"`
	Pinned      bool              `json:"pinned"`
	PreID       *int              `json:"pre_id"`
	Bytes       *int64            `json:"bytes"`
	Tags        map[string]string `json:"tags"`
	Disks       []struct {
		Volume, Method, Ref string
	} `json:"disks"`
}

// disk is a volume under test: its image and format, for qemu-io.
type disk struct{ path, format string }

func newDisk(t *testing.T, home, name, format, pool string) disk {
	t.Helper()
	args := []string{"volume", "create", name, "--size", "32M", "--format", format}
	if pool != "" {
		args = append(args, "--pool", pool)
	}
	var v volumeJSON
	jsonOf(t, home, &v, args...)
	return disk{v.Path, format}
}

// write fills the first MiB and a MiB at 16 MiB with pattern b.
func (d disk) write(t *testing.T, b byte) {
	t.Helper()
	storagetest.Cmd(t, "qemu-io", "-f", d.format, "-c", fmt.Sprintf("write -P 0x%02x 0 1M", b), "-c", fmt.Sprintf("write -P 0x%02x 16M 1M", b), d.path)
}

// has reports whether the disk holds pattern b where write puts it.
func (d disk) has(t *testing.T, b byte) bool {
	t.Helper()
	// qemu-io exits 1 when a pattern does not match.
	out, err := exec.Command("qemu-io", "-f", d.format, "-c", fmt.Sprintf("read -P 0x%02x 0 1M", b), "-c", fmt.Sprintf("read -P 0x%02x 16M 1M", b), d.path).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Pattern verification failed") {
		t.Fatalf("qemu-io read %s: %v\n%s", d.path, err, out)
	}
	return err == nil && !strings.Contains(string(out), "failed")
}

func (d disk) hasRange(t *testing.T, b byte, rng string) bool {
	t.Helper()
	out, err := exec.Command("qemu-io", "-f", d.format, "-c", fmt.Sprintf("read -P 0x%02x %s", b, rng), d.path).CombinedOutput()
	return err == nil && !strings.Contains(string(out), "failed")
}

func (d disk) expect(t *testing.T, b byte, when string) {
	t.Helper()
	if !d.has(t, b) {
		t.Fatalf("%s: %s does not hold pattern 0x%02x", when, d.path, b)
	}
	if d.format == "qcow2" {
		storagetest.Cmd(t, "qemu-img", "check", "-q", d.path)
	}
}

func points(t *testing.T, home string, target ...string) []pointJSON {
	t.Helper()
	var ps []pointJSON
	jsonOf(t, home, &ps, append([]string{"snapshot", "list"}, target...)...)
	return ps
}

func ids(ps []pointJSON) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprint(p.ID))
	}
	return strings.Join(s, ",")
}

// The admin's story on one volume, for each method: take points, roll back
// to any of them, forward again, undo a rollback, delete a middle point.
func TestRestorePointStory(t *testing.T) {
	cases := []struct {
		name, format, fs, method string
	}{
		{"qcow2-internal", "qcow2", "", "qcow2-internal"},
		{"reflink-xfs", "raw", "xfs", "reflink"},
		{"reflink-btrfs", "raw", "btrfs", "reflink"},
		{"copy-ext4", "raw", "ext4", "copy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			pool := ""
			if tc.fs != "" {
				mnt := storagetest.LoopFS(t, tc.fs, 512<<20)
				pool = "p"
				ok(t, home, "pool", "add", pool, "--path", filepath.Join(mnt, "pool"))
			}
			d := newDisk(t, home, "data1", tc.format, pool)
			vol := []string{"--volume", "data1"}
			d.write(t, 0x11)
			var p1 pointJSON
			jsonOf(t, home, &p1, append([]string{"snapshot", "create", "--name", "clean", "--description", "fresh install", "--tag", "by=test"}, vol...)...)
			if p1.ID != 1 || p1.Method != tc.method || p1.Kind != "single" || p1.Target != "volume:data1" || p1.Tags["by"] != "test" {
				t.Fatalf("point 1: %+v", p1)
			}
			if tc.method == "copy" && (p1.Bytes == nil || *p1.Bytes < 2<<20 || *p1.Bytes > 4<<20) {
				t.Errorf("copy point bytes %v: want about the 2 MiB written", p1.Bytes)
			}
			d.write(t, 0x22)
			ok(t, home, append([]string{"snapshot", "create"}, vol...)...)
			d.write(t, 0x33)
			ok(t, home, append([]string{"snapshot", "rollback", "clean"}, vol...)...) // saves point 3
			d.expect(t, 0x11, "rollback to 1 (by name)")
			ok(t, home, append([]string{"snapshot", "rollback", "2"}, vol...)...) // saves 4
			d.expect(t, 0x22, "forward to 2")
			ok(t, home, append([]string{"snapshot", "rollback", "3"}, vol...)...) // undo the first rollback; saves 5
			d.expect(t, 0x33, "undo of the rollback")
			ps := points(t, home, vol...)
			if ids(ps) != "1,2,3,4,5" || ps[2].Kind != "pre-rollback" || ps[2].Description != "before rollback to 1" {
				t.Fatalf("points after rollbacks: %s %+v", ids(ps), ps)
			}
			ok(t, home, append([]string{"snapshot", "delete", "2"}, vol...)...)
			d.expect(t, 0x33, "after deleting point 2")
			ok(t, home, append([]string{"snapshot", "rollback", "1"}, vol...)...)
			d.expect(t, 0x11, "rollback to 1 after deleting 2")
			// Point 5 saved the state before the rollback to 3: point 2's.
			ok(t, home, append([]string{"snapshot", "rollback", "5"}, vol...)...)
			d.expect(t, 0x22, "rollback to 5 (the state of 2) after deleting 2")
			if got := ids(points(t, home, vol...)); got != "1,3,4,5,6,7" {
				t.Errorf("points: %s", got)
			}
			if r := runIn(t, home, nil, "doctor"); r.code != 0 {
				t.Errorf("doctor after the story: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// guestWithTwoDisks: a raw disk (copy) and a qcow2 disk (internal), point
// 1 holding A (0x0a), point 2 holding B (0x0b), the disks now holding C.
func guestWithTwoDisks(t *testing.T, home string) (disk, disk) {
	t.Helper()
	r := newDisk(t, home, "sys", "raw", "")
	q := newDisk(t, home, "data", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "data")
	for _, b := range []byte{0x0a, 0x0b} {
		r.write(t, b)
		q.write(t, b)
		ok(t, home, "snapshot", "create", "web")
	}
	r.write(t, 0x0c)
	q.write(t, 0x0c)
	return r, q
}

func TestGuestRollsBackBothDisksOrNeither(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	r, q := guestWithTwoDisks(t, home)
	ok(t, home, "snapshot", "rollback", "web", "1")
	r.expect(t, 0x0a, "raw disk")
	q.expect(t, 0x0a, "qcow2 disk")
	var p pointJSON
	jsonOf(t, home, &p, "snapshot", "show", "web", "1")
	if p.Method != "mixed" || len(p.Disks) != 2 || p.Disks[0].Method != "copy" || p.Disks[1].Method != "qcow2-internal" {
		t.Errorf("point 1: %+v", p)
	}
	// Break point 2's second disk: the rollback must restore neither disk.
	jsonOf(t, home, &p, "snapshot", "show", "web", "2")
	storagetest.Cmd(t, "qemu-img", "snapshot", "-d", p.Disks[1].Ref, q.path)
	r.write(t, 0x0d)
	q.write(t, 0x0d)
	res := runIn(t, home, nil, "snapshot", "rollback", "web", "2")
	if res.code == 0 || !strings.Contains(res.stderr, "nothing was rolled back") {
		t.Errorf("rollback onto a broken point: exit %d, %s", res.code, res.stderr)
	}
	r.expect(t, 0x0d, "raw disk after a failed rollback")
	q.expect(t, 0x0d, "qcow2 disk after a failed rollback")
}

// crash runs strata with the fault-injection hook set to step and expects
// it to die by SIGKILL there.
func crash(t *testing.T, home, step string, args ...string) {
	t.Helper()
	r := runIn(t, home, []string{"STRATA_CRASH_AT=" + step}, args...)
	if r.code != -1 {
		t.Fatalf("with STRATA_CRASH_AT=%s, strata %v exited %d (want killed): %s", step, args, r.code, r.stderr)
	}
}

// recoverAndCheck lets doctor (odd steps) or the next command (even) deal
// with the crash, then checks that nothing is left over and that points 1
// and 2 still restore A and B.
func recoverAndCheck(t *testing.T, home string, i int, r, q disk, wantPoints string) {
	t.Helper()
	if i%2 == 1 {
		if res := runIn(t, home, nil, "doctor"); res.code != 7 {
			t.Errorf("doctor after a crash: exit %d (want 7, problems found)\n%s", res.code, res.stdout)
		}
		ok(t, home, "doctor", "--repair")
	} else {
		ok(t, home, "snapshot", "pin", "web", "2") // any command on the target recovers it
		ok(t, home, "snapshot", "unpin", "web", "2")
	}
	if res := runIn(t, home, nil, "doctor"); res.code != 0 {
		t.Errorf("doctor after recovery: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	ps := points(t, home, "web")
	var got []string
	for _, p := range ps {
		if p.Kind != "pre-rollback" {
			got = append(got, fmt.Sprint(p.ID))
		}
	}
	if strings.Join(got, ",") != wantPoints {
		t.Errorf("points %s, want %s", strings.Join(got, ","), wantPoints)
	}
	if strings.Contains(wantPoints, "1") {
		ok(t, home, "snapshot", "rollback", "web", "1")
		r.expect(t, 0x0a, "point 1 after recovery")
		q.expect(t, 0x0a, "point 1 after recovery")
	}
	ok(t, home, "snapshot", "rollback", "web", "2")
	r.expect(t, 0x0b, "point 2 after recovery")
	q.expect(t, 0x0b, "point 2 after recovery")
}

func TestCrashAtEveryStep(t *testing.T) {
	steps := []struct {
		op, step string
	}{
		{"create", "create:recorded"}, {"create", "create:disk-1"}, {"create", "create:disk-2"},
		{"rollback", "create:recorded"}, {"rollback", "create:disk-1"}, {"rollback", "create:disk-2"},
		{"rollback", "rollback:pre-point"}, {"rollback", "rollback:disk-1"}, {"rollback", "rollback:disk-2"},
		{"delete", "delete:marked"}, {"delete", "delete:disk-1"}, {"delete", "delete:disk-2"},
	}
	for i, s := range steps {
		t.Run(s.op+"@"+s.step, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			r, q := guestWithTwoDisks(t, home)
			switch s.op {
			case "create":
				crash(t, home, s.step, "snapshot", "create", "web")
				r.expect(t, 0x0c, "live disk after a crashed create")
				recoverAndCheck(t, home, i, r, q, "1,2")
			case "rollback":
				crash(t, home, s.step, "snapshot", "rollback", "web", "1")
				recoverAndCheck(t, home, i, r, q, "1,2")
			case "delete":
				crash(t, home, s.step, "snapshot", "delete", "web", "1")
				recoverAndCheck(t, home, i, r, q, "2")
			}
		})
	}
}

// After a crash in the middle of a rollback, the disks end up all at the
// point or all as before: never a mix.
func TestCrashedRollbackIsAllOrNothing(t *testing.T) {
	for _, step := range []string{"create:disk-1", "rollback:pre-point", "rollback:disk-1"} {
		t.Run(step, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			r, q := guestWithTwoDisks(t, home)
			crash(t, home, step, "snapshot", "rollback", "web", "1")
			ok(t, home, "doctor", "--repair")
			atPoint := r.has(t, 0x0a) && q.has(t, 0x0a)
			before := r.has(t, 0x0c) && q.has(t, 0x0c)
			if atPoint == before {
				t.Errorf("after recovery the disks are mixed (at point: %v, as before: %v)", atPoint, before)
			}
			if step == "create:disk-1" && !before {
				t.Errorf("a rollback that crashed before its pre-rollback point was complete must not happen")
			}
			if step == "rollback:disk-1" && !atPoint {
				t.Errorf("a rollback that crashed after its pre-rollback point must be finished")
			}
		})
	}
}

func TestSnapshotRun(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	d.write(t, 0x01)
	update := func(b byte, exit int) []string {
		// The admin's update: it writes to the disk, then exits with code exit.
		script := fmt.Sprintf("qemu-io -f qcow2 -c 'write -P 0x%02x 0 1M' -c 'write -P 0x%02x 16M 1M' %s >/dev/null && exit %d", b, b, d.path, exit)
		return []string{"snapshot", "run", "web", "--rollback-on-failure", "--description", "patch", "--", "sh", "-c", script}
	}
	r := runIn(t, home, nil, update(0x02, 3)...)
	if r.code != 3 {
		t.Fatalf("strata must exit with the command's code 3, got %d: %s", r.code, r.stderr)
	}
	d.expect(t, 0x01, "after a failed update with --rollback-on-failure")
	ps := points(t, home, "web")
	if len(ps) != 3 || ps[0].Kind != "pre" || ps[1].Kind != "post" || ps[1].PreID == nil || *ps[1].PreID != 1 || ps[2].Kind != "pre-rollback" || ps[0].Description != "patch" {
		t.Fatalf("points after a failed run: %+v", ps)
	}
	// The post point keeps the failed state for inspection.
	ok(t, home, "snapshot", "rollback", "web", "2")
	d.expect(t, 0x02, "post point of the failed update")
	ok(t, home, "snapshot", "rollback", "web", "1")
	// A successful update keeps its result.
	if r := runIn(t, home, nil, update(0x03, 0)...); r.code != 0 {
		t.Fatalf("successful run: exit %d: %s", r.code, r.stderr)
	}
	d.expect(t, 0x03, "after a successful update")
	// Without --rollback-on-failure a failure keeps the new state.
	r = runIn(t, home, nil, "snapshot", "run", "web", "--", "false")
	if r.code != 1 {
		t.Errorf("exit %d, want false's 1", r.code)
	}
	d.expect(t, 0x03, "after a failed run without rollback")
	// Manual pairs.
	var pre, post pointJSON
	jsonOf(t, home, &pre, "snapshot", "create", "web", "--pre")
	jsonOf(t, home, &post, "snapshot", "create", "web", "--post", fmt.Sprint(pre.ID))
	if pre.Kind != "pre" || post.Kind != "post" || *post.PreID != pre.ID {
		t.Errorf("manual pair %+v %+v", pre, post)
	}
	fails(t, home, 2, []string{"pairs with a pre point"}, "snapshot", "create", "web", "--post", fmt.Sprint(post.ID))
	fails(t, home, 2, []string{"put the command after --"}, "snapshot", "run", "web", "true")
	fails(t, home, 2, []string{`command "no-such-cmd" not found`}, "snapshot", "run", "web", "--", "no-such-cmd")
}

func TestPruneThroughCLI(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	// A synthetic history: a point a day for 10 days (creation times
	// injected with STRATA_TEST_NOW).
	for day := 1; day <= 10; day++ {
		if r := runIn(t, home, []string{fmt.Sprintf("STRATA_TEST_NOW=2026-11-%02dT12:00:00Z", day)}, "snapshot", "create", "web"); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	ok(t, home, "snapshot", "pin", "web", "2")
	env := []string{"STRATA_TEST_NOW=2026-11-10T18:00:00Z"}
	r := runIn(t, home, env, "--output", "json", "snapshot", "prune", "web", "--keep-last", "3", "--dry-run")
	if r.code != 0 || ids(points(t, home, "web")) != "1,2,3,4,5,6,7,8,9,10" {
		t.Fatalf("dry run changed something: %d %s", r.code, r.stderr)
	}
	if r = runIn(t, home, env, "snapshot", "prune", "web", "--keep-last", "3", "--older-than", "5d"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// Kept: last 3 (10,9,8), younger than 5 days (6..10), pinned 2.
	if got := ids(points(t, home, "web")); got != "2,6,7,8,9,10" {
		t.Errorf("after prune: %s", got)
	}
	ok(t, home, "snapshot", "policy", "web", "--keep-last", "2")
	if r = runIn(t, home, env, "snapshot", "prune", "--all"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := ids(points(t, home, "web")); got != "2,9,10" {
		t.Errorf("after prune --all with the stored policy: %s", got)
	}
	// Every internal snapshot of pruned points is gone from the image.
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor: %s", r.stdout)
	}
	fails(t, home, 2, []string{"no retention rule"}, "snapshot", "prune", "--volume", "sys")
	fails(t, home, 2, []string{"invalid --keep-last -1"}, "snapshot", "prune", "web", "--keep-last=-1")
}

func TestSnapshotBadInput(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "sys", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	d.write(t, 0x01)
	ok(t, home, "snapshot", "create", "web", "--name", "base")
	ok(t, home, "snapshot", "pin", "web", "base")
	newDisk(t, home, "lone", "qcow2", "")
	ok(t, home, "snapshot", "create", "--volume", "lone")
	cases := []struct {
		code int
		want []string
		args []string
	}{
		{3, []string{`guest "nope" not found`}, []string{"snapshot", "create", "nope"}},
		{3, []string{`no restore point "99"`}, []string{"snapshot", "rollback", "web", "99"}},
		{3, []string{`no restore point "later"`}, []string{"snapshot", "show", "web", "later"}},
		{3, []string{`volume "nope" not found`}, []string{"snapshot", "list", "--volume", "nope"}},
		{2, []string{"would be read as a point's id"}, []string{"snapshot", "create", "web", "--name", "12"}},
		{2, []string{`invalid restore point name "../x"`}, []string{"snapshot", "create", "web", "--name", "../x"}},
		{4, []string{`already has a restore point named "base"`}, []string{"snapshot", "create", "web", "--name", "base"}},
		{2, []string{`invalid tag "novalue"`}, []string{"snapshot", "create", "web", "--tag", "novalue"}},
		{2, []string{"method reflink needs"}, []string{"snapshot", "create", "web", "--method", "reflink"}},
		{2, []string{`invalid method "lvm"`}, []string{"snapshot", "create", "web", "--method", "lvm"}},
		{2, []string{"--pre and --post exclude"}, []string{"snapshot", "create", "web", "--pre", "--post", "1"}},
		{3, []string{"no restore point 9 to pair"}, []string{"snapshot", "create", "web", "--post", "9"}},
		{2, []string{"numbers start at 1"}, []string{"snapshot", "delete", "web", "0"}},
		{7, []string{"is pinned", "unpin"}, []string{"snapshot", "delete", "web", "base"}},
		{5, []string{`volume "sys" is a disk of guest "web"`}, []string{"volume", "delete", "sys"}},
		{5, []string{"held by 1 restore point", "volume:lone#1"}, []string{"volume", "delete", "lone"}},
		{5, []string{`guest "web" has 1 restore point`}, []string{"guest", "delete", "web"}},
		{2, []string{"takes 2 argument(s)"}, []string{"snapshot", "rollback", "web"}},
		{4, []string{`guest "web" already exists`}, []string{"guest", "define", "web", "--disk", "sys"}},
		{3, []string{`volume "nodisk" not found`}, []string{"guest", "define", "other", "--disk", "nodisk"}},
	}
	for _, tc := range cases {
		before := snapshotState(t, home) + ids(points(t, home))
		fails(t, home, tc.code, tc.want, tc.args...)
		if after := snapshotState(t, home) + ids(points(t, home)); after != before {
			t.Errorf("%v changed the state", tc.args)
		}
	}
	d.expect(t, 0x01, "after refusals")
}

// A rollback while another process works on the guest (here: holds its
// lock, as a long point creation does) waits, then fails with busy.
func TestRollbackWhileBusy(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "sys", "raw", "")
	var g struct{ ID string }
	jsonOf(t, home, &g, "guest", "define", "web", "--disk", "sys")
	d.write(t, 0x01)
	ok(t, home, "snapshot", "create", "web")
	d.write(t, 0x02)
	f, err := os.OpenFile(filepath.Join(home, "locks", "g-"+g.ID+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, home, nil, "--lock-timeout", "200ms", "snapshot", "rollback", "web", "1")
	f.Close()
	if r.code != 6 || !strings.Contains(r.stderr, "guest:web is busy") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	d.expect(t, 0x02, "disk after a refused rollback")
	if got := ids(points(t, home, "web")); got != "1" {
		t.Errorf("points %s", got)
	}
}

// Two creates on one guest at once both succeed, one after the other.
func TestConcurrentSnapshotCreate(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	var wg sync.WaitGroup
	res := make([]result, 4)
	for i := range res {
		wg.Add(1)
		go func(i int) { defer wg.Done(); res[i] = runIn(t, home, nil, "snapshot", "create", "web") }(i)
	}
	wg.Wait()
	for i, r := range res {
		if r.code != 0 {
			t.Errorf("create %d: exit %d %s", i, r.code, r.stderr)
		}
	}
	if got := ids(points(t, home, "web")); got != "1,2,3,4" {
		t.Errorf("points %s", got)
	}
}

// A full copy that does not fit is refused before it starts; one that
// runs into a full disk anyway (the pre-check disabled by a test-only
// switch) is undone. Either way nothing is lost or left behind.
func TestFullCopyOnFullDisk(t *testing.T) {
	mnt := storagetest.LoopFS(t, "ext4", 48<<20)
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "small", "--path", mnt)
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "big", "--size", "40M", "--pool", "small")
	storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x55 0 28M", v.Path)
	before := ids(points(t, home, "--volume", "big"))
	fails(t, home, 7, []string{"not enough space for a full copy", "reflink"}, "snapshot", "create", "--volume", "big")
	r := runIn(t, home, []string{"STRATA_TEST_SKIP_SPACE_CHECK=1"}, "snapshot", "create", "--volume", "big")
	if r.code != 7 || !strings.Contains(r.stderr, "no space left") {
		t.Errorf("real ENOSPC: exit %d %s", r.code, r.stderr)
	}
	if after := ids(points(t, home, "--volume", "big")); after != before {
		t.Errorf("points changed: %q → %q", before, after)
	}
	left, _ := filepath.Glob(filepath.Join(mnt, ".strata-points", "*"))
	if len(left) > 0 {
		t.Errorf("partial copies left: %v", left)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor: %s", r.stdout)
	}
	if !(disk{v.Path, "raw"}).hasRange(t, 0x55, "0 28M") {
		t.Errorf("live disk damaged")
	}
}

// Pre/post pairs whose post shows no change go with --empty-pairs where
// the method can compare (full copies); a pair with a change stays, and so
// do qcow2 pairs (internal snapshots cannot be compared).
func TestPruneEmptyPairs(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "sys", "raw", "")
	q := newDisk(t, home, "qsys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "guest", "define", "qweb", "--disk", "qsys")
	d.write(t, 0x01)
	ok(t, home, "snapshot", "run", "web", "--", "true") // 1, 2: empty
	script := fmt.Sprintf("qemu-io -f raw -c 'write -P 0x02 0 1M' %s >/dev/null", d.path)
	ok(t, home, "snapshot", "run", "web", "--", "sh", "-c", script) // 3, 4: a change
	ok(t, home, "snapshot", "run", "web", "--", "true")             // 5, 6: empty
	ok(t, home, "snapshot", "pin", "web", "6")                      // a pinned pair stays
	ok(t, home, "snapshot", "run", "qweb", "--", "true")
	r := runIn(t, home, nil, "--output", "json", "snapshot", "prune", "web", "--empty-pairs", "--dry-run")
	if r.code != 0 || ids(points(t, home, "web")) != "1,2,3,4,5,6" {
		t.Fatalf("dry run: %d %s", r.code, r.stderr)
	}
	ok(t, home, "snapshot", "prune", "web", "--empty-pairs")
	if got := ids(points(t, home, "web")); got != "3,4,5,6" {
		t.Errorf("after --empty-pairs: %s, want 3,4,5,6", got)
	}
	ok(t, home, "snapshot", "prune", "qweb", "--empty-pairs")
	if got := ids(points(t, home, "qweb")); got != "1,2" {
		t.Errorf("qcow2 pair: %s, want it kept", got)
	}
	_ = q
}

// A catalog from before the point indexes (no snapshot schema) is migrated on first
// use: names, unfinished points and the volumes points hold are indexed
// from the records, so a taken name is still refused, a point interrupted
// before the upgrade is still undone, and the indexes follow every change
// after it.
func TestSnapshotIndexMigration(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d := newDisk(t, home, "v", "qcow2", "")
	d.write(t, 0x11)
	ok(t, home, "snapshot", "create", "--volume", "v", "--name", "before")
	d.write(t, 0x22)
	ok(t, home, "snapshot", "create", "--volume", "v")
	crash(t, home, "create:recorded", "snapshot", "create", "--volume", "v", "--name", "crashed")

	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		// As a catalog from before the indexes and the holds was.
		for _, b := range []string{"point_names", "point_pending", "point_volumes", "holds"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("schema_version:snapshot"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	fails(t, home, 4, []string{`already has a restore point named "before"`}, "snapshot", "create", "--volume", "v", "--name", "before")
	ok(t, home, "snapshot", "show", "--volume", "v", "before")
	// The next operation on the volume undoes the interrupted point 3,
	// which frees its name.
	ok(t, home, "snapshot", "create", "--volume", "v", "--name", "crashed")
	if got := ids(points(t, home, "--volume", "v")); got != "1,2,4" {
		t.Errorf("points after the upgrade: %s, want 1,2,4", got)
	}
	fails(t, home, 5, []string{"held by 3 restore point(s)"}, "volume", "delete", "v")
	ok(t, home, "snapshot", "rollback", "--volume", "v", "before")
	d.expect(t, 0x11, "rolled back to the named point after the upgrade")
	for _, p := range []string{"before", "crashed", "2", "5"} {
		ok(t, home, "snapshot", "delete", "--volume", "v", p)
	}
	ok(t, home, "volume", "delete", "v")

	// Nothing is left in the indexes once the points are gone.
	db, err = bolt.Open(filepath.Join(home, "catalog.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		for _, b := range []string{"points", "point_names", "point_pending", "point_volumes", "holds"} {
			if bk := tx.Bucket([]byte(b)); bk == nil {
				t.Errorf("bucket %s missing after the migration", b)
			} else if n := bk.Stats().KeyN; n != 0 {
				t.Errorf("bucket %s keeps %d keys after every point was deleted", b, n)
			}
		}
		return nil
	})
}

// setMeta runs fn on the catalog of home with bbolt directly (to make a
// catalog as an older strata, or a damaged one, left it).
func setMeta(t *testing.T, home string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// bucketKeys counts the keys of a catalog bucket.
func bucketKeys(t *testing.T, home, bucket string) int {
	t.Helper()
	db, err := bolt.Open(filepath.Join(home, "catalog.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// The point-index migration rebuilds rather than adds: run again over
// indexes that exist, it leaves them exact. A point record it cannot read
// is left out and logged, not a reason to refuse every command.
func TestSnapshotIndexMigrationRerunAndDamage(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "qcow2", "")
	ok(t, home, "snapshot", "create", "--volume", "v", "--name", "one")
	setMeta(t, home, func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("points")).Put([]byte("v-0000000000000000/0000000001"), []byte("{not json")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("schema_version:snapshot"))
	})
	r := runIn(t, home, nil, "volume", "list")
	if r.code != 0 || !strings.Contains(r.stderr, "restore point record unreadable") {
		t.Errorf("volume list over a damaged point record: exit %d, stderr %q; want it to work and say so", r.code, r.stderr)
	}
	setMeta(t, home, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("points")).Delete([]byte("v-0000000000000000/0000000001"))
	})
	fails(t, home, 4, []string{`named "one"`}, "snapshot", "create", "--volume", "v", "--name", "one")
	ok(t, home, "snapshot", "delete", "--volume", "v", "one")
	for _, b := range []string{"point_names", "point_pending", "point_volumes"} {
		if n := bucketKeys(t, home, b); n != 0 {
			t.Errorf("bucket %s keeps %d keys after its only point was deleted", b, n)
		}
	}
}

// Names that are urfave/cli's help words are names to every command that
// takes names: a guest called h or help gets its points.
func TestGuestsNamedLikeHelpGetPoints(t *testing.T) {
	home := t.TempDir()
	for _, name := range []string{"h", "help"} {
		ok(t, home, "volume", "create", name, "--size", "1M")
		ok(t, home, "guest", "define", name, "--disk", name, "--memory", "16", "--os", "other")
		ok(t, home, "snapshot", "create", name, "--name", "x")
		var ps []struct{ Name string }
		jsonOf(t, home, &ps, "snapshot", "list", name)
		if len(ps) != 1 || ps[0].Name != "x" {
			t.Fatalf("points of guest %q: %+v", name, ps)
		}
	}
	if out := ok(t, home, "snapshot", "create", "--help"); !strings.Contains(out, "take a restore point") {
		t.Fatalf("snapshot create --help: %s", out)
	}
}

// A guest's disks cannot change under an operation that waits for the
// guest's lock: guest set takes that lock too (it used to change the disks
// while snapshot create waited, and the create then wrote the new disk
// without its lock). The create, once the lock is free, takes its point of
// the disk the guest had.
func TestGuestLockCoversDiskAddedWhileWaiting(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "volume", "create", "c", "--size", "32M", "--format", "qcow2")
	var g struct{ ID string }
	jsonOf(t, home, &g, "guest", "define", "web", "--disk", "sys")
	release := holdLock(t, home, "g-"+g.ID)
	done := make(chan result)
	go func() { done <- runIn(t, home, nil, "snapshot", "create", "web") }()
	time.Sleep(500 * time.Millisecond) // the create waits for g-web
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "guest", "set", "web", "disks.0.volume=c")
	release()
	if r := <-done; r.code != 0 {
		t.Fatalf("snapshot create web: exit %d %s", r.code, r.stderr)
	}
	var ps []struct {
		Disks []struct{ Volume string } `json:"disks"`
	}
	jsonOf(t, home, &ps, "snapshot", "list", "web")
	if len(ps) != 1 || len(ps[0].Disks) != 1 || ps[0].Disks[0].Volume != "sys" {
		t.Errorf("points of web: %+v, want one point of sys", ps)
	}
}

// The hints strata prints for a volume target leave out --volume: run
// as printed they act on the guest of the same name.
func TestVolumeHintsSayVolume(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "web", "qcow2", "")
	newDisk(t, home, "sys", "qcow2", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "--volume", "web")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "snapshot", "create", "web")
	out := ok(t, home, "snapshot", "rollback", "--volume", "web", "1")
	if !strings.Contains(out, "strata snapshot rollback --volume web 2") {
		t.Errorf("undo hint of a volume rollback: %q (run as printed, it rolls guest web back to its point 2)", out)
	}
	ok(t, home, "snapshot", "pin", "--volume", "web", "1")
	r := fails(t, home, 7, nil, "snapshot", "delete", "--volume", "web", "1")
	if !strings.Contains(r.stderr, "unpin --volume web 1") {
		t.Errorf("pinned hint: %q (run as printed, it unpins guest web's point 1)", r.stderr)
	}
}

// Flag combinations that cannot mean what they say are refused (exit 2)
// and change nothing.
func TestSnapshotFlagCombinationsRefused(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "v", "qcow2", "")
	ok(t, home, "snapshot", "create", "--volume", "v", "--pre")
	ok(t, home, "snapshot", "policy", "--volume", "v", "--keep-last", "5")
	before := snapshotState(t, home)
	fails(t, home, 2, []string{"invalid --post 0"}, "snapshot", "create", "--volume", "v", "--post", "0")
	fails(t, home, 2, []string{"invalid --post -3"}, "snapshot", "create", "--volume", "v", "--post=-3")
	fails(t, home, 2, []string{"no --empty-pairs"}, "snapshot", "prune", "--all", "--empty-pairs")
	fails(t, home, 2, []string{"--clear removes the stored policy"}, "snapshot", "policy", "--volume", "v", "--clear", "--keep-last", "3")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a refused command changed the state")
	}
}

// volume resize and delete wait for the lock a restore point operation
// holds on the volume (a resize during a rollback went into the
// pre-rollback point's hard-linked file, not the volume), and give up with
// "busy" after --lock-timeout, changing nothing.
func TestResizeAndDeleteWaitForPointOperation(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "sys", "--size", "32M")
	ok(t, home, "snapshot", "create", "--volume", "sys")
	ok(t, home, "snapshot", "delete", "--volume", "sys", "1")
	f, err := os.OpenFile(filepath.Join(home, "locks", "v-"+v.ID+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	before := snapshotState(t, home)
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "volume", "resize", "sys", "--size", "64M")
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "volume", "delete", "sys")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a busy resize or delete changed the state")
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	ok(t, home, "volume", "resize", "sys", "--size", "64M")
	ok(t, home, "volume", "delete", "sys")
}

// guest delete (--with-disks) and guest set wait for the locks a restore
// point operation holds on the guest and its disks: the delete used to
// remove a disk's image under a running copy, and a set was lost to the
// rollback's record.
func TestGuestDeleteAndSetWaitForPointOperation(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	var v volumeJSON
	jsonOf(t, home, &v, "volume", "create", "sys", "--size", "32M")
	ok(t, home, "volume", "create", "other", "--size", "32M")
	var g struct{ ID string }
	jsonOf(t, home, &g, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web")
	ok(t, home, "snapshot", "delete", "web", "1")
	releaseV := holdLock(t, home, "v-"+v.ID)
	releaseG := holdLock(t, home, "g-"+g.ID)
	before := snapshotState(t, home)
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "guest", "delete", "web", "--with-disks")
	fails(t, home, 6, []string{"busy"}, "--lock-timeout", "200ms", "guest", "set", "web", "disks.0.volume=other")
	if after := snapshotState(t, home); after != before {
		t.Errorf("a busy guest delete or set changed the state")
	}
	if _, err := os.Stat(v.Path); err != nil {
		t.Errorf("the disk's image was removed under the point operation: %v", err)
	}
	releaseG()
	releaseV()
	ok(t, home, "guest", "set", "web", "disks.0.volume=other")
	ok(t, home, "guest", "delete", "web", "--with-disks")
}

// snapshot delete takes several points, by number, name and range; one
// that is missing or pinned deletes nothing.
func TestSnapshotDeleteSeveralPointsAllOrNothing(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "create", "v", "--size", "16M", "--format", "qcow2")
	ok(t, h, "guest", "define", "g", "--disk", "v")
	for i := 1; i <= 8; i++ {
		ok(t, h, "snapshot", "create", "g", "--name", fmt.Sprintf("p%d", i))
	}
	ok(t, h, "snapshot", "pin", "g", "6")
	ids := func() string {
		var ps []struct{ ID int }
		jsonOf(t, h, &ps, "snapshot", "list", "g")
		var s []string
		for _, p := range ps {
			s = append(s, fmt.Sprint(p.ID))
		}
		return strings.Join(s, ",")
	}
	fails(t, h, 7, []string{"pinned", "nothing was deleted"}, "snapshot", "delete", "g", "1", "4-7")
	fails(t, h, 3, []string{"no restore point \"p99\""}, "snapshot", "delete", "g", "2", "p99")
	fails(t, h, 2, []string{"invalid range \"7-3\""}, "snapshot", "delete", "g", "7-3")
	if got := ids(); got != "1,2,3,4,5,6,7,8" {
		t.Fatalf("a refused delete changed the points: %s", got)
	}
	r := runIn(t, h, nil, "snapshot", "delete", "g", "p1", "3-5", "4", "8")
	if r.code != 0 || strings.Count(r.stderr, "restore point deleted") != 5 {
		t.Fatalf("delete of p1 3-5 4 8: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := ids(); got != "2,6,7" {
		t.Fatalf("after deleting p1 3-5 4 8: points %s, want 2,6,7", got)
	}
	fails(t, h, 3, []string{"no restore point numbered 3 to 5"}, "snapshot", "delete", "g", "3-5")
	// The qcow2 image holds exactly the survivors' internal snapshots.
	var v struct{ Path string }
	jsonOf(t, h, &v, "volume", "info", "v")
	out, err := exec.Command("qemu-img", "snapshot", "-l", "-U", v.Path).CombinedOutput()
	if err != nil || strings.Count(string(out), "strata-") != 3 {
		t.Fatalf("qemu-img snapshot -l after the deletes: %v\n%s", err, out)
	}
}
