package qemu_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/qemu"
	"github.com/strata-vm/strata/hvm/qmp"
	"github.com/strata-vm/strata/storage/run"
)

// A Windows guest keeps its RTC in local time: localtime is -rtc
// base=localtime, and rtc_timeoffset starts the RTC at the start time
// plus the offset (Options.Now), as libvirt computes a variable clock.
func TestArgvGivesWindowsItsLocalClock(t *testing.T) {
	g := &hvm.Guest{Name: "w", Memory: hvm.Int(64), Localtime: hvm.Bool(true)}
	argv, err := qemu.Argv(g, qemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !has(argv, "-rtc", "base=localtime") {
		t.Errorf("localtime: no -rtc base=localtime in %q", argv)
	}
	g.Localtime = nil
	if argv, _ = qemu.Argv(g, qemu.Options{}); slices.Contains(argv, "-rtc") {
		t.Errorf("a UTC guest got -rtc: %q", argv)
	}
	g.RTCTimeOffset = hvm.Int(3600)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if argv, _ = qemu.Argv(g, qemu.Options{Now: now}); !has(argv, "-rtc", "base=2026-01-02T04:04:05") {
		t.Errorf("rtc_timeoffset 3600: %q", argv)
	}
}

// Viridian gives KVM the Hyper-V enlightenments; under TCG, which has
// none, nothing.
func TestArgvViridianIsHyperVUnderKVMOnly(t *testing.T) {
	g := &hvm.Guest{Name: "w", Memory: hvm.Int(64), Features: hvm.Features{Viridian: &hvm.Viridian{Enabled: true}}}
	argv, err := qemu.Argv(g, qemu.Options{Accel: "kvm"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(argv, "-cpu")
	if i < 0 || !strings.Contains(argv[i+1], "hv-relaxed=on") || !strings.Contains(argv[i+1], "hv-vapic=on") || !strings.Contains(argv[i+1], "hv-spinlocks=0x1fff") {
		t.Errorf("kvm: %q", argv)
	}
	if argv, _ = qemu.Argv(g, qemu.Options{Accel: "tcg"}); slices.Contains(argv, "-cpu") {
		t.Errorf("tcg: %q", argv)
	}
}

// --bridge-map: a NIC on Xen's xenbr0 (named or by default) goes onto the
// host's bridge; the definition is not changed.
func TestArgvRemapsBridges(t *testing.T) {
	g := &hvm.Guest{Name: "w", Memory: hvm.Int(64), NICs: []hvm.NIC{{MAC: "00:16:3e:00:00:01"}, {MAC: "00:16:3e:00:00:02", Bridge: "xenbr1"}, {MAC: "00:16:3e:00:00:03", Bridge: "lan"}}}
	m, err := hvm.ParseBridgeMap([]string{"xenbr0=br0", "xenbr1=br1"})
	if err != nil {
		t.Fatal(err)
	}
	argv, err := qemu.Argv(g, qemu.Options{Bridges: m})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bridge,id=net0,br=br0", "bridge,id=net1,br=br1", "bridge,id=net2,br=lan"} {
		if !has(argv, "-netdev", want) {
			t.Errorf("no -netdev %s in %q", want, argv)
		}
	}
	if g.NICs[0].Bridge != "" || g.NICs[1].Bridge != "xenbr1" {
		t.Errorf("the definition changed: %+v", g.NICs)
	}
	for _, bad := range []string{"xenbr0", "xenbr0=", "=br0", "a=b/c", "xenbr0=br0,xenbr0=br1"} {
		if _, err := hvm.ParseBridgeMap([]string{bad}); err == nil {
			t.Errorf("ParseBridgeMap(%q) accepted", bad)
		}
	}
}

// The rendered argv has a QMP socket, and through it the VNC password of a
// guest whose console needs one is set, with QEMU running (TCG), as the
// render's note says.
func TestArgvQMPSocketSetsTheVNCPassword(t *testing.T) {
	if _, err := run.Look(qemu.Binary); err != nil {
		t.Skipf("cannot start QEMU: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	g := &hvm.Guest{Name: "w", Memory: hvm.Int(32), Localtime: hvm.Bool(true), Display: hvm.Display{VNCPasswd: "s3cret", VNCListen: "127.0.0.1"}}
	argv, err := qemu.Argv(g, qemu.Options{QMP: sock, Network: qemu.NetNone})
	if err != nil {
		t.Fatal(err)
	}
	if !has(argv, "-qmp", "unix:"+sock+",server=on,wait=off") {
		t.Fatalf("no QMP socket: %q", argv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run.Run(ctx, nil, nil, append(argv, "-S")...) }()
	var c *qmp.Client
	for c == nil {
		if c, err = qmp.Dial(ctx, sock); err != nil {
			c = nil
			select {
			case err := <-done:
				t.Fatalf("QEMU exited: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	defer c.Close()
	if _, err := c.Execute(ctx, "change-vnc-password", map[string]string{"password": "s3cret"}); err != nil {
		t.Fatalf("change-vnc-password: %v", err)
	}
	raw, err := c.Execute(ctx, "query-vnc", nil)
	if err != nil || !strings.Contains(string(raw), `"auth": "vnc"`) && !strings.Contains(string(raw), `"auth":"vnc"`) {
		t.Errorf("query-vnc = %s, %v; want auth vnc", raw, err)
	}
	_, _ = c.Execute(ctx, "quit", nil)
	<-done
}
