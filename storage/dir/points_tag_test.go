package dir

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/storage"
)

// A qcow2 point's tag keeps only what is safe in a tag (letters, digits,
// '.', '_', '-'), one '-' for each run of anything else, at most
// maxTagLabel bytes of label, and always ends with the UID; no label
// gives the tag strata made before labels.
func TestQcow2TagLabelIsSafeAndBounded(t *testing.T) {
	for _, c := range []struct{ label, want string }{
		{"12-before-sp3", "strata-12-before-sp3-0123456789ab"},
		{"3-Ünïcode; rm -rf / && more", "strata-3-n-code-rm-rf-more-0123456789ab"},
		{"7-日本", "strata-7-0123456789ab"},
		{"8-" + strings.Repeat("x", 80), "strata-8-" + strings.Repeat("x", maxTagLabel-2) + "-0123456789ab"},
		{"", "strata-0123456789ab"},
	} {
		ref := qcow2Internal{}.plan(storage.Volume{}, "0123456789ab", storage.PointOptions{Label: c.label})
		if ref.Ref != c.want {
			t.Errorf("label %q: tag %q, want %q", c.label, ref.Ref, c.want)
		}
	}
}
