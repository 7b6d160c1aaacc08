package boot_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/boot"
	"github.com/strata-vm/strata/hvm/boot/xl"
	"github.com/strata-vm/strata/storage"
)

// featureDrivers are the drivers whose Supports this test checks. Supports
// runs no tool, so the xl driver is checked as it is (no Xen needed).
// Others join as they land.
func featureDrivers() []boot.Driver {
	return []boot.Driver{xl.New(xl.Config{}), fakeDriver{name: "fake"}}
}

// whatToDo: a refusal gives its reason, then (after ':' or ';') what the
// admin can do instead.
var whatToDo = regexp.MustCompile(`\S.{10,}[:;] \S.{10,}`)

func TestEveryUnsupportedFeatureSaysWhyAndWhatToDo(t *testing.T) {
	bare := &hvm.Guest{Name: "win7"}
	full := &hvm.Guest{
		Name:     "win7",
		Disks:    []hvm.Disk{{Path: "/srv/win7.img", Vdev: "hda"}, {Path: "/srv/x.iso", Vdev: "hdc", CDROM: true}},
		Serial:   []string{"pty"},
		Features: hvm.Features{PVDrivers: hvm.Bool(true)},
	}
	for _, d := range featureDrivers() {
		for _, g := range []*hvm.Guest{bare, full} {
			for _, f := range boot.AllFeatures {
				err := d.Supports(g, f)
				if err == nil {
					continue
				}
				if !errors.Is(err, storage.ErrNotSupported) {
					t.Errorf("%s %s: %v is not of kind not supported", d.Name(), f, err)
				}
				if !whatToDo.MatchString(err.Error()) {
					t.Errorf("%s %s: %q does not say why and what to do", d.Name(), f, err)
				}
				if strings.ToLower(err.Error()[:1]) != err.Error()[:1] && !strings.HasPrefix(err.Error(), "Xen") {
					t.Errorf("%s %s: %q starts upper case", d.Name(), f, err)
				}
			}
		}
	}
}

// What the xl driver can do, feature by feature: the table README shows.
func TestXLDriverFeatures(t *testing.T) {
	d := xl.New(xl.Config{})
	bare := &hvm.Guest{Name: "win7"}
	full := &hvm.Guest{
		Name:     "win7",
		Disks:    []hvm.Disk{{Path: "/srv/x.iso", Vdev: "hdc", CDROM: true}},
		Serial:   []string{"pty"},
		Features: hvm.Features{PVDrivers: hvm.Bool(true)},
	}
	// memory-state: xl save and restore, the point's disks taken while
	// the domain is saved (not live points: those need the monitor).
	if got := boot.Features(d, bare); !equal(got, []boot.Feature{boot.Pause, boot.MemoryState}) {
		t.Errorf("bare guest: %v", got)
	}
	if got := boot.Features(d, full); !equal(got, []boot.Feature{boot.Pause, boot.AttachDisk, boot.AttachNIC, boot.ChangeMedia, boot.Console, boot.MemoryState}) {
		t.Errorf("guest with a CD-ROM drive, a pty serial port and PV drivers: %v", got)
	}
	if err := d.Supports(bare, "teleport"); !errors.Is(err, storage.ErrNotSupported) {
		t.Errorf("unknown feature: %v", err)
	}
}

func equal(a, b []boot.Feature) bool {
	return strings.Join(featureNames(a), ",") == strings.Join(featureNames(b), ",")
}

func featureNames(fs []boot.Feature) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}
