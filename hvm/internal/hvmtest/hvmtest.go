// Package hvmtest finds the test data the hvm packages share: libvirt's
// Xen converter corpus and strata's seed configs under testdata/hvm.
package hvmtest

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// Dir returns testdata/hvm of the repository.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "hvm")
}

// Config is one config file of the corpus or the seeds, with the libvirt
// XML libvirt made from it when there is one.
type Config struct {
	Name    string // e.g. xmconfigdata/test-fullvirt-sound
	CfgPath string
	XMLPath string // "" when the corpus has no XML for it
}

// Corpus lists the .cfg files of testdata/hvm/libvirt-xenconfig.
func Corpus() ([]Config, error) {
	root := filepath.Join(Dir(), "libvirt-xenconfig")
	files, err := filepath.Glob(filepath.Join(root, "*", "*.cfg"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Config
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		c := Config{Name: strings.TrimSuffix(rel, ".cfg"), CfgPath: f}
		if x := strings.TrimSuffix(f, ".cfg") + ".xml"; exists(x) {
			c.XMLPath = x
		}
		out = append(out, c)
	}
	return out, nil
}

// Seeds lists strata's own example configs in testdata/hvm/seeds.
func Seeds() ([]Config, error) {
	files, err := filepath.Glob(filepath.Join(Dir(), "seeds", "*.cfg"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Config
	for _, f := range files {
		out = append(out, Config{Name: "seeds/" + strings.TrimSuffix(filepath.Base(f), ".cfg"), CfgPath: f})
	}
	return out, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
