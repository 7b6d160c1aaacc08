package main_test

import (
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
)

// doctor finds the RBD images strata made that no record names (a volume
// create killed between rbd create and its record, or an image a delete
// could not remove): one finding of kind orphan-image each, in a pool
// this home owns; --repair removes them, but never an image a client has
// open, nor one holding a snapshot a restore point record names, nor any
// image strata does not name as its own. Once let go, the open one goes
// too.
func TestDoctorFindsAndRemovesOrphanRBDImages(t *testing.T) {
	c := storagetest.CephCluster(t)
	ns := c.Namespace(t)
	home := t.TempDir()
	ok(t, home, "pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", ns, "--ceph-conf", c.Conf)
	ok(t, home, "volume", "create", "disk", "--pool", "ceph", "--size", "4M")
	ok(t, home, "snapshot", "create", "--volume", "disk")
	var p1 pointJSON
	jsonOf(t, home, &p1, "snapshot", "show", "--volume", "disk", "1")
	if out, code := doctor(t, home); code != 0 || len(out) != 0 {
		t.Fatalf("doctor of a healthy rbd pool: exit %d, %+v", code, out)
	}
	rbd := func(args ...string) {
		t.Helper()
		storagetest.Cmd(t, append([]string{"rbd", "--conf", c.Conf}, args...)...)
	}
	spec := func(image string) string { return c.Pool + "/" + ns + "/" + image }
	path := func(image string) string { return "rbd:" + spec(image) + ":conf=" + c.Conf }
	const (
		plain   = "strata-00000000000000a1"                 // a create killed before its record
		aside   = "strata-00000000000000a2.strata-applying" // a rollback's name for it
		open    = "strata-00000000000000a3"                 // a client has it open
		pointed = "strata-00000000000000a4"                 // holds a snapshot a point record names
	)
	for _, img := range []string{plain, aside, open, pointed, "strata-web", "admin-disk"} {
		rbd("create", "--size", "1M", spec(img))
	}
	rbd("snap", "create", spec(pointed)+"@"+p1.Disks[0].Ref)
	release := storagetest.HoldRBDOpen(t, path(open))

	want := []string{path(aside), path(plain), path(open), path(pointed)}
	sort.Strings(want)
	orphans := func(fs []findingOut) (paths []string, repaired map[string]bool) {
		repaired = map[string]bool{}
		for _, f := range fs {
			if f.Kind == "orphan-image" {
				paths = append(paths, f.Path)
				repaired[f.Path] = f.Repaired
			}
		}
		sort.Strings(paths)
		return paths, repaired
	}
	fs, code := doctor(t, home)
	if got, _ := orphans(fs); code != 7 || len(fs) != len(want) || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("doctor: exit %d, %+v\nwant the orphan images %q", code, fs, want)
	}
	fs, code = doctor(t, home, "--repair")
	got, repaired := orphans(fs)
	if code != 7 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("doctor --repair: exit %d, %+v", code, fs)
	}
	for img, gone := range map[string]bool{plain: true, aside: true, open: false, pointed: false} {
		if repaired[path(img)] != gone || rbdExists(c.Conf, spec(img)) == gone {
			t.Errorf("%s: repaired %v, still there %v; want removed %v", img, repaired[path(img)], rbdExists(c.Conf, spec(img)), gone)
		}
	}
	for _, img := range []string{"strata-web", "admin-disk"} {
		if !rbdExists(c.Conf, spec(img)) {
			t.Errorf("doctor --repair removed %s, which strata does not name as its own", img)
		}
	}
	// The volume and its point are untouched.
	ok(t, home, "snapshot", "rollback", "--volume", "disk", "1")

	release()
	fs, _ = doctor(t, home, "--repair")
	if got, repaired := orphans(fs); len(got) != 2 || !repaired[path(open)] || repaired[path(pointed)] || rbdExists(c.Conf, spec(open)) {
		t.Errorf("doctor --repair once the client let go: %+v", fs)
	}
}

// A pool another home owns (its owner marker names that home) cannot be
// added, and a pool holding strata's images without a marker neither;
// in a pool whose marker is another home's, doctor reports orphans but
// removes none.
func TestRBDPoolOfAnotherHomeIsNotCleaned(t *testing.T) {
	c := storagetest.CephCluster(t)
	ns := c.Namespace(t)
	a, b := t.TempDir(), t.TempDir()
	add := []string{"pool", "add", "ceph", "--driver", "rbd", "--pool", c.Pool, "--namespace", ns, "--ceph-conf", c.Conf}
	ok(t, a, add...)
	fails(t, b, 5, []string{"ceph", "another strata state home"}, add...)
	spec := c.Pool + "/" + ns + "/strata-00000000000000b1"
	storagetest.Cmd(t, "rbd", "--conf", c.Conf, "create", "--size", "1M", spec)

	// b holds the pool too (added before markers, say: marker removed,
	// added, marker put back as a's).
	marker := storagetest.Cmd(t, "rados", "--conf", c.Conf, "--pool", c.Pool, "--namespace", ns, "getomapval", "strata_pool", "owner", "/dev/stdout")
	storagetest.Cmd(t, "rados", "--conf", c.Conf, "--pool", c.Pool, "--namespace", ns, "rmomapkey", "strata_pool", "owner")
	fails(t, b, 5, []string{"no owner marker", "strata-00000000000000b1"}, add...)
	storagetest.Cmd(t, "rbd", "--conf", c.Conf, "rm", spec)
	ok(t, b, add...)
	storagetest.Cmd(t, "rados", "--conf", c.Conf, "--pool", c.Pool, "--namespace", ns, "setomapval", "strata_pool", "owner", strings.TrimSpace(marker))
	storagetest.Cmd(t, "rbd", "--conf", c.Conf, "create", "--size", "1M", spec)

	fs, code := doctor(t, b, "--repair")
	if code != 7 || len(fs) != 1 || fs[0].Kind != "orphan-image" || fs[0].Repaired || !strings.Contains(fs[0].Detail, "belongs to another strata state home") {
		t.Fatalf("doctor --repair of b, in a's pool: exit %d, %+v", code, fs)
	}
	if !rbdExists(c.Conf, spec) {
		t.Fatal("b's doctor removed an image from a's pool")
	}
	fs, code = doctor(t, a, "--repair")
	if code != 0 || len(fs) != 1 || !fs[0].Repaired || rbdExists(c.Conf, spec) {
		t.Fatalf("doctor --repair of a, the pool's owner: exit %d, %+v", code, fs)
	}
}

// rbdExists tells whether rbd image spec is there.
func rbdExists(conf, spec string) bool {
	return exec.Command("rbd", "--conf", conf, "info", spec).Run() == nil
}
