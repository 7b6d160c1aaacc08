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
func ParseDisk(spec string) (hvm.Disk, error) {
	var d hvm.Disk
	if len(spec) > MaxSpecSize {
		return d, specError("disk", spec, "longer than %d bytes", MaxSpecSize)
	}
	var (
		target             string
		slot               = slotTarget
		depr, empty, phy   bool
		formatBy, accessBy string // "" or how it was given, for "given twice"
		vdevBy             string
	)
	twice := func(what, by string) error {
		return specError("disk", spec, "%s is given twice (%s and again): give it once", what, by)
	}
	vdevAndDevtype := func(s string) bool {
		s = strings.TrimPrefix(s, "ioemu:")
		v, dt, ok := strings.Cut(s, ":")
		if !ok || dt != "cdrom" && dt != "disk" || !hvm.VdevPattern.MatchString(v) {
			return false
		}
		d.Vdev, d.CDROM, vdevBy = v, dt == "cdrom", v
		return true
	}
	setFormat := func(s, by string) error {
		if formatBy != "" && s != "" {
			return twice("format", formatBy)
		}
		formatBy = by
		switch {
		case s == "":
		case s == "empty":
			empty = true
		case slices.Contains(hvm.Formats, s):
			d.Format = s
		default:
			return specError("disk", spec, "unknown format %q: use raw, qcow, qcow2, vhd, qed or empty", s)
		}
		return nil
	}
	setVdev := func(s string) error {
		if s == "" {
			return nil
		}
		if vdevBy != "" {
			return twice("vdev", vdevBy)
		}
		if vdevAndDevtype(s) {
			return nil
		}
		s = strings.TrimPrefix(s, "ioemu:")
		if !hvm.VdevPattern.MatchString(s) {
			return specError("disk", spec, "vdev %q is not hdX, sdX or xvdX", s)
		}
		d.Vdev, vdevBy = s, s
		return nil
	}
	setAccess := func(s, by string) error {
		if s == "" {
			return nil
		}
		if accessBy != "" {
			return twice("access", accessBy)
		}
		accessBy = by
		switch s {
		case "r", "ro":
			d.Access = "ro"
		case "w", "rw", "w!":
			d.Access = "rw"
		default:
			return specError("disk", spec, "access %q is not r, ro, w or rw", s)
		}
		return nil
	}
	setDevtype := func(s string) error {
		switch s {
		case "cdrom":
			d.CDROM = true
		case "disk":
			d.CDROM = false
		default:
			return specError("disk", spec, "devtype %q is not cdrom or disk", s)
		}
		return nil
	}
	// positional fills the next slot; an empty field takes its default.
	positional := func(tok string) error {
		switch slot {
		case slotTarget:
			target, slot = tok, slotFormat
			for {
				m := prefixPattern.FindStringSubmatch(target)
				if m == nil {
					break
				}
				depr = true
				switch p := m[1]; p {
				case "phy":
					phy = true
				case "file", "aio", "ioemu", "tapdisk":
				case "tap", "tap2":
					d.Backend = "tap"
				case "raw", "qcow", "qcow2", "vhd":
					d.Format, formatBy = p, p+":"
				case "iscsi", "nbd", "enbd", "drbd":
					d.Script = "block-" + p
				default:
					return specError("disk", spec, "unknown prefix %q: use phy: for a block device, file: for an image file, or the key=value form (target= last)", p+":")
				}
				target = target[len(m[0]):]
			}
			return nil
		case slotFormat:
			slot = slotVdev
			switch {
			case depr && tok == "":
				// "qcow2:/img,,hda": the empty format field.
				return nil
			case depr:
				// The legacy "prefix:target,vdev,access".
				slot = slotAccess
				return setVdev(tok)
			case target == "" && vdevAndDevtype(tok):
				// ",hdc:cdrom,r": xm's empty drive.
				empty, slot = true, slotAccess
				return nil
			case tok == "" || tok == "empty" || slices.Contains(hvm.Formats, tok):
				return setFormat(tok, "format field "+tok)
			case hvm.VdevPattern.MatchString(strings.TrimPrefix(tok, "ioemu:")) || vdevAndDevtype(tok):
				// xm wrote "target,vdev,access" without a prefix.
				slot = slotAccess
				if vdevBy == tok {
					return nil
				}
				return setVdev(tok)
			}
			return setFormat(tok, tok)
		case slotVdev:
			slot = slotAccess
			return setVdev(tok)
		case slotAccess:
			slot = slotNone
			return setAccess(tok, "access field "+tok)
		}
		if tok == "" {
			return nil
		}
		return specError("disk", spec, "too many positional parameters at %q", tok)
	}

	rest := spec
	for first := true; first || rest != ""; first = false {
		var tok string
		trimmed := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(trimmed, "target=") {
			target, slot = strings.TrimPrefix(trimmed, "target="), max(slot, slotFormat)
			break
		}
		tok, rest, _ = strings.Cut(rest, ",")
		tok = strings.TrimSpace(tok)
		var err error
		switch {
		case paramPattern.MatchString(tok):
			k, v, _ := strings.Cut(tok, "=")
			switch k {
			case "format":
				err = setFormat(v, "format="+v)
			case "vdev":
				err = setVdev(v)
			case "access":
				err = setAccess(v, "access="+v)
			case "devtype":
				err = setDevtype(v)
			case "backendtype":
				switch v {
				case "phy":
					phy, d.Backend = true, ""
				case "qdisk", "tap", "standalone":
					d.Backend = v
				default:
					err = specError("disk", spec, "backendtype %q is not phy, qdisk, tap or standalone", v)
				}
			case "backend":
				d.BackendDomain = v
			case "script":
				d.Script = v
			default:
				vals, ok := diskOptions[k+"="]
				switch {
				case !ok:
					err = specError("disk", spec, "unknown parameter %q (xl-disk-configuration(5) lists them)", k)
				case vals != nil && !slices.Contains(vals, v):
					err = specError("disk", spec, "%s %q is not one of %s", k, v, strings.Join(vals, ", "))
				case strings.ContainsAny(v, " \t"):
					err = specError("disk", spec, "%s %q contains a space", k, v)
				default:
					d.Options = append(d.Options, tok)
				}
			}
		case tok == "cdrom":
			d.CDROM = true
		case tok == "discard":
			d.Discard = hvm.Bool(true)
		case tok == "no-discard":
			d.Discard = hvm.Bool(false)
		case diskOptions[tok] == nil && hasKey(diskOptions, tok):
			d.Options = append(d.Options, tok)
		default:
			err = positional(tok)
		}
		if err != nil {
			return d, err
		}
	}
	if d.Vdev == "" {
		return d, specError("disk", spec, "no vdev: name the device the guest sees, e.g. hda (vdev=hda)")
	}
	if target == "" || empty {
		if !d.CDROM {
			return d, specError("disk", spec, "no target: give the image path or device (target= last), or mark an empty drive as a CD-ROM")
		}
		if empty && target != "" {
			return d, specError("disk", spec, "format empty with target %q: an empty CD-ROM has no target", target)
		}
		d.Format = ""
		return d, nil
	}
	if phy {
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
