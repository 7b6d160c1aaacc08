package qemu_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/qmp"
)

// A memory point of a guest with a full-copy disk whose copy outlasts
// writing the RAM: QEMU cannot end a migration while a copy runs (it
// deactivates the disks at the end), so TakeLive lets the copies finish
// inside the pause first. The point is whole: the RAM is saved, the
// copy equals the disk, and the guest runs again.
func TestMemoryPointWaitsForFullCopiesBeforeTheRAM(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	dir := t.TempDir()
	disk, target, state := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "copy.raw"), filepath.Join(dir, "ram.state")
	// 256 MiB of data: its copy takes longer than the RAM of an idle
	// 16 MiB guest.
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*31 + 5)
	}
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		chunk[0] = byte(i)
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(target, 256<<20); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "16", "-display", "none", "-monitor", "none", "-serial", "none", "-nodefaults",
		"-drive", "file="+disk+",format=raw,if=ide,index=0", "-qmp", "unix:"+sock+",server=on,wait=off")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 500 {
			t.Fatalf("no QMP socket: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sf, err := os.OpenFile(state, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	res, err := boot.TakeLive(ctx, c, boot.LiveRequest{ID: "m1", MaxPause: 30 * time.Second, State: sf,
		Disks: []boot.LiveDisk{{Path: disk, Method: boot.LiveBackup, Target: target}}})
	if err != nil {
		t.Fatalf("memory point: %v (%s)", err, stderr.String())
	}
	t.Logf("paused %s for a 256 MiB copy and 16 MiB of RAM", res.Pause)
	if res.Consistency != boot.ConsistencyMemory {
		t.Fatalf("consistency %q", res.Consistency)
	}
	if st, err := c.QueryStatus(ctx); err != nil || st.Status != "running" {
		t.Fatalf("the guest after the point: %+v %v", st, err)
	}
	if st, err := os.Stat(state); err != nil || st.Size() < 4096 {
		t.Fatalf("state file: %v %v", st, err)
	}
	a, _ := os.ReadFile(disk)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) {
		t.Fatal("the point's copy differs from the disk")
	}
}
