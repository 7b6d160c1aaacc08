package dir_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/atomicfile"
	"github.com/strata-vm/strata/storage/dir"
	"github.com/strata-vm/strata/storage/storagetest"
)

// Every name the package doc's layout gives strata's files is recognised
// as strata's, and nothing else: doctor removes only what StrataName
// accepts.
func TestLayoutNamesAreStrataNames(t *testing.T) {
	final := "0123456789abcdef.img"
	for _, c := range []struct {
		name        string
		isDir, pool bool
		want        bool
	}{
		{final, false, true, true},
		{final, false, false, false}, // an imported volume's folder is the admin's
		{"0123456789abcdef.qcow2", false, true, true},
		{"0123456789abcdef.iso", false, true, true},
		{"disk.img" + dir.RollbackSuffix + "-0123456789ab", false, false, true},
		{filepath.Base(atomicfile.Path(final, "")), false, false, true},
		{filepath.Base(atomicfile.Path(final, atomicfile.PurposeFlatten)), false, false, true},
		{".strata-tmp-0123456789abcdef.d", true, true, true}, // an iso build's staging directory
		{".strata-probe-123", true, true, true},
		{".strata-probe-123", false, true, false},
		{"disk.img", false, true, false},
		{"0123456789abcdef.img.bak", false, true, false},
		{dir.PointsDir, true, true, false},
	} {
		if got := dir.StrataName(c.name, c.isDir, c.pool); got != c.want {
			t.Errorf("StrataName(%q, dir %v, pool %v) = %v, want %v", c.name, c.isDir, c.pool, got, c.want)
		}
	}
	if id := dir.PointVolumeID(filepath.Join("/p", dir.PointsDir, "0123456789abcdef-0123456789ab.img")); id != "0123456789abcdef" {
		t.Errorf("PointVolumeID of point data: %q", id)
	}
	if id := dir.PointVolumeID(filepath.Join("/p", "0123456789abcdef-0123456789ab.img")); id != "" {
		t.Errorf("PointVolumeID outside %s: %q", dir.PointsDir, id)
	}
}

// A capability probe that fails (a read-only filesystem) claims nothing,
// the same way everywhere: the pool's status and features say no reflink,
// and a raw volume's point is planned as a copy, with no error.
func TestFailedProbeClaimsNoCapability(t *testing.T) {
	storagetest.NeedRoot(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	img := filepath.Join(mnt, "0123456789abcdef.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot remount read-only: %v: %s", err, out)
	}
	ctx := context.Background()
	p := storage.Pool{Name: "ro", Driver: dir.Name, Path: mnt}
	st, err := dir.Driver{}.Status(ctx, p)
	if err != nil || st.Capabilities != (storage.Capabilities{}) {
		t.Errorf("Status of a pool that cannot be probed: %+v, %v", st.Capabilities, err)
	}
	f, err := dir.Driver{}.Features(ctx, p)
	if err != nil || f.FullCloneO1 {
		t.Errorf("Features of a pool that cannot be probed: %+v, %v", f, err)
	}
	v := storage.Volume{ID: "0123456789abcdef", Name: "v", Format: storage.FormatRaw, Path: img}
	ref, err := dir.Driver{}.PlanPoint(ctx, p, v, "0123456789ab", storage.PointOptions{})
	if err != nil && !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("PlanPoint: %v", err)
	}
	if err == nil && ref.Method != dir.MethodCopy {
		t.Errorf("PlanPoint chose %q, want a copy", ref.Method)
	}
}
