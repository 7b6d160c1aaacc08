package lvm

import (
	"fmt"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// The mapping from strata's objects to LV names:
//
//	strata.KIND.PART[.PART...]
//
// KIND is a lower-case word saying what the LV holds (KindVolume, ...);
// each PART is a strata ID with every byte outside [A-Za-z0-9-] written
// as '+' and two upper-case hex digits ("a.b" -> "a+2Eb", "x_y" ->
// "x+5Fy"). So a name never holds '_', which is how all of LVM's
// reserved infixes begin (_mlog, _tdata, _tmeta, _pmspare, _rimage,
// _cdata, ...); it starts with "strata", never "snapshot", "pvmove" or
// '-'; and it is never "." or "..". ParseLVName reverses it exactly.
//
// An LV name may be at most MaxLVName bytes: device-mapper's name of an
// LV is "VG-LV" (with '-' doubled) within 127 bytes, and LVM needs room
// for the suffixes of its hidden sub-LVs.
const (
	namePrefix = "strata."
	MaxLVName  = 100
)

// Kinds of strata's LVs. The pool driver may name others (lower-case
// letters only).
const (
	KindVolume = "vol"    // a volume: PART is its ID
	KindPoint  = "point"  // a restore point: volume ID, point ID
	KindGolden = "golden" // a golden image's frozen base: its ID
	KindAside  = "aside"  // a live LV renamed aside during a rollback: volume ID, operation ID
	KindTemp   = "tmp"    // an LV being built, not yet in place: any IDs
)

// TagStrata marks every LV strata makes (lvcreate --addtag), so that
// strata lists its own LVs (`lvs @strata`) and never touches others.
const TagStrata = "strata"

// LVName is the LV name of a kind of object and its IDs (see above).
func LVName(kind string, ids ...string) (string, error) {
	if kind == "" || strings.Trim(kind, "abcdefghijklmnopqrstuvwxyz") != "" {
		return "", storage.Errorf(storage.ErrInvalid, "invalid lv kind %q: use lower-case letters", kind)
	}
	if len(ids) == 0 {
		return "", storage.Errorf(storage.ErrInvalid, "an lv name of kind %q needs at least one id", kind)
	}
	var b strings.Builder
	b.WriteString(namePrefix)
	b.WriteString(kind)
	for _, id := range ids {
		if id == "" {
			return "", storage.Errorf(storage.ErrInvalid, "an lv name of kind %q has an empty id", kind)
		}
		b.WriteByte('.')
		for i := 0; i < len(id); i++ {
			c := id[i]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "+%02X", c)
			}
		}
	}
	if b.Len() > MaxLVName {
		return "", storage.Errorf(storage.ErrInvalid, "the lv name for %s %q is %d bytes, longer than %d: use shorter ids", kind, strings.Join(ids, " "), b.Len(), MaxLVName)
	}
	return b.String(), nil
}

// ParseLVName reverses LVName; ok is false for an LV strata did not name.
func ParseLVName(name string) (kind string, ids []string, ok bool) {
	rest, found := strings.CutPrefix(name, namePrefix)
	if !found {
		return "", nil, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || parts[0] == "" || strings.Trim(parts[0], "abcdefghijklmnopqrstuvwxyz") != "" {
		return "", nil, false
	}
	for _, p := range parts[1:] {
		id, good := unescape(p)
		if !good {
			return "", nil, false
		}
		ids = append(ids, id)
	}
	return parts[0], ids, true
}

func unescape(p string) (string, bool) {
	if p == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '+':
			if i+2 >= len(p) {
				return "", false
			}
			var v byte
			for _, h := range []byte{p[i+1], p[i+2]} {
				switch {
				case h >= '0' && h <= '9':
					v = v<<4 | (h - '0')
				case h >= 'A' && h <= 'F':
					v = v<<4 | (h - 'A' + 10)
				default:
					return "", false
				}
			}
			// Only bytes LVName escapes may appear escaped: one name,
			// one spelling.
			if v >= 'a' && v <= 'z' || v >= 'A' && v <= 'Z' || v >= '0' && v <= '9' || v == '-' {
				return "", false
			}
			b.WriteByte(v)
			i += 2
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-':
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	return b.String(), true
}

// ValidLVName reports whether LVM accepts name for a new LV (lvm(8),
// "Valid names"): [A-Za-z0-9+_.-], not starting with '-', not "." or
// "..", not starting with "snapshot" or "pvmove", and none of the
// infixes LVM keeps for its hidden sub-LVs.
func ValidLVName(name string) error {
	if name == "" || name == "." || name == ".." {
		return storage.Errorf(storage.ErrInvalid, "invalid lv name %q", name)
	}
	if len(name) > MaxLVName {
		return storage.Errorf(storage.ErrInvalid, "invalid lv name %q: longer than %d bytes", name, MaxLVName)
	}
	if name[0] == '-' {
		return storage.Errorf(storage.ErrInvalid, "invalid lv name %q: must not start with '-'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '_' || c == '.' || c == '-') {
			return storage.Errorf(storage.ErrInvalid, "invalid lv name %q: character %q is not allowed; use letters, digits, '+', '_', '.' and '-'", name, c)
		}
	}
	for _, p := range []string{"snapshot", "pvmove"} {
		if strings.HasPrefix(name, p) {
			return storage.Errorf(storage.ErrInvalid, "invalid lv name %q: names starting %q are reserved by lvm", name, p)
		}
	}
	for _, r := range reservedInfixes {
		if strings.Contains(name, r) {
			return storage.Errorf(storage.ErrInvalid, "invalid lv name %q: %q is reserved by lvm", name, r)
		}
	}
	return nil
}

// reservedInfixes are the strings LVM refuses inside an LV name (lvm(8);
// lib/misc/lvm-string.c of LVM 2.03).
var reservedInfixes = []string{"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig", "_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig"}

// ValidVGName reports whether name is a VG name LVM accepts and strata
// can pass on a command line: the LV rules without the reserved words.
func ValidVGName(name string) error { return validName("volume group", name) }

// ValidThinPoolName reports whether name can be the thin pool of a pool
// (an LV that exists): LVM's characters and length, as for a VG; the
// reserved words bind only names given to new LVs, and pool add looks
// the thin pool up by this name.
func ValidThinPoolName(name string) error { return validName("thin pool", name) }

func validName(what, name string) error {
	if name == "" || name == "." || name == ".." || len(name) > MaxLVName || name[0] == '-' {
		return storage.Errorf(storage.ErrInvalid, "invalid %s name %q", what, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '_' || c == '.' || c == '-') {
			return storage.Errorf(storage.ErrInvalid, "invalid %s name %q: character %q is not allowed", what, name, c)
		}
	}
	return nil
}
