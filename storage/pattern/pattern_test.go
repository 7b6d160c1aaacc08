package pattern_test

import (
	"testing"

	"github.com/strata-vm/strata/storage/pattern"
)

func TestLazy(t *testing.T) {
	p := pattern.New(`^(hd|sd)([a-z])$`)
	if !p.MatchString("hda") || p.MatchString("xvda") {
		t.Error("MatchString")
	}
	if m := p.FindStringSubmatch("sdb"); len(m) != 3 || m[2] != "b" {
		t.Errorf("FindStringSubmatch: %v", m)
	}
}
