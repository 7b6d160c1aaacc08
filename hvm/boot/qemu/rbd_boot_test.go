package qemu_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/boottest"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/inuse"
	"github.com/strata-vm/strata/storage/rbd"
	"github.com/strata-vm/strata/storage/storagetest"
)

// TestBootFromRBDVolume: a guest whose disk is an rbd pool's volume (an
// RBD image on a real single-node cluster, holding a boot sector copied
// in with qemu-img convert) boots under the qemu driver through QEMU's
// rbd block driver; while it runs the image is in use (rbd status lists
// QEMU as a watcher, and strata's in-use check names it), and a rollback
// of it is refused; once the guest has powered off, nobody holds it.
func TestBootFromRBDVolume(t *testing.T) {
	e := newEnv(t)
	c := storagetest.CephCluster(t)
	ctx := context.Background()
	p := storage.Pool{Name: "ceph", Driver: rbd.Name, RBD: &storage.RBDPool{Pool: c.Pool, Namespace: c.Namespace(t), CephConf: c.Conf}}
	d := rbd.Driver{}
	v := storage.Volume{ID: storage.NewID(), Name: "boot", Format: storage.FormatRaw}
	v.Path = d.VolumePath(p, v.ID, v.Format)
	if err := d.Create(ctx, p, v.Path, v.Format, 1<<20); err != nil {
		t.Fatal(err)
	}
	sector := filepath.Join(t.TempDir(), "sector.raw")
	if err := boottest.WriteDisk(sector, boottest.BootSector(marker("rbd")+"\r\n", boottest.PowerButton)); err != nil {
		t.Fatal(err)
	}
	storagetest.Cmd(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", sector, v.Path)
	ref, err := d.PlanPoint(ctx, p, v, "000000000001", storage.PointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.TakePoint(ctx, p, v, &ref, storage.NoProgress{}); err != nil {
		t.Fatal(err)
	}

	def := boottest.Guest("rbd", v.Path)
	rd, err := boot.RunDirFor(e.home, "id-rbd")
	if err != nil {
		t.Fatal(err)
	}
	g := &boot.Guest{ID: "id-rbd", Def: def, Run: rd}
	t.Cleanup(func() { e.d.Kill(context.Background(), g) })
	e.start(g, boot.StartOptions{})
	waitSerial(t, g, marker("rbd"), 1)

	holders, err := inuse.Default().Holders(ctx, v.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) == 0 || !strings.Contains(holders[0].String(), "rbd watcher") {
		t.Fatalf("holders of the running guest's rbd disk: %v, want its QEMU as a watcher", holders)
	}
	if err := d.CheckRestore(ctx, p, v, ref); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("a rollback of the running guest's disk: %v, want in use", err)
	}
	if _, err := e.d.Stop(ctx, g, boot.StopOptions{Timeout: 20 * time.Second}); err != nil {
		t.Fatal(err)
	}
	e.waitStopped(g)
	if holders, err := inuse.Default().Holders(ctx, v.Path); err != nil || len(holders) != 0 {
		t.Fatalf("holders after the guest stopped: %v %v", holders, err)
	}
}
