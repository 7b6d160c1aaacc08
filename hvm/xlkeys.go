package hvm

import (
	"fmt"
	"slices"

	"github.com/strata-vm/strata/storage/pattern"
	"go.yaml.in/yaml/v3"
)

var diskOptionPattern = pattern.New(`^[a-z][-a-z_]*(=[^, \t\n"']+)?$`)

// Values of the xl keys modelled in the second round of xl.cfg coverage
// (issue 14). The renderers share them.
var (
	// PassthroughModes are the values of xl passthrough.
	PassthroughModes = []string{"enabled", "disabled", "sync_pt", "share_pt", "default"}
)

// SoundAll is xl/xm soundhw = "all": every sound card the device model
// has. Xen's qemu-dm had sb16 and es1370 (libvirt's Xen converter reads
// "all" as those two), so renderers without "all" give those.
const SoundAll = "all"

// soundAllCards are the cards "all" stands for where it cannot be written.
var soundAllCards = []string{"sb16", "es1370"}

// SoundCards returns the guest's sound cards with "all" expanded to the
// cards it stands for, each once, for renderers that have no "all".
func (g *Guest) SoundCards() []string {
	var out []string
	for _, s := range g.SoundHW {
		cards := []string{s}
		if s == SoundAll {
			cards = soundAllCards
		}
		for _, c := range cards {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// validateXLKeys checks the fields modelled in the second round (defs2's
// validate.go checks rtc_timeoffset and device_model.xm_path).
func (g *Guest) validateXLKeys(p *problems) {
	if g.Passthrough != "" && !oneOf(g.Passthrough, PassthroughModes) {
		p.add("passthrough", "%q is not known; use one of %s", g.Passthrough, list(PassthroughModes))
	}
	for i, d := range g.Disks {
		for _, o := range d.Options {
			if !diskOptionPattern.MatchString(o) {
				p.add(fmt.Sprintf("disks[%d].options", i), "%q is not an xl disk flag or key=value without commas or spaces (e.g. direct-io-safe, specification=virtio)", o)
			}
		}
	}
}

// UnmarshalYAML reads viridian as the README and xl write it: a boolean
// (features.viridian: true; 1 and 0 as xl writes them), a list of groups
// (features.viridian: [base, freq]), or the mapping Marshal writes
// (enabled, groups).
func (v *Viridian) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "1":
			*v = Viridian{Enabled: true}
			return nil
		case "0":
			*v = Viridian{}
			return nil
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return fmt.Errorf("line %d: viridian takes true or false, a list of groups, or enabled and groups", n.Line)
		}
		*v = Viridian{Enabled: b}
		return nil
	case yaml.SequenceNode:
		var groups []string
		if err := n.Decode(&groups); err != nil {
			return fmt.Errorf("line %d: viridian's groups are a list of names such as base, freq", n.Line)
		}
		*v = Viridian{Enabled: true, Groups: groups}
		return nil
	}
	type plain Viridian // without this method
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*v = Viridian(p)
	return nil
}
