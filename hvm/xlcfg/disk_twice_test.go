package xlcfg_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/xlcfg"
)

// A field given twice, positionally and by key or by two keys, is
// refused with a message naming how it was first given.
func TestParseDiskFieldGivenTwiceNamesTheFirst(t *testing.T) {
	for _, tc := range []struct{ spec, first string }{
		{"qcow2:/img,hda,w,format=raw", "(qcow2: and again)"},
		{"/img,qcow2,hda,rw,format=raw", "(format field qcow2 and again)"},
		{"vdev=hda,/img,raw,hdb", "(hda and again)"},
		{"access=ro,/img,raw,hda,rw", "(access=ro and again)"},
		{"/img,raw,hda,w,access=r", "(access field w and again)"},
	} {
		_, err := xlcfg.ParseDisk(tc.spec)
		if err == nil || !strings.Contains(err.Error(), "given twice "+tc.first) {
			t.Errorf("ParseDisk(%q) = %v; want given twice %s", tc.spec, err, tc.first)
		}
	}
}

// In the second field a vdev after an xm prefix, a format, or a vdev
// without a prefix are all read for what they are.
func TestParseDiskSecondFieldIsFormatOrVdev(t *testing.T) {
	for spec, want := range map[string]string{
		"phy:vg/lv,hdb,w":  "/dev/vg/lv hdb  rw",
		"/img,qcow2,hdb":   "/img hdb qcow2 ",
		"/img,ioemu:hdb,r": "/img hdb  ro",
		"/img,,hdb,ro":     "/img hdb  ro",
		"/img,hdc:cdrom,r": "/img hdc  ro",
	} {
		d, err := xlcfg.ParseDisk(spec)
		src := d.Path + d.Device
		if got := src + " " + d.Vdev + " " + d.Format + " " + d.Access; err != nil || got != want {
			t.Errorf("ParseDisk(%q) = %q, %v; want %q", spec, got, err, want)
		}
	}
}
