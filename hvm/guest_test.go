package hvm_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
)

func sample() *hvm.Guest {
	return &hvm.Guest{
		Name:     "win2k3",
		OS:       "win2003",
		Memory:   hvm.Int(512),
		MaxMem:   hvm.Int(512),
		VCPUs:    hvm.Int(1),
		Features: hvm.Features{ACPI: hvm.Bool(false), APIC: hvm.Bool(false), Viridian: &hvm.Viridian{Enabled: true, Groups: []string{"base", "freq"}}},
		Firmware: "seabios",
		Boot:     "dc",
		Disks: []hvm.Disk{
			{Volume: "win2k3-disk", Vdev: "hda", Format: "qcow2"},
			{Media: "win2k3-cd", Vdev: "hdc", CDROM: true},
			{Vdev: "hdd", CDROM: true},
		},
		NICs:       []hvm.NIC{{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0", Model: "rtl8139", Extra: map[string]string{"accel": "x"}}},
		Display:    hvm.Display{VNC: hvm.Bool(true), VNCListen: "0.0.0.0", VNCDisplay: hvm.Int(3), VNCPasswd: "s3cret", Keymap: "de"},
		USB:        hvm.Bool(true),
		USBDevices: []string{"tablet"},
		Serial:     []string{"pty"},
		SoundHW:    []string{"sb16"},
		PCI:        []string{"0000:01:00.0"},
		Lifecycle:  hvm.Lifecycle{OnReboot: "destroy"},
		Install:    &hvm.Install{ACPI: hvm.Bool(false), APIC: hvm.Bool(false), VCPUs: hvm.Int(1), MAC: "00:16:3e:00:00:01", Memory: hvm.Int(512), CDROM: "hdc"},
		Extra:      map[string]string{"localtime": "1"},
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	g := sample()
	data, err := hvm.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api_version: strata/v1", "usb_devices:", "vncpasswd: s3cret", "on_reboot: destroy", "volume: win2k3-disk"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("YAML lacks %q:\n%s", want, data)
		}
	}
	back, err := hvm.Unmarshal("g.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	g.APIVersion = hvm.APIVersion
	if !reflect.DeepEqual(g, back) {
		t.Errorf("round trip changed the guest:\n%+v\n%+v", g, back)
	}
	// Not set stays distinct from false and zero.
	if back.Features.PAE != nil || back.Features.ACPI == nil || *back.Features.ACPI {
		t.Errorf("features = %+v", back.Features)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"name: a\n", "api_version is missing"},
		{"api_version: strata/v9\nname: a\n", `api_version "strata/v9" is not supported`},
		{"api_version: strata/v1\nname: a\nmemroy: 5\n", "memroy"},
		{"api_version: [\n", "not a YAML"},
	} {
		_, err := hvm.Unmarshal("g.yaml", []byte(tc.yaml))
		if err == nil || !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "g.yaml") {
			t.Errorf("Unmarshal(%q) = %v, want an error mentioning %q", tc.yaml, err, tc.want)
		}
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	g := sample()
	g.Display.Spice = &hvm.Spice{Enabled: true, Passwd: "sp1ce"}
	j, _ := json.Marshal(g)
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("guest", "guest", g, "pw", g.Display.VNCPasswd)
	r := g.Redacted()
	ry, _ := hvm.Marshal(r)
	for name, s := range map[string]string{
		"String": g.String(), "%v": fmt.Sprintf("%v", g), "%+v": fmt.Sprintf("%+v", *g), "%#v": fmt.Sprintf("%#v", g.Display),
		"JSON": string(j), "slog": b.String(), "Redacted YAML": string(ry),
	} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "sp1ce") {
			t.Errorf("%s shows a password: %s", name, s)
		}
	}
	if g.Display.VNCPasswd.Value() != "s3cret" || g.Display.Spice.Passwd.Value() != "sp1ce" {
		t.Error("Redacted changed the original")
	}
	if r.Display.VNCPasswd.IsZero() {
		t.Error("Redacted lost the fact that a password is set")
	}
}

func TestFillDefaultsAndValidate(t *testing.T) {
	g := &hvm.Guest{Name: "a", Memory: hvm.Int(256), NICs: []hvm.NIC{{}}, Disks: []hvm.Disk{{Path: "/x.img", Vdev: "hda"}}}
	if err := g.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	if !hvm.UUIDPattern.MatchString(g.UUID) || *g.VCPUs != 1 || !*g.Features.ACPI || g.Boot != "cd" || g.Display.VNCListen != "127.0.0.1" ||
		g.NICs[0].Bridge != "xenbr0" || g.NICs[0].Model != "rtl8139" || g.Disks[0].Format != "raw" || g.Lifecycle.OnCrash != "destroy" {
		t.Errorf("defaults: %+v", g)
	}
	before := g.Clone()
	if err := g.FillDefaults(); err != nil || !reflect.DeepEqual(before, g) {
		t.Error("FillDefaults is not idempotent")
	}
	if err := g.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := sample().Validate(); err != nil {
		t.Errorf("Validate(sample): %v", err)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	g := &hvm.Guest{
		Name: "bad name", UUID: "nope", MaxMem: hvm.Int(1), VCPUs: hvm.Int(0), Boot: "dx",
		Disks: []hvm.Disk{
			{Path: "rel/x.img", Device: "/dev/sda", Vdev: "hda"},
			{Vdev: "hda"},
			{Path: "/x.iso", Vdev: "hdc", CDROM: true, Access: "rw"},
			{Device: "/dev/vg/lv", Vdev: "hdd", Format: "qcow2"},
			{Path: "/y", Vdev: "fd0"},
		},
		NICs:       []hvm.NIC{{MAC: "01:16:3e:00:00:01"}, {MAC: "00:16:3e:00:00:02"}, {MAC: "00:16:3E:00:00:02", Rate: "fast"}},
		Display:    hvm.Display{VGA: "ega", VNCListen: "not an address"},
		SoundHW:    []string{"beeper"},
		PCI:        []string{"1:2:3:4"},
		Lifecycle:  hvm.Lifecycle{OnCrash: "explode"},
		Serial:     []string{"carrier-pigeon"},
		USBDevices: []string{"joystick"},
	}
	err := g.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad guest")
	}
	if !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("%v is not ErrInvalid", err)
	}
	for _, want := range []string{"name:", "uuid:", "memory: not set", "vcpus:", "boot:", "disks[0] (hda): give only one", "disks[1] (hda): no source", `disks[1] (hda): vdev "hda" is also used`,
		"disks[2] (hdc): a CD-ROM cannot be writable", "disks[3] (hdd): the phy backend", `disks[4] (fd0): vdev "fd0"`, "nics[0]: MAC address", "nics[2]: MAC address", "nics[2]: rate",
		"display.vga", "display.vnclisten", "soundhw[0]", "pci[0]", "lifecycle.on_crash", "serial[0]", "usb_devices[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the errors do not mention %q:\n%v", want, err)
		}
	}
}

func TestGenerateMAC(t *testing.T) {
	inUse := map[string]bool{}
	for range 500 {
		m, err := hvm.GenerateMAC(inUse)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(m, "00:16:3e:") || m[9] > '7' {
			t.Fatalf("MAC %s is not in 00:16:3e:00-7f", m)
		}
		if _, err := hvm.NormalizeMAC(m); err != nil {
			t.Fatal(err)
		}
		if inUse[m] {
			t.Fatalf("MAC %s generated twice", m)
		}
		inUse[m] = true
	}
	g := &hvm.Guest{NICs: []hvm.NIC{{MAC: "00:16:3E:00:00:01"}, {}, {}}}
	used := map[string]bool{}
	if err := g.PinMACs(used); err != nil {
		t.Fatal(err)
	}
	if g.NICs[0].MAC != "00:16:3E:00:00:01" || g.NICs[1].MAC == "" || g.NICs[1].MAC == g.NICs[2].MAC || !used[g.NICs[2].MAC] {
		t.Errorf("PinMACs: %+v %v", g.NICs, used)
	}
}

func TestResolveDisks(t *testing.T) {
	g := sample()
	if err := hvm.Unresolved(g); err == nil {
		t.Error("Unresolved did not notice the volume")
	}
	r := hvm.ResolverFunc(func(kind hvm.SourceKind, name string) (hvm.Resolved, error) {
		if kind == hvm.SourceVolume {
			return hvm.Resolved{Path: "/dev/vg/" + name, Block: true, Format: "raw"}, nil
		}
		return hvm.Resolved{Path: "/srv/iso/" + name + ".iso"}, nil
	})
	c, err := hvm.ResolveDisks(g, r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Disks[0].Device != "/dev/vg/win2k3-disk" || c.Disks[1].Path != "/srv/iso/win2k3-cd.iso" || hvm.Unresolved(c) != nil || g.Disks[0].Volume == "" {
		t.Errorf("resolved %+v (original %+v)", c.Disks, g.Disks)
	}
	if _, err := hvm.ResolveDisks(g, nil); !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("ResolveDisks without a resolver: %v", err)
	}
}
