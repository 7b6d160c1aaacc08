package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-vm/strata/storage/storagetest"
	"golang.org/x/sys/unix"
)

// goldenJSON is the documented shape of golden list/show --output json.
type goldenJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Created string `json:"created"`
	Kind    string `json:"kind"`
	Source  struct {
		Kind  string `json:"kind"`
		Name  string `json:"name"`
		Point *int   `json:"point"`
	} `json:"source"`
	Disks []struct {
		Volume string `json:"volume"`
		Path   string `json:"path"`
		Format string `json:"format"`
		Bytes  int64  `json:"allocated_bytes"`
	} `json:"disks"`
	Clones       int         `json:"clones"`
	LinkedClones int         `json:"linked_clones"`
	Bytes        int64       `json:"bytes"`
	From         *string     `json:"from"`
	CloneList    []cloneJSON `json:"clone_list"`
}

// cloneJSON is the documented shape of a clone in clone --output json.
type cloneJSON struct {
	Name   string   `json:"name"`
	Kind   string   `json:"kind"`
	Golden string   `json:"golden"`
	UUID   string   `json:"uuid"`
	MACs   []string `json:"macs"`
	Disks  []struct {
		Volume  string  `json:"volume"`
		Path    string  `json:"path"`
		Format  string  `json:"format"`
		Backing *string `json:"backing"`
		Linked  bool    `json:"linked"`
		Method  string  `json:"method"`
	} `json:"disks"`
}

// chain is qemu-img info --backing-chain --output=json.
func chain(t *testing.T, path string) []struct {
	Filename      string `json:"filename"`
	Format        string `json:"format"`
	BackingFile   string `json:"full-backing-filename"`
	BackingFormat string `json:"backing-filename-format"`
} {
	t.Helper()
	var c []struct {
		Filename      string `json:"filename"`
		Format        string `json:"format"`
		BackingFile   string `json:"full-backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}
	out := storagetest.Cmd(t, "qemu-img", "info", "--backing-chain", "--output=json", "-U", path)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	return c
}

// webGuest makes the guest "web": a raw and a qcow2 disk holding pattern
// 0x11, and two NICs.
func webGuest(t *testing.T, home string) (sys, data disk) {
	t.Helper()
	sys = newDisk(t, home, "sys", "raw", "")
	data = newDisk(t, home, "data", "qcow2", "")
	sys.write(t, 0x11)
	data.write(t, 0x11)
	for _, d := range []disk{sys, data} {
		// Data that clones never overwrite: it stays in the golden.
		storagetest.Cmd(t, "qemu-io", "-f", d.format, "-c", "write -P 0x55 8M 1M", d.path)
	}
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "data", "--nic", "bridge=xenbr0", "--nic", "bridge=xenbr1")
	return sys, data
}

func cloneDisks(c cloneJSON) []disk {
	var ds []disk
	for _, d := range c.Disks {
		ds = append(ds, disk{d.Path, d.Format})
	}
	return ds
}

// The admin's story: freeze a guest with a raw and a qcow2 disk, make 5
// linked clones, keep them apart, refuse to delete the golden under them,
// flatten one (same bytes, restore points still work), refresh the golden
// from a clone, retire the old golden.
func TestGoldenLinkedClones(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	sys, _ := webGuest(t, home)

	var g goldenJSON
	jsonOf(t, home, &g, "golden", "create", "base", "--from", "web")
	if g.Name != "base" || g.Kind != "guest" || g.Source.Kind != "guest" || g.Source.Name != "web" || g.Source.Point != nil || len(g.Disks) != 2 ||
		g.Disks[0].Format != "raw" || g.Disks[1].Format != "qcow2" || g.From != nil || g.Clones != 0 {
		t.Fatalf("golden create: %+v", g)
	}
	gold := []disk{{g.Disks[0].Path, "raw"}, {g.Disks[1].Path, "qcow2"}}
	for _, d := range gold {
		st, err := os.Stat(d.path)
		if err != nil || st.Mode().Perm() != 0o400 {
			t.Fatalf("golden image %s: %v, mode %v (want 0400)", d.path, err, st.Mode())
		}
		d.expect(t, 0x11, "golden image")
	}
	// The source keeps its own life.
	sys.write(t, 0x22)
	gold[0].expect(t, 0x11, "golden after the source changed")

	var clones []cloneJSON
	jsonOf(t, home, &clones, "clone", "base", "c", "--count", "5")
	if len(clones) != 5 {
		t.Fatalf("clone --count 5 made %d", len(clones))
	}
	uuids, macs := map[string]bool{}, map[string]bool{}
	for i, c := range clones {
		if c.Name != fmt.Sprintf("c-%d", i+1) || c.Kind != "guest" || c.Golden != "base" || len(c.Disks) != 2 || len(c.MACs) != 2 {
			t.Fatalf("clone %d: %+v", i+1, c)
		}
		if uuids[c.UUID] || len(c.UUID) != 36 {
			t.Errorf("clone %s: UUID %q is not a new UUID", c.Name, c.UUID)
		}
		uuids[c.UUID] = true
		for _, m := range c.MACs {
			if macs[m] || !strings.HasPrefix(m, "00:16:3e:") {
				t.Errorf("clone %s: MAC %q is not a new Xen MAC", c.Name, m)
			}
			macs[m] = true
		}
		for k, d := range c.Disks {
			if d.Volume != fmt.Sprintf("c-%d-disk%d", i+1, k+1) || d.Format != "qcow2" || !d.Linked || d.Method != "linked" || d.Backing == nil || *d.Backing != gold[k].path {
				t.Errorf("clone %s disk %d: %+v", c.Name, k+1, d)
			}
			storagetest.Cmd(t, "qemu-img", "check", "-q", d.Path)
			ch := chain(t, d.Path)
			if len(ch) != 2 || ch[0].BackingFile != gold[k].path || ch[0].BackingFormat != gold[k].format || ch[1].Filename != gold[k].path || ch[1].Format != gold[k].format {
				t.Errorf("clone %s disk %d: backing chain %+v", c.Name, k+1, ch)
			}
		}
	}
	// The source's MACs are taken too.
	var web struct {
		NICs []struct{ MAC string } `json:"nics"`
	}
	jsonOf(t, home, &web, "guest", "show", "web")
	for _, n := range web.NICs {
		if macs[n.MAC] {
			t.Errorf("a clone reuses the source's MAC %s", n.MAC)
		}
	}

	// Clones are apart: what clone 1 writes, clone 2 and the golden do not see.
	c1, c2 := cloneDisks(clones[0]), cloneDisks(clones[1])
	for k := range c1 {
		c1[k].write(t, 0x33)
		c1[k].expect(t, 0x33, "clone 1 after writing")
		c2[k].expect(t, 0x11, "clone 2 after clone 1 wrote")
		gold[k].expect(t, 0x11, "golden after clone 1 wrote")
	}

	var list []goldenJSON
	jsonOf(t, home, &list, "golden", "list")
	if len(list) != 1 || list[0].Clones != 5 || list[0].LinkedClones != 5 || list[0].Bytes <= 0 || list[0].Created == "" {
		t.Fatalf("golden list: %+v", list)
	}
	var show goldenJSON
	jsonOf(t, home, &show, "golden", "show", "base")
	if len(show.CloneList) != 5 || show.CloneList[0].Name != "c-1" || show.CloneList[0].UUID != clones[0].UUID {
		t.Errorf("golden show: clones %+v", show.CloneList)
	}

	// Guards: no delete under linked clones, and no volume delete of a disk.
	fails(t, home, 5, []string{`golden image "base"`, `guest "c-1"`, `guest "c-5"`, "flatten"}, "golden", "delete", "base")
	fails(t, home, 4, []string{`"base"`, "already exists"}, "golden", "create", "base", "--from", "web")
	fails(t, home, 4, []string{`guest "c-3" already exists`}, "clone", "base", "c-3")

	// Clone 1 gets its own restore points; flatten keeps its bytes and points.
	ok(t, home, "snapshot", "create", "c-1", "--name", "before")
	for k := range c1 {
		storagetest.Cmd(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x44 4M 1M", c1[k].path)
	}
	before := filepath.Join(t.TempDir(), "before.raw")
	storagetest.Cmd(t, "qemu-img", "convert", "-O", "raw", c1[0].path, before)

	// Lineage: patch clone 1 and freeze it as base-v2.
	var v2 goldenJSON
	jsonOf(t, home, &v2, "golden", "create", "base-v2", "--from", "c-1")
	if v2.From == nil || *v2.From != "base" {
		t.Errorf("base-v2 from %v, want base", v2.From)
	}
	for _, d := range v2.Disks {
		if ch := chain(t, d.Path); len(ch) != 1 {
			t.Errorf("base-v2 image %s has a backing chain: %+v", d.Path, ch)
		}
	}

	var flat []volumeJSON
	jsonOf(t, home, &flat, "guest", "flatten", "c-1")
	if len(flat) != 2 || flat[0].Backing != nil || flat[1].Backing != nil {
		t.Fatalf("guest flatten: %+v", flat)
	}
	storagetest.Cmd(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", before, c1[0].path)
	for k := range c1 {
		if ch := chain(t, c1[k].path); len(ch) != 1 {
			t.Errorf("flattened disk %d still has a chain: %+v", k+1, ch)
		}
		storagetest.Cmd(t, "qemu-img", "check", "-q", c1[k].path)
	}
	ok(t, home, "snapshot", "rollback", "c-1", "before")
	for k := range c1 {
		c1[k].expect(t, 0x33, "flattened clone rolled back to its point")
		// The point read this from the golden: flatten must have kept it.
		if !c1[k].hasRange(t, 0x55, "8M 1M") || !c1[k].hasRange(t, 0x00, "4M 1M") {
			t.Errorf("disk %d: the restore point lost the golden's data (or kept the later write) after flatten", k+1)
		}
	}
	fails(t, home, 5, []string{`guest "c-2"`}, "golden", "delete", "base")
	if strings.Contains(runIn(t, home, nil, "golden", "delete", "base").stderr, `"c-1"`) {
		t.Errorf("a flattened clone is still listed as depending on the golden")
	}

	// Once every clone is flattened or deleted, the golden can go.
	ok(t, home, "volume", "flatten", "c-2-disk1")
	ok(t, home, "volume", "flatten", "c-2-disk2")
	for i := 3; i <= 5; i++ {
		ok(t, home, "guest", "delete", fmt.Sprintf("c-%d", i))
		for k := 1; k <= 2; k++ {
			ok(t, home, "volume", "delete", fmt.Sprintf("c-%d-disk%d", i, k))
		}
	}
	ok(t, home, "golden", "delete", "base")
	for _, d := range gold {
		if _, err := os.Stat(d.path); !os.IsNotExist(err) {
			t.Errorf("golden image %s survived its delete: %v", d.path, err)
		}
	}
	c2[0].expect(t, 0x11, "flattened clone 2 after the golden was deleted")
	jsonOf(t, home, &list, "golden", "list")
	if len(list) != 1 || list[0].Name != "base-v2" || *list[0].From != "base" {
		t.Errorf("golden list after delete: %+v", list)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A golden of a volume at a restore point clones into volumes.
func TestGoldenVolumeAtPoint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	for _, format := range []string{"raw", "qcow2"} {
		d := newDisk(t, home, "v"+format, format, "")
		d.write(t, 0x11)
		ok(t, home, "snapshot", "create", "--volume", "v"+format, "--name", "clean")
		d.write(t, 0x22)
		var g goldenJSON
		jsonOf(t, home, &g, "golden", "create", "g"+format, "--volume", "v"+format+"@clean")
		if g.Kind != "volume" || g.Source.Point == nil || *g.Source.Point != 1 || g.Disks[0].Format != format {
			t.Fatalf("golden of a volume at a point: %+v", g)
		}
		(disk{g.Disks[0].Path, format}).expect(t, 0x11, "golden at point 1")
		d.expect(t, 0x22, "source after the golden was made")
		var cs []cloneJSON
		jsonOf(t, home, &cs, "clone", "g"+format, "n"+format, "--count", "2")
		if len(cs) != 2 || cs[1].Name != "n"+format+"-2" || cs[1].Kind != "volume" || cs[1].Disks[0].Volume != "n"+format+"-2" || len(cs[1].MACs) != 0 {
			t.Fatalf("volume clones: %+v", cs)
		}
		var one cloneJSON
		jsonOf(t, home, &one, "clone", "g"+format, "solo"+format)
		(disk{one.Disks[0].Path, "qcow2"}).expect(t, 0x11, "volume clone")
		ok(t, home, "snapshot", "create", "--volume", "solo"+format)
	}
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Bavail) * fs.Bsize
}

// Full clones: a sparse copy on ext4 (about the source's allocation), a
// FICLONE on XFS reflink=1 (shared extents, almost no space).
func TestGoldenFullClones(t *testing.T) {
	storagetest.NeedRoot(t)
	for _, tc := range []struct{ fs, method string }{{"ext4", "copy"}, {"xfs", "reflink"}} {
		t.Run(tc.fs, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			mnt := storagetest.LoopFS(t, tc.fs, 768<<20)
			pool := filepath.Join(mnt, "pool")
			ok(t, home, "pool", "add", "p", "--path", pool)
			var v volumeJSON
			jsonOf(t, home, &v, "volume", "create", "src", "--size", "1G", "--pool", "p")
			storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 48M", "-c", "write -P 0x6b 512M 16M", v.Path)
			var g goldenJSON
			jsonOf(t, home, &g, "golden", "create", "g", "--volume", "src")
			free := freeBytes(t, pool)
			var c cloneJSON
			jsonOf(t, home, &c, "clone", "g", "full", "--full")
			d := c.Disks[0]
			if d.Method != tc.method || d.Linked || d.Backing != nil || d.Format != "raw" {
				t.Fatalf("full clone on %s: %+v", tc.fs, d)
			}
			storagetest.Cmd(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", g.Disks[0].Path, d.Path)
			src, got := allocated(t, g.Disks[0].Path), allocated(t, d.Path)
			used := free - freeBytes(t, pool)
			switch tc.method {
			case "copy":
				if got < src*9/10 || got > src*11/10 || src < 64<<20 {
					t.Errorf("sparse copy allocates %d bytes, the golden %d", got, src)
				}
			case "reflink":
				if used > 4<<20 {
					t.Errorf("a reflink clone used %d bytes of the pool", used)
				}
				if out := storagetest.Cmd(t, "filefrag", "-v", d.Path); !strings.Contains(out, "shared") {
					t.Errorf("the reflink clone shares no extents:\n%s", out)
				}
			}
			// A full clone does not hold the golden.
			ok(t, home, "golden", "delete", "g")
			(disk{d.Path, "raw"}).hasRange(t, 0x6b, "512M 16M")
			if !(disk{d.Path, "raw"}).hasRange(t, 0x6b, "512M 16M") {
				t.Errorf("full clone lost data after its golden was deleted")
			}
		})
	}
}

// A crash at any step of clone --count 5 or of one clone (or of golden
// create, or of flatten) leaves nothing half-made listed, and doctor
// --repair (or the next command on the golden) leaves no orphan.
func TestCloneCrash(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	webGuest(t, home)
	ok(t, home, "golden", "create", "base", "--from", "web")
	state := func() string {
		var b strings.Builder
		b.WriteString(ok(t, home, "guest", "list"))
		b.WriteString(ok(t, home, "volume", "list"))
		b.WriteString(ok(t, home, "golden", "list"))
		_ = filepath.Walk(filepath.Join(home, "pools"), func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				b.WriteString(p + "\n")
			}
			return nil
		})
		return b.String()
	}
	clean := state()
	steps := []struct {
		step string
		args []string
	}{
		{"clone:journaled", []string{"clone", "base", "c", "--count", "5"}},
		{"clone:disk-1", []string{"clone", "base", "c", "--count", "5"}},
		{"clone:disk-7", []string{"clone", "base", "c", "--count", "5"}},
		{"clone:disk-10", []string{"clone", "base", "c", "--count", "5"}},
		{"clone:disk-2", []string{"clone", "base", "c", "--count", "5", "--full"}},
		{"golden:recorded", []string{"golden", "create", "g2", "--from", "web"}},
		{"golden:disk-1", []string{"golden", "create", "g2", "--from", "web"}},
		{"golden:disk-2", []string{"golden", "create", "g2", "--from", "web"}},
		// One linked clone is made inside the transaction that records
		// it (no journal): a crash leaves orphan files doctor finds.
		{"clone:disk-2", []string{"clone", "base", "c"}},
	}
	for i, s := range steps {
		crash(t, home, s.step, s.args...)
		// guest and volume list do not recover golden operations: they
		// must not show half-made clones anyway.
		for _, list := range [][]string{{"guest", "list"}, {"volume", "list"}} {
			out := ok(t, home, list...)
			if strings.Contains(out, "c-") || strings.Contains(out, "g2") {
				t.Errorf("after a crash at %s, %v lists a half-made clone:\n%s", s.step, list, out)
			}
		}
		if i%2 == 0 {
			r := runIn(t, home, nil, "doctor")
			if s.step != "clone:journaled" && s.step != "golden:recorded" && (r.code != 7 || !strings.Contains(r.stdout, "orphan-file")) {
				t.Errorf("doctor after a crash at %s: exit %d (want 7, orphan files)\n%s", s.step, r.code, r.stdout)
			}
			ok(t, home, "doctor", "--repair")
		} else {
			ok(t, home, "golden", "show", "base") // the next command on the golden recovers it
		}
		if r := runIn(t, home, nil, "doctor"); r.code != 0 {
			t.Errorf("doctor after recovering from a crash at %s: exit %d\n%s%s", s.step, r.code, r.stdout, r.stderr)
		}
		if got := state(); got != clean {
			t.Errorf("after a crash at %s and recovery:\n%s\nwant:\n%s", s.step, got, clean)
		}
	}
	// Everything still works: the same names are free.
	var cs []cloneJSON
	jsonOf(t, home, &cs, "clone", "base", "c", "--count", "5")
	if len(cs) != 5 {
		t.Fatalf("clone after the crashes made %d", len(cs))
	}
	// A crash while flattening leaves the clone linked and intact.
	c1 := cloneDisks(cs[0])
	c1[0].write(t, 0x33)
	for _, step := range []string{"flatten:built", "flatten:renamed"} {
		crash(t, home, step, "volume", "flatten", "c-1-disk1")
		c1[0].expect(t, 0x33, "clone after a crash at "+step)
		// The record still pins the golden until the flatten is settled,
		// and volume info says so, whatever the image names already.
		var vi struct {
			Backing      *string `json:"backing"`
			ImageBacking *string `json:"image_backing"`
		}
		jsonOf(t, home, &vi, "volume", "info", "c-1-disk1")
		if vi.Backing == nil || step == "flatten:renamed" && vi.ImageBacking != nil || step == "flatten:built" && vi.ImageBacking == nil {
			t.Errorf("volume info after a crash at %s: backing %v, image_backing %v", step, vi.Backing, vi.ImageBacking)
		}
		if step == "flatten:renamed" {
			if out := ok(t, home, "volume", "info", "c-1-disk1"); !strings.Contains(out, "doctor --repair finishes the flatten") {
				t.Errorf("volume info of a half-flattened volume does not say so:\n%s", out)
			}
		}
		ok(t, home, "doctor", "--repair")
	}
	ok(t, home, "volume", "flatten", "c-1-disk1")
	if ch := chain(t, c1[0].path); len(ch) != 1 {
		t.Errorf("flatten after the crashes: chain %+v", ch)
	}
	c1[0].expect(t, 0x33, "flattened after the crashes")
	if r := runIn(t, home, nil, "doctor"); r.code != 0 {
		t.Errorf("doctor at the end: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Refusals: bad input changes nothing.
func TestGoldenBadInput(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	webGuest(t, home)
	ok(t, home, "golden", "create", "base", "--from", "web")
	before := snapshotState(t, home)
	for _, tc := range []struct {
		code int
		want []string
		args []string
	}{
		{2, []string{"exactly one source"}, []string{"golden", "create", "g"}},
		{2, []string{"exactly one source"}, []string{"golden", "create", "g", "--from", "web", "--volume", "sys"}},
		{2, []string{"invalid golden image name"}, []string{"golden", "create", "../x", "--from", "web"}},
		{3, []string{`guest "nope" not found`}, []string{"golden", "create", "g", "--from", "nope"}},
		{3, []string{"no restore point"}, []string{"golden", "create", "g", "--from", "web@7"}},
		{2, []string{"numbers start at 1"}, []string{"golden", "create", "g", "--from", "web@0"}},
		{3, []string{`golden image "nope" not found`}, []string{"clone", "nope", "x"}},
		{2, []string{"takes 2 argument(s)"}, []string{"clone", "base"}},
		{2, []string{"invalid --count"}, []string{"clone", "base", "x", "--count", "0"}},
		{2, []string{"invalid guest name"}, []string{"clone", "base", "a/b"}},
		{2, []string{"too long"}, []string{"clone", "base", strings.Repeat("a", 62)}},
		{3, []string{`pool "nope" not found`}, []string{"clone", "base", "x", "--pool", "nope"}},
		{3, []string{`golden image "nope" not found`}, []string{"golden", "delete", "nope"}},
		{3, []string{`volume "nope" not found`}, []string{"volume", "flatten", "nope"}},
	} {
		fails(t, home, tc.code, tc.want, tc.args...)
		if got := snapshotState(t, home); got != before {
			t.Errorf("strata %v changed the state:\n%s\nwant:\n%s", tc.args, got, before)
		}
	}
	// A clone's disk name that is taken refuses the whole clone.
	ok(t, home, "volume", "create", "x-2-disk2", "--size", "1M")
	before = snapshotState(t, home)
	fails(t, home, 4, []string{`volume "x-2-disk2" already exists`}, "clone", "base", "x", "--count", "3")
	if got := snapshotState(t, home); got != before {
		t.Errorf("a refused clone changed the state:\n%s\nwant:\n%s", got, before)
	}
	// A golden's images are not volumes: nothing can write or delete them.
	var g goldenJSON
	jsonOf(t, home, &g, "golden", "show", "base")
	out := ok(t, home, "volume", "list")
	if strings.Contains(out, g.Disks[0].Path) {
		t.Errorf("a golden image is listed as a volume:\n%s", out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(g.Disks[0].Path, &st); err != nil || st.Mode&0o777 != 0o400 {
		t.Errorf("golden image mode %o", st.Mode&0o777)
	}
}

// A pool that holds golden images cannot be removed.
func TestPoolWithGoldenCannotGo(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "gold", "--path", filepath.Join(t.TempDir(), "gold"))
	newDisk(t, home, "src", "qcow2", "gold")
	ok(t, home, "golden", "create", "base", "--volume", "src", "--pool", "gold")
	ok(t, home, "volume", "delete", "src")
	fails(t, home, 5, []string{`pool "gold" still holds golden images "base"`}, "pool", "remove", "gold")
	ok(t, home, "golden", "delete", "base")
	ok(t, home, "pool", "remove", "gold")
}

// An overlay on a golden image whose backing is spelled through another
// path (a pool added through a symlink; import records the real path)
// must still keep the golden from being deleted.
func TestGoldenDeleteSeesOverlaySpelledDifferently(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "pool", "add", "p", "--path", filepath.Join(link, "pool"))
	src := newDisk(t, home, "src", "raw", "p")
	src.write(t, 0x11)
	ok(t, home, "golden", "create", "g", "--volume", "src", "--pool", "p")
	var c cloneJSON
	jsonOf(t, home, &c, "clone", "g", "c")
	var cc volumeJSON
	jsonOf(t, home, &cc, "volume", "import", c.Disks[0].Path, "--copy", "--name", "cc")
	ok(t, home, "volume", "delete", "c")
	fails(t, home, 5, []string{`golden image "g"`, `volume "cc"`}, "golden", "delete", "g")
	(disk{cc.Path, "qcow2"}).expect(t, 0x11, "overlay after golden delete was tried")
}

// A clone names its golden's read-only volumes: they must not be
// deletable while the clone exists.
func TestCloneProtectsReadOnlyVolumeItNames(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "sys", "raw", "")
	newDisk(t, home, "shared", "raw", "")
	ok(t, home, "guest", "define", "web", "--disk", "sys", "--disk", "shared")
	ok(t, home, "guest", "set", "web", "disks.1.access=ro")
	ok(t, home, "golden", "create", "base", "--from", "web")
	ok(t, home, "clone", "base", "c")
	ok(t, home, "guest", "delete", "web")
	fails(t, home, 5, []string{`volume "shared"`, `"c"`}, "volume", "delete", "shared")
	ok(t, home, "guest", "render", "c", "--format", "xl")
}

// Flatten replaces the disk by a new file: it must keep the image's
// owner, mode and extended attributes, as rollback does.
func TestFlattenKeepsOwnerModeAndXattrs(t *testing.T) {
	storagetest.NeedRoot(t)
	home := filepath.Join(t.TempDir(), "home")
	newDisk(t, home, "src", "raw", "")
	ok(t, home, "golden", "create", "g", "--volume", "src")
	var c cloneJSON
	jsonOf(t, home, &c, "clone", "g", "c")
	img := c.Disks[0].Path
	if err := os.Chown(img, 64055, 64055); err != nil {
		t.Fatal(err)
	}
	os.Chmod(img, 0o660)
	if err := unix.Setxattr(img, "user.strata-test", []byte("label"), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	ok(t, home, "volume", "flatten", "c")
	expectIdentity(t, img, 64055, 0o660, "after flatten")
}

// golden create checks each disk's space alone; two disks that do not
// fit together must be refused before any is copied, in golden terms.
func TestGoldenSpaceCheckSumsDisks(t *testing.T) {
	storagetest.NeedRoot(t)
	mnt := t.TempDir()
	storagetest.Cmd(t, "mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt)
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	home := filepath.Join(t.TempDir(), "home")
	ok(t, home, "pool", "add", "small", "--path", filepath.Join(mnt, "p"))
	for _, n := range []string{"a", "b"} {
		d := newDisk(t, home, n, "raw", "")
		storagetest.Cmd(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 2M", d.path)
	}
	ok(t, home, "guest", "define", "w", "--disk", "a", "--disk", "b")
	r := fails(t, home, 7, []string{"golden image", "not enough space"}, "golden", "create", "g", "--from", "w", "--pool", "small")
	if strings.Contains(r.stderr, "restore points") || strings.Contains(r.stderr, `volume "b"`) {
		t.Errorf("refused only after copying disk 1, with restore-point advice: %s", r.stderr)
	}
}

// An empty name is a bad name (exit 2), not a missing object (exit 3).
func TestGoldenEmptyNamesAreBadInput(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	webGuest(t, home)
	ok(t, home, "golden", "create", "base", "--from", "web")
	before := snapshotState(t, home)
	for _, args := range [][]string{
		{"golden", "create", "g", "--from", "@1"},
		{"golden", "create", "g", "--volume", "@1"},
		{"clone", "", "x"},
		{"golden", "delete", ""},
	} {
		r := fails(t, home, 2, nil, args...)
		if !strings.Contains(r.stderr, `""`) && !strings.Contains(r.stderr, `"@1"`) {
			t.Errorf("strata %q: the error does not quote the input: %s", args, r.stderr)
		}
	}
	if snapshotState(t, home) != before {
		t.Errorf("state changed")
	}
}

// One linked clone whose second disk cannot be made leaves nothing: not
// the first disk's overlay, not a record.
func TestOneCloneThatFailsLeavesNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	webGuest(t, home)
	ok(t, home, "golden", "create", "base", "--from", "web")
	var g goldenJSON
	jsonOf(t, home, &g, "golden", "show", "base")
	files := func() []string {
		var out []string
		_ = filepath.Walk(filepath.Join(home, "pools"), func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	before := files()
	second := g.Disks[1].Path
	if err := os.Rename(second, second+".aside"); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, home, nil, "clone", "base", "c")
	if err := os.Rename(second+".aside", second); err != nil {
		t.Fatal(err)
	}
	if r.code == 0 {
		t.Fatalf("clone of a golden missing its second image succeeded:\n%s", r.stdout)
	}
	if got := files(); !slices.Equal(got, before) {
		t.Errorf("a failed clone left files:\n%v\nwant:\n%v", got, before)
	}
	if out := ok(t, home, "volume", "list"); strings.Contains(out, "c-disk") {
		t.Errorf("a failed clone left volumes:\n%s", out)
	}
	ok(t, home, "doctor")
	ok(t, home, "clone", "base", "c") // the name is free
}

// One linked clone killed right after the commit that records it is
// whole: listed, its disks read the golden's data, doctor finds nothing.
func TestOneCloneKilledAfterItsRecordIsWhole(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	webGuest(t, home)
	ok(t, home, "golden", "create", "base", "--from", "web")
	crash(t, home, "clone:recorded", "clone", "base", "c")
	var g goldenJSON
	jsonOf(t, home, &g, "golden", "show", "base")
	if len(g.CloneList) != 1 || g.CloneList[0].Name != "c" || len(g.CloneList[0].Disks) != 2 {
		t.Fatalf("golden show lists the clones %+v, want c with 2 disks", g.CloneList)
	}
	for _, v := range []string{"c-disk1", "c-disk2"} {
		var vi volumeJSON
		jsonOf(t, home, &vi, "volume", "info", v)
		(disk{vi.Path, "qcow2"}).hasRange(t, 0x55, "8M 1M")
	}
	ok(t, home, "doctor")
}
