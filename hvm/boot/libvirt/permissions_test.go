package libvirt_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/storage/storagetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// strataBinary builds cmd/strata once: volumes are made as an admin
// makes them.
func strataBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "strata")
		out, err := exec.Command("go", "build", "-tags", "urfave_cli_no_docs", "-o", binPath, "../../../cmd/strata").CombinedOutput()
		if err != nil {
			buildErr = &exec.Error{Name: string(out), Err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build strata: %v", buildErr)
	}
	return binPath
}

func strata(t *testing.T, home string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(strataBinary(t), append([]string{"--home", home}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("strata %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// asUser runs argv as user u and returns its error with its stderr.
func asUser(t *testing.T, u *user.User, argv ...string) error {
	t.Helper()
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %w: %s", argv, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func owner(t *testing.T, path string) (uint32, os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Uid, st.Mode().Perm()
}

// libvirt runs QEMU as libvirt-qemu (stock Debian: no qemu.conf, dynamic
// ownership on). A guest started through the driver boots from an image
// strata made in its home; that user can open the running guest's image
// (libvirt chowns it for the run) but not the catalog, another guest's
// image, or a listing of the home; at stop libvirt gives the image back.
func TestLibvirtQEMUUserReachesOnlyItsGuestsImages(t *testing.T) {
	e := newEnv(t)
	qu, err := user.Lookup(storagetest.LibvirtQEMUUser)
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(e.dir, "home") // e.dir: /var/tmp/..., mode 0711
	var vols = map[string]struct {
		Path string `json:"path"`
	}{}
	for _, name := range []string{"mine", "other"} {
		strata(t, home, "volume", "create", name, "--size", "1M", "--format", "raw")
		var v struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal(strata(t, home, "--output", "json", "volume", "info", name), &v); err != nil {
			t.Fatal(err)
		}
		vols[name] = v
	}
	mine, other := vols["mine"].Path, vols["other"].Path
	// An install CD, built into the default pool as an admin would.
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("cd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	strata(t, home, "iso", "build", src, "cd")
	var m struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(strata(t, home, "--output", "json", "iso", "info", "cd"), &m); err != nil || m.Path == "" {
		t.Fatalf("iso info: %v %+v", err, m)
	}
	iso := m.Path
	// The boot sector goes into the image in place: owner and mode are
	// strata's.
	f, err := os.OpenFile(mine, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bootSector()[:512]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	catalog := filepath.Join(home, "catalog.db")
	for path, want := range map[string]os.FileMode{home: 0o711, filepath.Join(home, "pools"): 0o711, filepath.Dir(mine): 0o711, mine: 0o600, other: 0o600, iso: 0o600, catalog: 0o600} {
		if uid, mode := owner(t, path); uid != 0 || mode != want {
			t.Errorf("%s: uid %d mode %o, want root and %o", path, uid, mode, want)
		}
	}

	name := uniqueName(t)
	def := &hvm.Guest{Name: name, Memory: hvm.Int(16), Serial: []string{"pty"},
		Disks: []hvm.Disk{{Path: mine, Vdev: "hda", Format: "raw"}, {Path: iso, Vdev: "hdc", CDROM: true, Access: "ro"}}}
	def.Display.VNCDisplay = hvm.Int(freeVNCDisplay(t))
	if err := def.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	rd, err := boot.RunDirFor(home, "g-"+name)
	if err != nil {
		t.Fatal(err)
	}
	g := &boot.Guest{ID: "g-" + name, Def: def, Run: rd}
	t.Cleanup(func() { e.remove(name) })
	c := ctx(t)
	st, err := e.d.Start(c, g, boot.StartOptions{Paused: true})
	if err != nil {
		t.Fatal(err)
	}
	con, err := e.d.Console(c, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.Resume(c, g); err != nil {
		t.Fatal(err)
	}
	readUntil(t, con, serialMarker, 20*time.Second)
	con.Close()

	// QEMU really runs as libvirt-qemu, and holds strata's image.
	status, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUid:\t"+qu.Uid+"\t") {
		t.Fatalf("QEMU (pid %d) does not run as %s (uid %s):\n%s", st.PID, qu.Username, qu.Uid, status)
	}
	if uid, _ := owner(t, mine); strconv.Itoa(int(uid)) != qu.Uid {
		t.Errorf("the running guest's image is owned by uid %d, want libvirt's %s", uid, qu.Uid)
	}
	for _, p := range []string{mine, iso} {
		if err := asUser(t, qu, "cat", p); err != nil {
			t.Errorf("libvirt-qemu cannot read an image of the guest it runs: %v", err)
		}
	}
	for _, denied := range [][]string{{"cat", catalog}, {"cat", other}, {"cat", filepath.Join(home, "run", g.ID, boot.StateFile)}, {"ls", home}, {"ls", filepath.Dir(mine)}} {
		if err := asUser(t, qu, denied...); err == nil || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("libvirt-qemu read %s: %v", denied, err)
		}
	}

	if err := e.d.Kill(c, g); err != nil {
		t.Fatal(err)
	}
	// Dynamic ownership gives the images back at stop.
	for _, p := range []string{mine, iso} {
		if uid, mode := owner(t, p); uid != 0 || mode != 0o600 {
			t.Errorf("after stop %s is uid %d mode %o, want root 0600", p, uid, mode)
		}
		if err := asUser(t, qu, "cat", p); err == nil {
			t.Errorf("libvirt-qemu can still read %s after the guest stopped", p)
		}
	}
}

// libvirt gives back only writable top images at stop; a backing file (a
// golden image under linked clones) would stay its QEMU user's for good.
// strata gives it back once no running guest holds it: not while another
// clone of it still runs.
func TestLibvirtGivesBackSharedBackingFileWhenLastGuestStops(t *testing.T) {
	e := newEnv(t)
	storagetest.NeedTool(t, "qemu-img")
	base := filepath.Join(e.dir, "golden.img")
	if err := os.WriteFile(base, bootSector(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	var gs []*boot.Guest
	for i := 0; i < 2; i++ {
		g := e.guest()
		top := g.Def.Disks[0].Path + ".qcow2"
		storagetest.Cmd(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", top)
		if err := os.Chmod(top, 0o600); err != nil {
			t.Fatal(err)
		}
		g.Def.Disks[0].Path, g.Def.Disks[0].Format = top, "qcow2"
		if _, err := e.d.Start(c, g, boot.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	qu, err := user.Lookup(storagetest.LibvirtQEMUUser)
	if err != nil {
		t.Fatal(err)
	}
	if uid, _ := owner(t, base); strconv.Itoa(int(uid)) != qu.Uid {
		t.Fatalf("the backing file is uid %d while guests run, want libvirt's %s", uid, qu.Uid)
	}
	if _, err := e.d.Stop(c, gs[0], boot.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if uid, _ := owner(t, base); strconv.Itoa(int(uid)) != qu.Uid {
		t.Fatalf("the backing file was taken back (uid %d) while another guest runs on it", uid)
	}
	if err := e.d.Kill(c, gs[1]); err != nil {
		t.Fatal(err)
	}
	if uid, mode := owner(t, base); uid != 0 || mode != 0o600 {
		t.Fatalf("after the last guest stopped the backing file is uid %d mode %o, want root 0600", uid, mode)
	}
	for _, g := range gs {
		if uid, _ := owner(t, g.Def.Disks[0].Path); uid != 0 {
			t.Errorf("top image %s is uid %d after stop", g.Def.Disks[0].Path, uid)
		}
	}
}
