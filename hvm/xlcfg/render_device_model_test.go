package xlcfg_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/xlcfg"
)

// The xm render names the emulator the imported config had (or one found
// on the host, FindXMDeviceModel), never a guessed 32-bit path; xl never
// gets device_model (it ignores it).
func TestRenderXMKeepsTheDeviceModelPath(t *testing.T) {
	g := &hvm.Guest{Name: "w", Memory: hvm.Int(256), DeviceModel: hvm.DeviceModel{XMPath: "/usr/lib64/xen/bin/qemu-dm"}}
	out, err := xlcfg.RenderXM(g)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `device_model = "/usr/lib64/xen/bin/qemu-dm"`) {
		t.Errorf("xm render lost the imported device_model:\n%s", out)
	}
	if out, _ = xlcfg.Render(g); strings.Contains(string(out), "device_model =") {
		t.Errorf("xl render has device_model:\n%s", out)
	}
	g.DeviceModel.XMPath = ""
	out, _ = xlcfg.RenderXM(g)
	if strings.Contains(string(out), "device_model =") || !strings.Contains(string(out), "# device_model:") {
		t.Errorf("xm render without a known qemu-dm:\n%s", out)
	}

	root := t.TempDir()
	if got := xlcfg.FindXMDeviceModel(root); got != "" {
		t.Errorf("empty root: %q", got)
	}
	for _, p := range []string{"usr/lib/xen-4.1/bin/qemu-dm", "usr/lib/xen-4.4/bin/qemu-dm"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := xlcfg.FindXMDeviceModel(root); got != "/usr/lib/xen-4.4/bin/qemu-dm" {
		t.Errorf("FindXMDeviceModel = %q, want the newest versioned one", got)
	}
}

// localtime and rtc_timeoffset render to xl and xm under their own names.
func TestRenderWritesTheClock(t *testing.T) {
	g := &hvm.Guest{Name: "w", Memory: hvm.Int(256), Localtime: hvm.Bool(true), RTCTimeOffset: hvm.Int(-7200)}
	for _, xm := range []bool{false, true} {
		render := xlcfg.Render
		if xm {
			render = xlcfg.RenderXM
		}
		out, err := render(g)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "\nlocaltime = 1\n") || !strings.Contains(string(out), "\nrtc_timeoffset = -7200\n") {
			t.Errorf("xm=%v:\n%s", xm, out)
		}
	}
}
