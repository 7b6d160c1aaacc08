package xlcfg_test

import (
	"os"
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm/internal/hvmtest"
	"github.com/strata-vm/strata/hvm/xlcfg"
)

// FuzzParse: any input parses or fails with an error; nothing panics, and
// whatever parses renders and parses again.
func FuzzParse(f *testing.F) {
	configs, _ := hvmtest.Corpus()
	seeds, _ := hvmtest.Seeds()
	for _, c := range append(configs, seeds...) {
		if data, err := os.ReadFile(c.CfgPath); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a = [[[[[[1]]]]]]\nb = '''x'''\nc = \"\\x41\\101\"\n"))
	f.Add([]byte(strings.Repeat("[", 40)))
	f.Add([]byte("name=\"\"\nbuilder=\"hvm\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, _, err := xlcfg.Parse("fuzz.cfg", data)
		if err != nil {
			return
		}
		out, err := xlcfg.Render(g)
		if err != nil {
			return
		}
		if _, _, err := xlcfg.Parse("rendered.cfg", out); err != nil {
			t.Fatalf("the rendering of a parsed config does not parse: %v\n%s", err, out)
		}
	})
}

func FuzzDiskSpec(f *testing.F) {
	for _, s := range []string{"file:/x,ioemu:hda,w", "phy:/dev/vg/lv,hda,w", "tap:qcow2:/img,xvda,w", ",hdc:cdrom,r",
		"file:/x.iso,hdc:cdrom,r", "format=qcow2,vdev=hda,access=rw,backendtype=qdisk,target=/a,b", "/x,raw,hda,rw,backendtype=phy"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		d, err := xlcfg.ParseDisk(spec)
		if err != nil {
			return
		}
		s, err := xlcfg.FormatDisk(d)
		if err != nil {
			return
		}
		if _, err := xlcfg.ParseDisk(s); err != nil {
			t.Fatalf("FormatDisk(ParseDisk(%q)) = %q does not parse: %v", spec, s, err)
		}
	})
}

func FuzzVifSpec(f *testing.F) {
	for _, s := range []string{"type=ioemu, bridge=xenbr0", "mac=00:16:3e:66:92:9c,bridge=xenbr1,script=vif-bridge,model=e1000,rate=10240KB/s", "bridge=ovsbr0:42:43"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		n, _, err := xlcfg.ParseVif(spec)
		if err != nil {
			return
		}
		s, err := xlcfg.FormatVif(n)
		if err != nil {
			return
		}
		if _, _, err := xlcfg.ParseVif(s); err != nil {
			t.Fatalf("FormatVif(ParseVif(%q)) = %q does not parse: %v", spec, s, err)
		}
	})
}
