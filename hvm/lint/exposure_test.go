package lint_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/hvm/xlcfg"
)

// linux is a guest with nothing exposed: lint finds nothing.
func linux() *hvm.Guest {
	return &hvm.Guest{Name: "l", OS: "linux", Memory: hvm.Int(256), Disks: []hvm.Disk{{Path: "/x.img", Vdev: "hda"}}}
}

func exposures(g *hvm.Guest) map[string]string {
	out := map[string]string{}
	for _, f := range lint.Check(g) {
		if lint.IsExposure(f) {
			if f.Severity != lint.Error || f.Fix == "" {
				panic("exposure finding that is not an error with a fix: " + f.String())
			}
			out[f.Field] = f.ID
		}
	}
	return out
}

// Every control surface a config can open to the network is an error,
// whatever form its address takes; loopback and unix sockets are not.
func TestExposedControlSurfacesAreErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(g *hvm.Guest)
		want   map[string]string // field → id; empty: nothing exposed
	}{
		{"nothing", func(g *hvm.Guest) {}, nil},
		{"serial tcp any", func(g *hvm.Guest) { g.Serial = []string{"tcp:0.0.0.0:4444,server,nowait"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial tcp empty host", func(g *hvm.Guest) { g.Serial = []string{"pty", "tcp::4444,server"} }, map[string]string{"serial[1]": lint.IDChardevExposed}},
		{"serial tcp ipv6 any", func(g *hvm.Guest) { g.Serial = []string{"tcp:[::]:4444,server"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial tcp host name", func(g *hvm.Guest) { g.Serial = []string{"tcp:console.example.com:4444"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial telnet", func(g *hvm.Guest) { g.Serial = []string{"telnet:192.0.2.1:23,server"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial monitor mux", func(g *hvm.Guest) { g.Serial = []string{"mon:tcp:0.0.0.0:4444,server"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial udp bound any", func(g *hvm.Guest) { g.Serial = []string{"udp:127.0.0.1:9999@0.0.0.0:9998"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial udp unbound", func(g *hvm.Guest) { g.Serial = []string{"udp:127.0.0.1:9999"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"serial udp remote", func(g *hvm.Guest) { g.Serial = []string{"udp:192.0.2.1:9999@127.0.0.1:9998"} }, map[string]string{"serial[0]": lint.IDChardevExposed}},
		{"parallel tcp", func(g *hvm.Guest) { g.Parallel = []string{"tcp:0.0.0.0:7777"} }, map[string]string{"parallel[0]": lint.IDChardevExposed}},
		{"serial private", func(g *hvm.Guest) {
			g.Serial = []string{"pty", "tcp:127.0.0.1:4444,server", "tcp:[::1]:4444,server", "telnet:localhost:23,server", "udp:127.0.0.1:9999@127.0.0.1:9998", "unix:/run/s.sock,server", "file:/var/log/s.log", "/dev/ttyS0", "null"}
		}, nil},
		{"serial in extra", func(g *hvm.Guest) { g.Extra = map[string]string{"serial": `"tcp:0.0.0.0:4444,server"`} }, map[string]string{"extra.serial[0]": lint.IDChardevExposed}},
		{"device model args", func(g *hvm.Guest) {
			g.Extra = map[string]string{
				"device_model_args":     `[ "-monitor", "telnet::4444,server,nowait" ]`,
				"device_model_args_hvm": `[ "-qmp", "tcp:0.0.0.0:4445,server=on" ]`,
			}
		}, map[string]string{"extra.device_model_args": lint.IDDeviceModelArgsExposed, "extra.device_model_args_hvm": lint.IDDeviceModelArgsExposed}},
		{"device model args private", func(g *hvm.Guest) {
			g.Extra = map[string]string{"device_model_args": `[ "-monitor", "unix:/run/m.sock,server,nowait", "-qmp", "tcp:127.0.0.1:4445,server", "-vnc", "127.0.0.1:1", "-vnc", "unix:/run/v.sock", "-spice", "port=5930,addr=127.0.0.1", "-spice", "unix=on,addr=/run/s.sock", "-chardev", "socket,id=c,host=127.0.0.1,port=4,server=on", "-chardev", "socket,id=d,path=/run/d.sock,server=on", "-chardev", "udp,id=u,host=127.0.0.1,port=5,localaddr=127.0.0.1,localport=6", "-gdb", "tcp:127.0.0.1:1234", "-incoming", "defer", "-display", "vnc=localhost:2", "-m", "512" ]`}
		}, nil},
	} {
		g := linux()
		tc.change(g)
		got := exposures(g)
		if len(got) != len(tc.want) {
			t.Errorf("%s: exposures %v, want %v", tc.name, got, tc.want)
			continue
		}
		for f, id := range tc.want {
			if got[f] != id {
				t.Errorf("%s: exposures %v, want %s at %s", tc.name, got, id, f)
			}
		}
	}
}

// Each QEMU option that opens a control surface is caught on its own,
// in every address form, with - or --.
func TestDeviceModelArgsExposures(t *testing.T) {
	for _, args := range [][]string{
		{"-monitor", "tcp:0.0.0.0:4444,server"},
		{"--monitor", "telnet::4444,server,nowait"},
		{"-qmp", "tcp:[::]:4444,server=on"},
		{"-qmp-pretty", "tcp:192.0.2.1:4444"},
		{"-serial", "mon:telnet:0.0.0.0:23,server"},
		{"-parallel", "udp:127.0.0.1:1"},
		{"-debugcon", "tcp::5555,server"},
		{"-qtest", "tcp:0.0.0.0:6666,server"},
		{"-vnc", ":1"},
		{"-vnc", "0.0.0.0:1,password=on"},
		{"-vnc", "[::]:0"},
		{"-vnc", "127.0.0.1:1,websocket=0.0.0.0:5701"},
		{"-vnc", "vnc=host.example.com:1"},
		{"-display", "vnc=:2"},
		{"-spice", "port=5930"},
		{"-spice", "port=5930,addr=0.0.0.0,disable-ticketing=on"},
		{"-spice", "tls-port=5931,addr=::"},
		{"-chardev", "socket,id=m,port=4444,server=on,wait=off"},
		{"-chardev", "socket,id=m,host=0.0.0.0,port=4444,server=on"},
		{"-chardev", "udp,id=u,host=127.0.0.1,port=5"},
		{"-chardev", "udp,id=u,host=192.0.2.1,port=5,localaddr=127.0.0.1"},
		{"-gdb", "tcp::1234"},
		{"-gdb", "1234"},
		{"-s"},
		{"-incoming", "tcp:0.0.0.0:4446"},
		{"-incoming", "tcp::4446"},
		{"-incoming", "rdma:192.0.2.1:4446"},
		{"-incoming", "exec:nc -l 4446"},
		{"-readconfig", "/etc/qemu/extra.cfg"},
	} {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = xlcfg.Quote(a)
		}
		g := linux()
		g.Extra = map[string]string{"device_model_args": "[ " + strings.Join(q, ", ") + " ]"}
		if got := exposures(g); got["extra.device_model_args"] != lint.IDDeviceModelArgsExposed {
			t.Errorf("device_model_args %q: not found exposed (%v)", args, got)
		}
	}
}

// A PV framebuffer with VNC off loopback needs a password too.
func TestVFBExposure(t *testing.T) {
	for _, tc := range []struct {
		vfb     string
		exposed bool
	}{
		{`[ "vnc=1,vnclisten=0.0.0.0" ]`, true},
		{`[ "vnclisten=0.0.0.0:1" ]`, true},
		{`[ "type=vnc,vnclisten=[::]:1" ]`, true},
		{`[ "sdl=1", "vnc=1,vnclisten=192.0.2.7" ]`, true},
		{`[ "vnc=1,vnclisten=0.0.0.0,vncpasswd=pw" ]`, false},
		{`[ "vnc=0,vnclisten=0.0.0.0" ]`, false},
		{`[ "vnc=1,vnclisten=127.0.0.1:1" ]`, false},
		{`[ "vnc=1" ]`, false},
	} {
		g := linux()
		g.Extra = map[string]string{"vfb": tc.vfb}
		got := exposures(g)
		if exposed := len(got) > 0; exposed != tc.exposed {
			t.Errorf("vfb %s: exposures %v, want exposed=%v", tc.vfb, got, tc.exposed)
		}
	}
}

// The device model runs as root in dom0: only well-known binaries pass.
func TestUnusualDeviceModel(t *testing.T) {
	for path, known := range map[string]bool{
		"/usr/lib/xen/bin/qemu-system-i386":        true,
		"/usr/lib/xen-4.17/bin/qemu-system-i386":   true,
		"/usr/lib64/xen/bin/qemu-dm":               true,
		"/usr/libexec/xen/bin/qemu-system-i386":    true,
		"/usr/bin/qemu-system-x86_64":              true,
		"/usr/libexec/qemu-kvm":                    true,
		"/tmp/qemu-system-i386":                    false,
		"/home/admin/qemu":                         false,
		"/usr/lib/xen/bin/../../../../tmp/qemu-dm": false,
		"/usr/lib/xen/bin//qemu-dm":                false,
		"/usr/lib/xen/bin/qemu-system-i386.sh":     false,
	} {
		g := linux()
		g.DeviceModel.Override = path
		if got := exposures(g)["device_model.override"] == lint.IDDeviceModelUnusual; got == known {
			t.Errorf("device_model_override %s: unusual=%v, want %v", path, got, !known)
		}
		// The same key kept in extra (a YAML definition may put it there).
		g = linux()
		g.Extra = map[string]string{"device_model_override": xlcfg.Quote(path)}
		if got := exposures(g)["extra.device_model_override"] == lint.IDDeviceModelUnusual; got == known {
			t.Errorf("extra device_model_override %s: unusual=%v, want %v", path, got, !known)
		}
	}
}

// Consoles kept in extra count as xl reads them, and a password given
// inside the option never shows in a finding.
func TestExposureFromExtraAndNoSecretInMessages(t *testing.T) {
	g := linux()
	g.Extra = map[string]string{"vnclisten": `"0.0.0.0"`, "spice": "1", "spicehost": `"0.0.0.0"`, "spicedisable_ticketing": "1", "spicepasswd": `"t0psecret"`,
		"device_model_args": `[ "-spice", "port=5930,addr=0.0.0.0,password=t0psecret" ]`}
	got := exposures(g)
	for f, id := range map[string]string{"extra.vnclisten": lint.IDVNCExposed, "extra.spicehost": lint.IDSpiceExposed, "extra.device_model_args": lint.IDDeviceModelArgsExposed} {
		if got[f] != id {
			t.Errorf("exposures %v: want %s at %s", got, id, f)
		}
	}
	for _, f := range lint.Check(g) {
		if strings.Contains(f.Message+f.Fix, "t0psecret") {
			t.Errorf("finding shows the password: %s", f)
		}
	}
	g.Extra["vncpasswd"] = `"pw"`
	if _, ok := exposures(g)["extra.vnclisten"]; ok {
		t.Error("vnc-exposed despite a vncpasswd in extra")
	}
}

// The Xen configs of libvirt's converter tests that open nothing stay
// clean (their device model, /usr/lib/xen/bin/qemu-system-i386, is a
// known one); the one whose UDP serial binds 0.0.0.0 is caught, and so is
// the escaping test's device model "/usr/lib/xen/bin/qemu-system-i386&test".
func TestCorpusExposures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(hvmtest.Dir(), "libvirt-xenconfig", "*", "*.cfg"))
	if len(files) == 0 {
		t.Fatal("no corpus configs")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := lint.CheckConfig(filepath.Base(f), data)
		if err != nil {
			continue // not an HVM guest strata imports
		}
		var ids []string
		for _, x := range fs {
			if lint.IsExposure(x) {
				ids = append(ids, x.ID+" "+x.Field)
			}
		}
		want := 0
		if strings.Contains(string(data), "@0.0.0.0") {
			want++
		}
		if strings.Contains(string(data), "qemu-system-i386&test") {
			want++
		}
		if len(ids) != want {
			t.Errorf("%s: exposures %v, want %d", filepath.Base(f), ids, want)
		}
	}
}
