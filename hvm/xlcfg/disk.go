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
	paramPattern  = pattern.New(`^[a-z][-a-z0-9]*=`)
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

// ParseDisk parses one xl disk spec (xl-disk-configuration(5)) in either
// syntax: key=value with positional target, format, vdev, access
// ("format=qcow2,vdev=hda,target=/img", "/img,qcow2,hda,rw") or the legacy
// xm form "[prefix:]target,vdev[:cdrom],access" ("phy:/dev/vg/lv,hda,w",
// "file:/x.iso,hdc:cdrom,r", ",hdc:cdrom,r" for an empty drive).
func ParseDisk(spec string) (hvm.Disk, error) {
	var d hvm.Disk
	if len(spec) > MaxSpecSize {
		return d, specError("disk", spec, "longer than %d bytes", MaxSpecSize)
	}
	var (
		target                                    string
		targetSet, depr, formatSet, accessSet     bool
		empty, phy                                bool
		vdevAndDevtype                            func(string) bool
		setFormat, setAccess, setVdev, setDevtype func(string) error
	)
	vdevAndDevtype = func(s string) bool {
		s = strings.TrimPrefix(s, "ioemu:")
		v, dt, ok := strings.Cut(s, ":")
		if !ok || dt != "cdrom" || !hvm.VdevPattern.MatchString(v) {
			return false
		}
		d.Vdev, d.CDROM = v, true
		return true
	}
	setFormat = func(s string) error {
		formatSet = true
		switch {
		case s == "empty":
			empty = true
		case slices.Contains(hvm.Formats, s):
			d.Format = s
		default:
			return specError("disk", spec, "unknown format %q: use raw, qcow, qcow2, vhd, qed or empty", s)
		}
		return nil
	}
	setVdev = func(s string) error {
		if vdevAndDevtype(s) {
			return nil
		}
		s = strings.TrimPrefix(s, "ioemu:")
		if !hvm.VdevPattern.MatchString(s) {
			return specError("disk", spec, "vdev %q is not hdX, sdX or xvdX", s)
		}
		d.Vdev = s
		return nil
	}
	setAccess = func(s string) error {
		accessSet = true
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
	setDevtype = func(s string) error {
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

	rest := spec
	for first := true; first || rest != ""; first = false {
		var tok string
		trimmed := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(trimmed, "target=") {
			target, targetSet = strings.TrimPrefix(trimmed, "target="), true
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
				err = setFormat(v)
			case "vdev":
				err = setVdev(v)
			case "access":
				err = setAccess(v)
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
				err = specError("disk", spec, "unknown parameter %q (xl-disk-configuration(5) lists them)", k)
			}
		case tok == "cdrom":
			d.CDROM = true
		case tok == "discard":
			d.Discard = hvm.Bool(true)
		case tok == "no-discard":
			d.Discard = hvm.Bool(false)
		case tok == "direct-io-safe":
		case !targetSet:
			target, targetSet = tok, true
			for {
				m := prefixPattern.FindStringSubmatch(target)
				if m == nil {
					break
				}
				depr = true
				switch p := m[1]; p {
				case "phy":
					phy = true
				case "file", "aio", "ioemu":
				case "tap", "tap2":
					d.Backend = "tap"
				case "raw", "qcow", "qcow2", "vhd":
					d.Format = p
				case "iscsi", "nbd", "drbd":
					d.Script = "block-" + p
				default:
					return d, specError("disk", spec, "unknown prefix %q: use phy: for a block device, file: for an image file, or the key=value form (target= last)", p+":")
				}
				target = target[len(m[0]):]
			}
		case !depr && !formatSet:
			switch {
			case target == "" && vdevAndDevtype(tok):
				formatSet, empty = true, true
			case slices.Contains(hvm.Formats, tok) || tok == "empty":
				err = setFormat(tok)
			case hvm.VdevPattern.MatchString(strings.TrimPrefix(tok, "ioemu:")) || vdevAndDevtype(tok):
				// xm wrote "target,vdev,access" without a prefix.
				formatSet = true
				err = setVdev(tok)
			default:
				err = setFormat(tok)
			}
		case d.Vdev == "":
			err = setVdev(tok)
		case !accessSet:
			err = setAccess(tok)
		case tok == "":
		default:
			err = specError("disk", spec, "too many positional parameters at %q", tok)
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
		d.Device = target
	} else {
		d.Path = target
	}
	return d, nil
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
	switch {
	case kind == hvm.SourceDevice:
		parts = append(parts, "backendtype=phy")
	case d.Backend != "":
		parts = append(parts, "backendtype="+d.Backend)
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
