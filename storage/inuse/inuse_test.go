package inuse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/storagetest"
)

func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s is not installed (make test installs it)", tool)
	}
}

func image(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 16<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// startQEMU runs a real QEMU with path as its raw disk, as guest "win7".
func startQEMU(t *testing.T, path string) *exec.Cmd {
	return storagetest.RunningQEMU(t, "guest=win7,debug-threads=on", storagetest.Drive{Path: path, Format: "raw"})
}

func TestRunningQEMUHoldsItsImage(t *testing.T) {
	p := image(t)
	c := &inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}
	if err := c.Check(context.Background(), `volume "d"`, p); err != nil {
		t.Fatalf("an image nobody opened is reported in use: %v", err)
	}
	q := startQEMU(t, p)
	err := c.Check(context.Background(), `volume "d"`, p)
	if !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("an image a running QEMU holds is not reported in use: %v", err)
	}
	for _, want := range []string{"pid", "qemu-system-x86", `guest "win7"`, "lock", `volume "d"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	hs, _ := c.Holders(context.Background(), p)
	if len(hs) != 1 || hs[0].PID != q.Process.Pid {
		t.Errorf("holders %+v, want pid %d alone", hs, q.Process.Pid)
	}
}

func TestWriterWithoutLockHoldsTheImage(t *testing.T) {
	p := image(t)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "30")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	hs, err := (&inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}).Holders(context.Background(), p)
	if err != nil || len(hs) != 1 || hs[0].PID != cmd.Process.Pid || !strings.Contains(hs[0].How, "open for writing") {
		t.Fatalf("a process writing without a lock: holders %+v, %v", hs, err)
	}
	// A reader without a lock is nobody's business.
	r, _ := os.Open(p)
	defer r.Close()
	rd := exec.Command("sleep", "30")
	rd.ExtraFiles = []*os.File{r}
	_ = rd.Start()
	defer func() { _ = rd.Process.Kill(); _ = rd.Wait() }()
	hs, _ = (&inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}).Holders(context.Background(), p)
	if len(hs) != 1 {
		t.Errorf("a plain reader counted as a holder: %+v", hs)
	}
}

func TestSymlinkIsNotFollowed(t *testing.T) {
	p := image(t)
	startQEMU(t, p)
	link := filepath.Join(t.TempDir(), "link.img")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if hs, err := inuse.Default().Holders(context.Background(), link); err != nil || len(hs) != 0 {
		t.Fatalf("a symlink to a held image: holders %+v, %v (the link must not be followed)", hs, err)
	}
}

// qemu-img -U (what strata's read-only commands run) lets others write:
// it is not a holder, though it holds a lock of its own.
func TestSharingReaderIsNoHolder(t *testing.T) {
	need(t, "qemu-io")
	p := image(t)
	cmd := exec.Command("qemu-io", "-U", "-r", "-f", "raw", "-c", "sleep 10000", p)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(300 * time.Millisecond)
	raw, _ := os.ReadFile("/proc/locks")
	st, _ := os.Stat(p)
	ino := fmt.Sprintf(":%d ", st.Sys().(*syscall.Stat_t).Ino)
	if !strings.Contains(string(raw), ino) {
		t.Fatalf("qemu-io -U took no lock: the test shows nothing\n%s", raw)
	}
	if hs, err := (&inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}).Holders(context.Background(), p); err != nil || len(hs) != 0 {
		t.Errorf("a reader that shares the image: holders %+v, %v", hs, err)
	}
}

func TestWaitReturnsOnceTheHolderExits(t *testing.T) {
	need(t, "qemu-img")
	p := image(t)
	c := &inuse.Checker{Sources: []inuse.Source{inuse.Processes{}}}
	q := startQEMU(t, p)
	go func() { time.Sleep(300 * time.Millisecond); _ = q.Process.Kill() }()
	start := time.Now()
	if err := c.Wait(context.Background(), "x", p, 10*time.Second); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("wait returned after %s, before the holder exited", d)
	}
	q2 := startQEMU(t, p)
	defer func() { _ = q2.Process.Kill() }()
	if err := c.Wait(context.Background(), "x", p, 300*time.Millisecond); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("wait past its deadline: %v, want in use", err)
	}
}

// The test driver of libvirt (test:///FILE) runs the domains a node file
// describes, in virsh's own process: a real libvirt client and real XML.
func TestRunningLibvirtDomainHoldsItsDisk(t *testing.T) {
	need(t, "virsh")
	p := image(t)
	node := filepath.Join(t.TempDir(), "node.xml")
	xml := `<node><domain type='test'><name>web01</name><memory>1048576</memory><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><source file='` + p + `'/><target dev='vda' bus='virtio'/></disk></devices></domain></node>`
	if err := os.WriteFile(node, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LIBVIRT_DEFAULT_URI", "test://"+node)
	c := &inuse.Checker{Sources: []inuse.Source{inuse.NewLibvirt()}}
	err := c.Check(context.Background(), "x", p)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `libvirt domain "web01"`) {
		t.Fatalf("a running libvirt domain's disk: %v", err)
	}
	if err := c.Check(context.Background(), "x", image(t)); err != nil {
		t.Errorf("another image: %v", err)
	}
}

// Xen cannot run here (no hypervisor): a stand-in xl prints what
// `xl list -l` prints for a running HVM domain (xl 4.17's JSON shape).
func TestRunningXenDomainHoldsItsDisk(t *testing.T) {
	p := image(t)
	bin := t.TempDir()
	script := `#!/bin/sh
[ "$1 $2" = "list -l" ] || exit 1
cat <<EOF
[
    {
        "domid": 7,
        "config": {
            "c_info": {"type": "hvm", "name": "xp-sp3"},
            "disks": [
                {"pdev_path": "/srv/iso/xp.iso", "vdev": "hdc", "is_cdrom": 1},
                {"pdev_path": "` + p + `", "vdev": "hda", "format": "raw"}
            ]
        }
    }
]
EOF
`
	if err := os.WriteFile(filepath.Join(bin, "xl"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	c := &inuse.Checker{Sources: []inuse.Source{inuse.NewXL()}}
	err := c.Check(context.Background(), "x", p)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), `xl domain "xp-sp3"`) {
		t.Fatalf("a running Xen domain's disk: %v", err)
	}
	if err := c.Check(context.Background(), "x", image(t)); err != nil {
		t.Errorf("another image: %v", err)
	}
}

func TestMountedBlockDeviceIsClaimed(t *testing.T) {
	need(t, "losetup")
	need(t, "mkfs.ext4")
	p := image(t)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", p).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", p).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	c := inuse.Default()
	if err := c.Check(context.Background(), "x", dev); err != nil {
		t.Fatalf("an unused loop device: %v", err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	if err := c.Check(context.Background(), "x", dev); !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "claimed") {
		t.Fatalf("a mounted block device: %v", err)
	}
}

// A loop device backed by the image (an admin mounting a guest's disk to
// look inside) holds it, with no process file and no lock; a rename of
// the image does not hide it.
func TestLoopDeviceHoldsItsBackingImage(t *testing.T) {
	need(t, "losetup")
	p := image(t)
	out, err := exec.Command("losetup", "-f", "--show", p).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	c := inuse.Default()
	err = c.Check(context.Background(), "x", p)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "loop device "+dev) {
		t.Fatalf("an image backing %s: %v", dev, err)
	}
	moved := p + ".moved"
	if err := os.Rename(p, moved); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background(), "x", moved); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("after a rename: %v", err)
	}
}

// A LIBVIRT_DEFAULT_URI naming another host (an admin's profile) is not
// asked: its domains hold no file here, and a path that is a disk there
// is not in use here.
func TestRemoteLibvirtURIIsNotAsked(t *testing.T) {
	need(t, "virsh")
	p := image(t)
	for _, uri := range []string{"qemu+ssh://otherhost/system", "qemu://otherhost/system", "qemu+tcp:///system", "test+ssh://otherhost" + p} {
		t.Setenv("LIBVIRT_DEFAULT_URI", uri)
		start := time.Now()
		if err := (&inuse.Checker{Sources: []inuse.Source{inuse.NewLibvirt()}}).Check(context.Background(), "x", p); err != nil {
			t.Errorf("%s: %v", uri, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s was asked (%s)", uri, d)
		}
	}
}

// While strata holds an image, a guest started by hand cannot open it
// (QEMU refuses against the hold's locks), strata's own check does not
// count its hold, and strata's own qemu-img runs with the hold let go.
func TestHoldKeepsGuestsOut(t *testing.T) {
	need(t, "qemu-img")
	need(t, "qemu-system-x86_64")
	p := filepath.Join(t.TempDir(), "d.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, "16M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	c := inuse.Default()
	ctx, release, err := c.HoldAll(context.Background(), []inuse.Image{{What: "x", Path: p}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-display", "none", "-nodefaults", "-S",
		"-drive", "file="+p+",format=qcow2,if=virtio", "-qmp", "null").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "lock") {
		t.Fatalf("a guest started while strata holds its disk: %v %s", err, out)
	}
	if err := c.Check(ctx, "x", p); err != nil {
		t.Errorf("strata's own hold counted as a holder: %v", err)
	}
	for _, argv := range [][]string{{"qemu-img", "info", "-U", p}, {"qemu-img", "dd", "-U", "-f", "qcow2", "-O", "raw", "bs=65536", "count=1", "if=" + p, "of=" + p + ".head"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("a read-only command (what volume info runs) kept out: %v %s", err, out)
		}
	}
	if err := inuse.Without(ctx, p, func() error {
		return exec.Command("qemu-img", "snapshot", "-c", "s1", p).Run()
	}); err != nil {
		t.Errorf("strata's own qemu-img under Without: %v", err)
	}
	out, err = exec.Command("qemu-io", "-f", "qcow2", "-c", "write 0 512", p).CombinedOutput()
	if err == nil {
		t.Errorf("the hold was not taken again after Without: %s", out)
	}
	release()
	startQEMU2 := storagetest.RunningQEMU(t, "guest=after", storagetest.Drive{Path: p, Format: "qcow2"})
	_ = startQEMU2
}
