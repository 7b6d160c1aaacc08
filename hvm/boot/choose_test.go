package boot_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/xl"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/run"
)

var (
	noXen     = errors.New("xl info failed: this host is not running under the Xen hypervisor")
	noLibvirt = errors.New("no libvirtd answers on /run/libvirt/libvirt-sock")
	noQEMU    = errors.New("qemu-system-x86_64 is not installed")
)

func TestChooseDriverOverProbeResults(t *testing.T) {
	for _, c := range []struct {
		name    string
		ask     string
		xl      error // probe results; a driver left out of the set is "absent"
		libvirt error
		qemu    error
		absent  string
		want    string   // the driver chosen, or "" for an error
		kind    error    // the error's kind
		says    []string // what the error must name
		probed  []string // the drivers whose probe ran
	}{
		{name: "auto with xl available picks xl", ask: "auto", want: "xl", probed: []string{"xl"}},
		{name: "empty means auto", ask: "", want: "xl", probed: []string{"xl"}},
		{name: "auto without xl picks a libvirt that answers", ask: "auto", xl: noXen, want: "libvirt", probed: []string{"xl", "libvirt"}},
		{name: "auto with neither picks qemu", ask: "auto", xl: noXen, libvirt: noLibvirt, want: "qemu", probed: []string{"xl", "libvirt", "qemu"}},
		{name: "auto with no xl driver at all", ask: "auto", absent: "xl", libvirt: noLibvirt, want: "qemu", probed: []string{"libvirt", "qemu"}},
		{name: "auto with nothing available says why for each", ask: "auto", xl: noXen, libvirt: noLibvirt, qemu: noQEMU,
			kind: storage.ErrPrecondition, says: []string{"xl: " + noXen.Error(), "libvirt: " + noLibvirt.Error(), "qemu: " + noQEMU.Error()}, probed: []string{"xl", "libvirt", "qemu"}},
		{name: "named available driver is used even when xl is there", ask: "qemu", want: "qemu", probed: []string{"qemu"}},
		{name: "named unavailable driver is refused with why", ask: "xl", xl: noXen,
			kind: storage.ErrPrecondition, says: []string{"driver xl cannot run guests here", noXen.Error()}, probed: []string{"xl"}},
		{name: "named libvirt that does not answer", ask: "libvirt", libvirt: noLibvirt,
			kind: storage.ErrPrecondition, says: []string{"driver libvirt", noLibvirt.Error()}, probed: []string{"libvirt"}},
		{name: "unknown driver name", ask: "hyperv", kind: storage.ErrInvalid, says: []string{`"hyperv"`, "xl, libvirt, qemu"}},
		{name: "a driver not in the set", ask: "xl", absent: "xl", kind: storage.ErrInvalid, says: []string{`"xl"`, "libvirt, qemu"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			probes := map[string]*int{}
			var ds []boot.Driver
			for _, d := range []struct {
				name string
				err  error
			}{{"xl", c.xl}, {"libvirt", c.libvirt}, {"qemu", c.qemu}} {
				if d.name == c.absent {
					continue
				}
				probes[d.name] = new(int)
				ds = append(ds, fakeDriver{name: d.name, avail: d.err, probes: probes[d.name]})
			}
			got, err := boot.NewSet(ds...).Choose(context.Background(), c.ask)
			if c.want != "" {
				if err != nil || got == nil || got.Name() != c.want {
					t.Fatalf("chose %v (%v), want %s", got, err, c.want)
				}
			} else {
				if err == nil {
					t.Fatalf("chose %s, want an error", got.Name())
				}
				if !errors.Is(err, c.kind) {
					t.Errorf("error %v is not of kind %v", err, c.kind)
				}
				for _, s := range c.says {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
			}
			for n, p := range probes {
				want := 0
				for _, q := range c.probed {
					if q == n {
						want = 1
					}
				}
				if *p != want {
					t.Errorf("%s probed %d times, want %d", n, *p, want)
				}
			}
		})
	}
}

// The xl driver's own probe on a host without Xen (xl's recorded answer,
// not a real Xen: none runs here) makes auto pass it over.
func TestAutoPassesOverXLOnAHostWithoutXen(t *testing.T) {
	stderr, err := os.ReadFile(filepath.Join("..", "..", "testdata", "xl", "err-no-hypervisor-4.17.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	x := xl.New(xl.Config{Run: func(ctx context.Context, argv ...string) ([]byte, error) {
		ran = append(ran, strings.Join(argv, " "))
		return nil, &run.Error{Argv: argv, ExitCode: 1, Stderr: string(stderr)}
	}})
	d, err := boot.NewSet(x, fakeDriver{name: "libvirt", avail: noLibvirt}, fakeDriver{name: "qemu"}).Choose(context.Background(), "auto")
	if err != nil || d.Name() != "qemu" {
		t.Fatalf("chose %v (%v), want qemu", d, err)
	}
	if len(ran) != 1 || ran[0] != "xl info" {
		t.Errorf("ran %q, want xl info", ran)
	}
	_, err = boot.NewSet(x).Choose(context.Background(), "xl")
	if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), "not running under the Xen hypervisor") {
		t.Errorf("xl named on a host without Xen: %v", err)
	}
}
