package main_test

import (
	"path/filepath"
	"testing"
)

// pool add's LVM flags are checked before anything is asked of LVM (the
// host has no device-mapper; the LVM guest test adds real lvm pools).
func TestPoolAddLVMFlagsAreChecked(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	fails(t, home, 2, []string{"give --driver lvm"}, "pool", "add", "x", "--vg", "vg0")
	fails(t, home, 2, []string{"--snapshot-size", "1% to 100%"}, "pool", "add", "x", "--driver", "lvm", "--vg", "vg0", "--snapshot-size", "150%")
	fails(t, home, 2, []string{"--snapshot-size"}, "pool", "add", "x", "--driver", "lvm", "--vg", "vg0", "--snapshot-size", "4G")
	fails(t, home, 2, []string{"no volume group", "--vg VG"}, "pool", "add", "x", "--driver", "lvm")
	fails(t, home, 2, []string{"takes no --path"}, "pool", "add", "x", "--driver", "lvm", "--vg", "vg0", "--path", t.TempDir())
	fails(t, home, 2, []string{"errorwhenfull applies to thin pools"}, "pool", "add", "x", "--driver", "lvm", "--vg", "vg0", "--errorwhenfull")
}
