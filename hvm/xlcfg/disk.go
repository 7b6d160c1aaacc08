package xlcfg

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/pattern"
)

// MaxSpecSize bounds one disk or vif spec.
const MaxSpecSize = 64 << 10

var (
	prefixPattern = pattern.New(`^([a-z][a-z0-9]*):`)
	paramPattern  = pattern.New(`^[a-z][-_a-z0-9]*=`)
)

func specError(kind, spec, format string, args ...any) error {
	if hvm.SecretValue(spec) {
		// Nor a part of it: the details may quote one.
		return storage.Errorf(storage.ErrInvalid, "a %s spec that holds a password (not quoted) is not valid: check it against xl-disk-configuration(5) or xl-network-configuration(5)", kind)
	}
	if len(spec) > 80 {
		spec = spec[:80] + "..."
	}
	return storage.Errorf(storage.ErrInvalid, "%s spec %q: %s", kind, spec, fmt.Sprintf(format, args...))
}

// diskFlags are xl disk flags and parameters strata keeps verbatim in
// Disk.Options (xl-disk-configuration(5)); the value is true for a
// key=value parameter, with the values it may take (nil: any).
var diskOptions = map[string][]string{
	"direct-io-safe": nil, "trusted": nil, "untrusted": nil, "colo": nil, "no-colo": nil,
	"specification=": {"xen", "virtio"}, "grant_usage=": {"0", "1"},
	"colo-host=": nil, "colo-port=": nil, "colo-export=": nil, "active-disk=": nil, "hidden-disk=": nil,
}

// Positional slots of an xl disk spec, in order.
const (
	slotTarget = iota
	slotFormat
	slotVdev
	slotAccess
	slotNone
)

// ParseDisk parses one xl disk spec (xl-disk-configuration(5)) in either
// syntax: key=value with positional target, format, vdev, access, where
// an empty field means its default ("format=qcow2,vdev=hda,target=/img",
// "/img,qcow2,hda,rw", "/dev/vg/lv,,hda", "/x.iso,,hdc,cdrom"), or the
// legacy xm form "[prefix:]target,vdev[:cdrom],access"
// ("phy:/dev/vg/lv,hda,w", "qcow2:/img,,hda", "file:/x.iso,hdc:cdrom,r",
// ",hdc:cdrom,r" for an empty drive). A phy target without a leading '/'
// is under /dev, as xl reads it.
//
// It splits the spec at commas (target= takes the rest, commas and
// all), hands each token to diskParser.token, then checks the whole.
func ParseDisk(spec string) (hvm.Disk, error) {
	if len(spec) > MaxSpecSize {
		return hvm.Disk{}, specError("disk", spec, "longer than %d bytes", MaxSpecSize)
	}
	p := &diskParser{spec: spec}
	rest := spec
	for first := true; first || rest != ""; first = false {
		if t, ok := strings.CutPrefix(strings.TrimLeft(rest, " \t"), "target="); ok {
			p.target, p.slot = t, max(p.slot, slotFormat)
			break
		}
		var tok string
		tok, rest, _ = strings.Cut(rest, ",")
		if err := p.token(strings.TrimSpace(tok)); err != nil {
			return p.d, err
		}
	}
	return p.finish()
}

// diskParser is the state of one ParseDisk: the disk so far, the target,
// the next positional slot, and how format, vdev and access were given
// (empty until they are), so a second one is refused by naming the first.
type diskParser struct {
	spec   string
	d      hvm.Disk
	target string
	slot   int
	// depr: the target had an xm prefix ("phy:", "qcow2:", ...), so the
	// next field is the vdev; empty: format=empty or xm's empty drive;
	// phy: the target is a block device.
	depr, empty, phy           bool
	formatBy, accessBy, vdevBy string
}

func (p *diskParser) errorf(format string, args ...any) error {
	return specError("disk", p.spec, format, args...)
}

func (p *diskParser) twice(what, by string) error {
	return p.errorf("%s is given twice (%s and again): give it once", what, by)
}

// diskParams are the key=value parameters with a field of their own;
// other known keys are kept verbatim in Options (diskOptions).
var diskParams = map[string]func(p *diskParser, v string) error{
	"format":      func(p *diskParser, v string) error { return p.setFormat(v, "format="+v) },
	"vdev":        (*diskParser).setVdev,
	"access":      func(p *diskParser, v string) error { return p.setAccess(v, "access="+v) },
	"devtype":     (*diskParser).setDevtype,
	"backendtype": (*diskParser).setBackendType,
	"backend":     func(p *diskParser, v string) error { p.d.BackendDomain = v; return nil },
	"script":      func(p *diskParser, v string) error { p.d.Script = v; return nil },
}

// diskFlags are the bare flags with a field of their own.
var diskFlags = map[string]func(d *hvm.Disk){
	"cdrom":      func(d *hvm.Disk) { d.CDROM = true },
	"discard":    func(d *hvm.Disk) { d.Discard = hvm.Bool(true) },
	"no-discard": func(d *hvm.Disk) { d.Discard = hvm.Bool(false) },
}

// token reads one comma-separated token: a key=value parameter, a flag,
// or else the next positional field.
func (p *diskParser) token(tok string) error {
	if paramPattern.MatchString(tok) {
		k, v, _ := strings.Cut(tok, "=")
		if set, ok := diskParams[k]; ok {
			return set(p, v)
		}
		return p.option(tok, k, v)
	}
	if set, ok := diskFlags[tok]; ok {
		set(&p.d)
		return nil
	}
	if diskOptions[tok] == nil && hasKey(diskOptions, tok) {
		p.d.Options = append(p.d.Options, tok)
		return nil
	}
	return p.positional(tok)
}

// option keeps a known key=value option verbatim, checking its value.
func (p *diskParser) option(tok, k, v string) error {
	vals, ok := diskOptions[k+"="]
	switch {
	case !ok:
		return p.errorf("unknown parameter %q (xl-disk-configuration(5) lists them)", k)
	case vals != nil && !slices.Contains(vals, v):
		return p.errorf("%s %q is not one of %s", k, v, strings.Join(vals, ", "))
	case strings.ContainsAny(v, " \t"):
		return p.errorf("%s %q contains a space", k, v)
	}
	p.d.Options = append(p.d.Options, tok)
	return nil
}

// positional fills the next slot; an empty field takes its default.
func (p *diskParser) positional(tok string) error {
	switch p.slot {
	case slotTarget:
		p.slot = slotFormat
		return p.setTarget(tok)
	case slotFormat:
		return p.formatField(tok)
	case slotVdev:
		p.slot = slotAccess
		return p.setVdev(tok)
	case slotAccess:
		p.slot = slotNone
		return p.setAccess(tok, "access field "+tok)
	}
	if tok == "" {
		return nil
	}
	return p.errorf("too many positional parameters at %q", tok)
}

// setTarget reads the target field, peeling off xm's prefixes
// ("tap:qcow2:/img"), each of which says something about the disk.
func (p *diskParser) setTarget(target string) error {
	for {
		m := prefixPattern.FindStringSubmatch(target)
		if m == nil {
			break
		}
		p.depr = true
		switch pre := m[1]; pre {
		case "phy":
			p.phy = true
		case "file", "aio", "ioemu", "tapdisk":
		case "tap", "tap2":
			p.d.Backend = "tap"
		case "raw", "qcow", "qcow2", "vhd":
			p.d.Format, p.formatBy = pre, pre+":"
		case "iscsi", "nbd", "enbd", "drbd":
			p.d.Script = "block-" + pre
		default:
			return p.errorf("unknown prefix %q: use phy: for a block device, file: for an image file, or the key=value form (target= last)", pre+":")
		}
		target = target[len(m[0]):]
	}
	p.target = target
	return nil
}

// formatField reads the second positional field, which is the format in
// xl's form but the vdev in xm's: the token and what came before decide.
func (p *diskParser) formatField(tok string) error {
	p.slot = slotVdev
	switch {
	case p.depr && tok == "":
		// "qcow2:/img,,hda": the empty format field.
		return nil
	case p.depr:
		// The legacy "prefix:target,vdev,access".
		p.slot = slotAccess
		return p.setVdev(tok)
	case p.target == "" && p.vdevAndDevtype(tok):
		// ",hdc:cdrom,r": xm's empty drive.
		p.empty, p.slot = true, slotAccess
		return nil
	case tok == "" || tok == "empty" || slices.Contains(hvm.Formats, tok):
		return p.setFormat(tok, "format field "+tok)
	case hvm.VdevPattern.MatchString(strings.TrimPrefix(tok, "ioemu:")):
		// xm wrote "target,vdev,access" without a prefix.
		p.slot = slotAccess
		return p.setVdev(tok)
	case p.vdevAndDevtype(tok):
		// The same with the device type: "target,hdc:cdrom,r".
		p.slot = slotAccess
		return nil
	}
	return p.setFormat(tok, tok)
}

// vdevAndDevtype reads xm's "hdc:cdrom" (or ":disk"), reporting whether
// s was one.
func (p *diskParser) vdevAndDevtype(s string) bool {
	s = strings.TrimPrefix(s, "ioemu:")
	v, dt, ok := strings.Cut(s, ":")
	if !ok || dt != "cdrom" && dt != "disk" || !hvm.VdevPattern.MatchString(v) {
		return false
	}
	p.d.Vdev, p.d.CDROM, p.vdevBy = v, dt == "cdrom", v
	return true
}

func (p *diskParser) setFormat(s, by string) error {
	if p.formatBy != "" && s != "" {
		return p.twice("format", p.formatBy)
	}
	p.formatBy = by
	switch {
	case s == "":
	case s == "empty":
		p.empty = true
	case slices.Contains(hvm.Formats, s):
		p.d.Format = s
	default:
		return p.errorf("unknown format %q: use raw, qcow, qcow2, vhd, qed or empty", s)
	}
	return nil
}

func (p *diskParser) setVdev(s string) error {
	if s == "" {
		return nil
	}
	if p.vdevBy != "" {
		return p.twice("vdev", p.vdevBy)
	}
	if p.vdevAndDevtype(s) {
		return nil
	}
	s = strings.TrimPrefix(s, "ioemu:")
	if !hvm.VdevPattern.MatchString(s) {
		return p.errorf("vdev %q is not hdX, sdX or xvdX", s)
	}
	p.d.Vdev, p.vdevBy = s, s
	return nil
}

func (p *diskParser) setAccess(s, by string) error {
	if s == "" {
		return nil
	}
	if p.accessBy != "" {
		return p.twice("access", p.accessBy)
	}
	p.accessBy = by
	switch s {
	case "r", "ro":
		p.d.Access = "ro"
	case "w", "rw", "w!":
		p.d.Access = "rw"
	default:
		return p.errorf("access %q is not r, ro, w or rw", s)
	}
	return nil
}

func (p *diskParser) setDevtype(s string) error {
	switch s {
	case "cdrom":
		p.d.CDROM = true
	case "disk":
		p.d.CDROM = false
	default:
		return p.errorf("devtype %q is not cdrom or disk", s)
	}
	return nil
}

func (p *diskParser) setBackendType(v string) error {
	switch v {
	case "phy":
		p.phy, p.d.Backend = true, ""
	case "qdisk", "tap", "standalone":
		p.d.Backend = v
	default:
		return p.errorf("backendtype %q is not phy, qdisk, tap or standalone", v)
	}
	return nil
}

// finish checks the whole spec: a vdev, and a target unless the drive is
// an empty CD-ROM; a phy target becomes the disk's device.
func (p *diskParser) finish() (hvm.Disk, error) {
	d, target := p.d, p.target
	if d.Vdev == "" {
		return d, p.errorf("no vdev: name the device the guest sees, e.g. hda (vdev=hda)")
	}
	if target == "" || p.empty {
		if !d.CDROM {
			return d, p.errorf("no target: give the image path or device (target= last), or mark an empty drive as a CD-ROM")
		}
		if p.empty && target != "" {
			return d, p.errorf("format empty with target %q: an empty CD-ROM has no target", target)
		}
		d.Format = ""
		return d, nil
	}
	if p.phy {
		if !strings.HasPrefix(target, "/") {
			target = "/dev/" + target
		}
		d.Device = target
	} else {
		d.Path = target
	}
	return d, nil
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// FormatDisk writes d as an xl key=value disk spec, target last.
func FormatDisk(d hvm.Disk) (string, error) {
	kind, src := d.Source()
	var parts []string
	switch {
	case kind == hvm.SourceNone:
		parts = append(parts, "format=empty")
	case d.Format != "":
		parts = append(parts, "format="+d.Format)
	}
	parts = append(parts, "vdev="+d.Vdev)
	if d.Access != "" {
		parts = append(parts, "access="+d.Access)
	}
	if d.CDROM {
		parts = append(parts, "devtype=cdrom")
	}
	rbd := kind == hvm.SourcePath && strings.HasPrefix(src, "rbd:")
	switch {
	case kind == hvm.SourceDevice:
		parts = append(parts, "backendtype=phy")
	case rbd && d.Backend != "" && d.Backend != "qdisk":
		return "", specError("disk", src, "an rbd image is opened by QEMU's qdisk backend only, not %s: leave backend out or set it to qdisk", d.Backend)
	case rbd:
		// Only QEMU (qdisk) speaks rbd: the kernel backends need a
		// block device, which rbd map would make.
		parts = append(parts, "backendtype=qdisk")
	case d.Backend != "":
		parts = append(parts, "backendtype="+d.Backend)
	}
	if rbd && strings.Contains(src, ",") {
		return "", specError("disk", src, "a comma cannot be written in an xl disk target")
	}
	if d.BackendDomain != "" {
		parts = append(parts, "backend="+d.BackendDomain)
	}
	if d.Script != "" {
		parts = append(parts, "script="+d.Script)
	}
	if d.Discard != nil {
		if *d.Discard {
			parts = append(parts, "discard")
		} else {
			parts = append(parts, "no-discard")
		}
	}
	for _, o := range d.Options {
		k, _, _ := strings.Cut(o, "=")
		if _, ok := diskOptions[k]; !ok && !strings.Contains(o, "=") || strings.Contains(o, "=") && !hasKey(diskOptions, k+"=") || strings.ContainsAny(o, ", \t") {
			return "", specError("disk", o, "%q is not an xl disk option strata keeps (direct-io-safe, trusted, untrusted, specification=, grant_usage=, colo...)", o)
		}
		parts = append(parts, o)
	}
	for _, v := range []string{d.BackendDomain, d.Script, d.Vdev} {
		if strings.ContainsAny(v, ",=") {
			return "", specError("disk", v, "a comma or '=' cannot be written in an xl disk spec")
		}
	}
	switch kind {
	case hvm.SourceVolume, hvm.SourceMedia:
		return "", storage.Errorf(storage.ErrPrecondition, "disk %s names %s %q: resolve it to a host path first (hvm.ResolveDisks)", d.Vdev, kind, src)
	case hvm.SourcePath, hvm.SourceDevice:
		parts = append(parts, "target="+src)
	}
	return strings.Join(parts, ","), nil
}

// FormatDiskXM writes d in the legacy xm form "prefix:target,vdev,access".
func FormatDiskXM(d hvm.Disk) (string, error) {
	kind, src := d.Source()
	if strings.Contains(src, ",") {
		return "", specError("disk", src, "an xm disk target cannot contain a comma")
	}
	vdev := d.Vdev
	if d.CDROM {
		vdev += ":cdrom"
	}
	access := "w"
	if d.ReadOnly() {
		access = "r"
	}
	var prefix string
	switch kind {
	case hvm.SourceNone:
		return "," + vdev + "," + access, nil
	case hvm.SourceDevice:
		prefix = "phy:"
	case hvm.SourcePath:
		if strings.HasPrefix(src, "rbd:") {
			return "", specError("disk", src, "xm cannot use rbd images; write the configuration for xl (target=rbd:...,backendtype=qdisk)")
		}
		switch d.Format {
		case "", "raw":
			prefix = "file:"
			if d.Backend == "tap" {
				prefix = "tap:aio:"
			}
		case "qcow", "qcow2", "vhd":
			prefix = "tap:" + d.Format + ":"
		default:
			return "", specError("disk", src, "xm cannot use %s images; convert the image or use xl", d.Format)
		}
	default:
		return "", storage.Errorf(storage.ErrPrecondition, "disk %s names %s %q: resolve it to a host path first (hvm.ResolveDisks)", d.Vdev, kind, src)
	}
	if d.Script != "" {
		s := strings.TrimPrefix(d.Script, "block-")
		if s != "iscsi" && s != "nbd" && s != "drbd" {
			return "", specError("disk", src, "xm cannot express block script %q", d.Script)
		}
		prefix = s + ":"
	}
	return prefix + src + "," + vdev + "," + access, nil
}
