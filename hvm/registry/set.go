package registry

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/hvm/xlcfg"
	"github.com/strata-vm/strata/storage"
)

// aliases maps xl.cfg key names to their place in the YAML definition:
// where `guest set KEY=` (an empty value) unsets an xl key, and what
// errors call it.
var aliases = map[string]string{
	"acpi": "features.acpi", "apic": "features.apic", "pae": "features.pae", "hap": "features.hap",
	"hpet": "features.hpet", "nx": "features.nx", "viridian": "features.viridian",
	"vnc": "display.vnc", "vnclisten": "display.vnclisten", "vncdisplay": "display.vncdisplay",
	"vncunused": "display.vncunused", "vncpasswd": "display.vncpasswd", "sdl": "display.sdl",
	"keymap": "display.keymap", "vga": "display.vga", "stdvga": "display.vga", "videoram": "display.videoram",
	"spice": "display.spice", "spicehost": "display.spice.host", "spiceport": "display.spice.port",
	"spicetls_port": "display.spice.tls_port", "spicedisable_ticketing": "display.spice.disable_ticketing",
	"spicepasswd": "display.spice.passwd", "spiceagent_mouse": "display.spice.agent_mouse",
	"spicevdagent": "display.spice.vdagent", "spice_clipboard_sharing": "display.spice.clipboard_sharing",
	"on_poweroff": "lifecycle.on_poweroff", "on_reboot": "lifecycle.on_reboot", "on_crash": "lifecycle.on_crash",
	"usbdevice": "usb_devices", "device_model_version": "device_model.version",
	"device_model_override": "device_model.override", "device_model": "device_model.xm_path",
	"bios": "firmware", "firmware": "firmware", "bios_path_override": "firmware_path",
	"kernel": "direct_boot", "ramdisk": "direct_boot.ramdisk", "cmdline": "direct_boot.cmdline",
	"disk": "disks", "vif": "nics", "vcpu_avail": "maxvcpus",
}

// boolKeys take xl's 0/1 as well as true/false.
var boolKeys = map[string]bool{
	"features.acpi": true, "features.apic": true, "features.pae": true, "features.hap": true, "features.hpet": true,
	"features.nx": true, "features.pv_drivers": true, "features.guest_agent": true, "display.vnc": true,
	"display.vncunused": true, "display.sdl": true, "usb": true, "localtime": true,
}

// lists are the keys `KEY+=VALUE` and `KEY-=VALUE` work on, by any name.
var lists = map[string]string{
	"disks": "disks", "disk": "disks", "nics": "nics", "nic": "nics", "vif": "nics",
	"serial": "serial", "parallel": "parallel", "soundhw": "soundhw", "pci": "pci",
	"usb_devices": "usb_devices", "usbdevice": "usb_devices",
}

// assignment is one KEY=VALUE, KEY+=VALUE or KEY-=VALUE of guest set.
type assignment struct {
	typed  string // the key as the user typed it, for messages
	key    string // after aliases (the YAML path)
	op     string // "=", "+=" or "-="
	value  string
	secret bool // the value came from a file: never quoted
}

func (a assignment) String() string {
	if a.secret || hvm.SecretKey(a.key) || hvm.SecretKey(a.typed) || hvm.SecretValue(a.value) {
		return a.typed + a.op + "[redacted]"
	}
	return a.typed + a.op + a.value
}

// Set changes keys of a stored definition. Each assignment is KEY=VALUE
// (an empty VALUE unsets KEY), KEY+=VALUE (append to a list) or
// KEY-=VALUE (remove from a list), with KEY an xl name (acpi=0,
// viridian=1, vif=bridge=xenbr1, disk=[ "/img,,hda" ], serial=pty,
// cdrom=ISO: xl's syntax and meaning) or a dotted path into the YAML
// schema (features.viridian=true, nics.0.bridge=br1). Lists: disks+=
// VOLUME[:VDEV] or an xl disk spec, disks-=VDEV (or its volume, medium or
// path); nics+=VIF-SPEC, nics-=MAC; serial, parallel, soundhw, pci,
// usb_devices +=/-= an item. The result must validate, or nothing
// changes; errors name the key as typed.
//
// A password is never taken from an assignment, which the command line
// (ps, shell history) shows: secrets holds passwords by key, read from a
// file or stdin by the caller, for the keys PasswordKey accepts; an
// assignment may only unset one. No error quotes a value of such a key.
func (r *Registry) Set(ctx context.Context, name string, assignments []string, secrets map[string]hvm.Secret) (*hvm.Guest, []lint.Finding, error) {
	todo, err := parseAssignments(assignments, secrets)
	if err != nil {
		return nil, nil, err
	}
	return r.Update(ctx, name, func(g *hvm.Guest) error { return apply(g, todo) })
}

// Assign applies guest set's assignments to g (no secrets), as Set does
// before storing: for checking a change without a catalog.
func Assign(g *hvm.Guest, assignments ...string) error {
	todo, err := parseAssignments(assignments, nil)
	if err != nil {
		return err
	}
	return apply(g, todo)
}

func parseAssignments(assignments []string, secrets map[string]hvm.Secret) ([]assignment, error) {
	if len(assignments) == 0 && len(secrets) == 0 {
		return nil, storage.Errorf(storage.ErrInvalid, "give at least one KEY=VALUE, e.g. memory=1024 or acpi=0")
	}
	var todo []assignment
	for i, s := range assignments {
		k, value, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			// Not quoted: a word without '=' may be a password typed
			// as its own argument.
			return nil, storage.Errorf(storage.ErrInvalid, "assignment %d is not KEY=VALUE, KEY+=VALUE or KEY-=VALUE (an empty VALUE unsets KEY)", i+1)
		}
		a := assignment{typed: k, op: "=", value: value}
		if t, ok := strings.CutSuffix(k, "+"); ok {
			a.typed, a.op = t, "+="
		} else if t, ok := strings.CutSuffix(k, "-"); ok {
			a.typed, a.op = t, "-="
		}
		a.key = a.typed
		if a.key == "api_version" || a.key == "install" || strings.HasPrefix(a.key, "install.") {
			return nil, storage.Errorf(storage.ErrInvalid, "%q cannot be set: strata records it", a.key)
		}
		if full, ok := aliases[a.key]; ok {
			a.key = full
		}
		if value != "" && (hvm.SecretKey(a.key) || hvm.SecretKey(a.typed)) {
			if !PasswordKey(a.key) {
				return nil, storage.Errorf(storage.ErrInvalid, "%s is not a key strata knows: the password keys (display.vncpasswd, display.spice.passwd) have no sub-keys", a.typed)
			}
			return nil, storage.Errorf(storage.ErrInvalid, "%s holds a password, which is not taken on the command line (ps and shell history show it): give it from a file with --secret-file %s=FILE (FILE - reads stdin)", a.typed, a.typed)
		}
		if value != "" && hvm.SecretValue(value) && (strings.Contains(a.key, "extra") || a.key == "nics" || a.typed == "vfb") {
			return nil, storage.Errorf(storage.ErrInvalid, "the value given for %s holds a password, which is not taken on the command line (ps and shell history show it): give it from a file with --secret-file %s=FILE (FILE - reads stdin)", a.typed, a.typed)
		}
		todo = append(todo, a)
	}
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		key := k
		if full, ok := aliases[key]; ok {
			key = full
		}
		if !PasswordKey(key) {
			return nil, storage.Errorf(storage.ErrInvalid, "%q is not a key that holds a password: --secret-file takes vncpasswd, spicepasswd, display.vncpasswd, display.spice.passwd, extra.KEY or nics.N.extra.KEY", k)
		}
		if secrets[k].IsZero() {
			return nil, storage.Errorf(storage.ErrInvalid, "the password given for %s is empty: to unset it, write %s=", key, key)
		}
		todo = append(todo, assignment{typed: k, key: key, op: "=", value: secrets[k].Value(), secret: true})
	}
	return todo, nil
}

// apply makes every assignment on g in order, then checks the result
// validates, naming the assignments when it does not.
func apply(g *hvm.Guest, todo []assignment) error {
	for _, a := range todo {
		if err := applyOne(g, a); err != nil {
			return err
		}
	}
	check := g.Clone()
	if err := check.FillDefaults(); err != nil {
		return err
	}
	if err := check.Validate(); err != nil {
		typed := make([]string, len(todo))
		for i, a := range todo {
			typed[i] = a.String()
		}
		return storage.Errorf(storage.ErrInvalid, "guest set %s: %w", strings.Join(typed, " "), err)
	}
	return nil
}

func applyOne(g *hvm.Guest, a assignment) error {
	switch {
	case a.op != "=":
		return applyList(g, a)
	case a.typed == "cdrom":
		return setCDROM(g, a.value)
	case a.value == "" || a.secret || strings.Contains(a.typed, "."):
		return setPath(g, a)
	}
	switch t, _ := xlcfg.KeyTreatment(a.typed); {
	case a.typed == "name" || a.typed == "uuid":
	case t == xlcfg.Modelled:
		return setXL(g, a)
	case (t == xlcfg.Refused || t == xlcfg.Dropped) && !topLevel(a.typed):
		_, _, _, err := xlcfg.ConvertSetting(a.typed, a.value)
		return err
	case xlcfg.ListedKeys()[a.typed] == xlcfg.Verbatim && !topLevel(a.typed):
		// An xl key strata keeps verbatim (tsc_mode, cpuid, ...).
		val, err := xlcfg.ParseValue(a.value)
		if err != nil {
			val = &xlcfg.Value{Kind: xlcfg.String, Text: a.value}
		}
		if g.Extra == nil {
			g.Extra = map[string]string{}
		}
		g.Extra[xlcfg.XLName(a.typed)] = val.String()
		return nil
	}
	return setPath(g, a)
}

// setXL sets the fields an xl setting sets, read as xl reads it.
func setXL(g *hvm.Guest, a assignment) error {
	switch a.typed {
	case "ramdisk", "cmdline", "root", "extra":
		// Parts of a kernel booted directly: they need the guest's
		// kernel, which a setting on its own does not have.
		b := g.DirectBoot
		switch {
		case b == nil:
			return storage.Errorf(storage.ErrInvalid, "%s: the guest boots from its disks; give kernel=PATH first (a kernel booted directly)", a)
		case a.typed == "ramdisk":
			b.Ramdisk = a.value
		case a.typed == "cmdline":
			b.Cmdline = a.value
		default:
			return storage.Errorf(storage.ErrInvalid, "%s: set the whole kernel command line with cmdline=... (xl joins root and extra into it)", a)
		}
		return nil
	}
	set, none, ws, err := xlcfg.ConvertSetting(a.typed, a.value)
	if err != nil {
		return err
	}
	if copyChanged(reflect.ValueOf(g).Elem(), reflect.ValueOf(set).Elem(), reflect.ValueOf(none).Elem()) > 0 {
		return nil
	}
	for _, w := range ws {
		if w.Key == a.typed && w.Code == "ignored-key" {
			return storage.Errorf(storage.ErrInvalid, "%s changes nothing: %s", a, w.Message)
		}
	}
	return storage.Errorf(storage.ErrInvalid, "%s changes nothing in strata's model: check the value (xl.cfg(5))", a)
}

// copyChanged copies into dst every field where set differs from none,
// descending into structs (not into pointers or slices, which are
// copied whole), and returns how many it copied.
func copyChanged(dst, set, none reflect.Value) int {
	n := 0
	for i := 0; i < dst.NumField(); i++ {
		f := dst.Type().Field(i)
		if f.Name == "Name" || f.Name == "APIVersion" {
			continue
		}
		d, s, z := dst.Field(i), set.Field(i), none.Field(i)
		if f.Type.Kind() == reflect.Struct {
			n += copyChanged(d, s, z)
			continue
		}
		if !reflect.DeepEqual(s.Interface(), z.Interface()) {
			d.Set(s)
			n++
		}
	}
	return n
}

// topLevel tells whether key is a top-level key of the YAML schema.
func topLevel(key string) bool {
	_, err := fieldType(strings.Split(key, "."))
	return err == nil
}

// setPath sets (or with an empty value, unsets) a dotted YAML path.
func setPath(g *hvm.Guest, a assignment) error {
	path := strings.Split(a.key, ".")
	t, err := fieldType(path)
	if err != nil {
		return storage.Errorf(storage.ErrInvalid, "%s is not a key strata knows: %v; use an xl key (memory, vif, disk, viridian, ...) or a path of the YAML schema (features.acpi, nics.0.bridge)", a.typed, err)
	}
	doc, err := hvm.Marshal(g)
	if err != nil {
		return err
	}
	var tree map[string]any
	if err := yaml.Unmarshal(doc, &tree); err != nil {
		return err
	}
	var value any
	if a.value != "" {
		value = parseValue(a.key, a.value, a.secret)
	}
	if err := setTree(tree, path, value, a.typed); err != nil {
		return err
	}
	out, err := yaml.Marshal(tree)
	if err != nil {
		return err
	}
	ng, err := hvm.Unmarshal("guest set", out)
	if err != nil {
		if strings.Contains(err.Error(), "whole number") {
			return storage.Errorf(storage.ErrInvalid, "%s: %s takes %s", a, a.typed, describe(t))
		}
		if a.secret || hvm.SecretKey(a.key) || hvm.SecretValue(a.value) {
			return storage.Errorf(storage.ErrInvalid, "%s: the value (not quoted: it holds a password) does not fit: %s takes %s", a.typed, a.typed, describe(t))
		}
		return storage.Errorf(storage.ErrInvalid, "%s: %q does not fit: %s takes %s", a.typed, a.value, a.typed, describe(t))
	}
	*g = *ng
	return nil
}

// fieldType walks the YAML schema of hvm.Guest along path and returns
// the type found, or an error naming the first part that is not a key.
func fieldType(path []string) (reflect.Type, error) {
	t := reflect.TypeOf(hvm.Guest{})
	for i, p := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			var found reflect.Type
			var keys []string
			for j := 0; j < t.NumField(); j++ {
				tag, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ",")
				if tag == "" || tag == "-" {
					continue
				}
				keys = append(keys, tag)
				if tag == p {
					found = t.Field(j).Type
				}
			}
			if found == nil {
				where := "the schema"
				if i > 0 {
					where = strings.Join(path[:i], ".")
				}
				return nil, fmt.Errorf("%s has no %q (it has %s)", where, p, strings.Join(keys, ", "))
			}
			t = found
		case reflect.Slice:
			if _, err := strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("%s is a list: give an index (%s.0)", strings.Join(path[:i], "."), strings.Join(path[:i], "."))
			}
			t = t.Elem()
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, fmt.Errorf("%s is a single value, not a section", strings.Join(path[:i], "."))
		}
	}
	return t, nil
}

// describe says in words what a YAML key of type t takes.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeOf(hvm.Viridian{}):
		return "true or false (1 or 0), or a list of groups such as [base, freq]"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Bool:
		return "true or false (1 or 0)"
	case t.Kind() == reflect.String:
		return "text"
	case t.Kind() == reflect.Slice:
		return "a list, e.g. [a, b] (or += and -= one item)"
	case t.Kind() == reflect.Map:
		return "a section: set KEY.NAME=VALUE"
	}
	var keys []string
	for j := 0; j < t.NumField(); j++ {
		if tag, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ","); tag != "" {
			keys = append(keys, tag)
		}
	}
	return "a section: set one of its keys (" + strings.Join(keys, ", ") + ")"
}

// PasswordKey tells whether a dotted key (after aliases) is one that
// holds a password and may be set from a file: the VNC and SPICE
// passwords, or a key kept verbatim (extra, a NIC's extra), whose value
// may hold one (a vfb spec with vncpasswd=).
func PasswordKey(key string) bool {
	p := strings.Split(key, ".")
	switch {
	case key == "display.vncpasswd" || key == "display.spice.passwd":
		return true
	case len(p) == 2 && p[0] == "extra":
		return true
	case len(p) == 4 && p[0] == "nics" && p[2] == "extra":
		_, err := strconv.Atoi(p[1])
		return err == nil
	}
	return false
}

func parseValue(key, value string, secret bool) any {
	if boolKeys[key] {
		switch value {
		case "0":
			return false
		case "1":
			return true
		}
	}
	if key == "usb_devices" {
		return strings.Split(value, ",")
	}
	if key == "serial" || key == "parallel" {
		// One device as xl writes it (serial = "pty"); its options
		// have commas, so YAML's [a, b] is the way to give several.
		if !strings.HasPrefix(value, "[") {
			return []any{value}
		}
	}
	if secret || strings.HasPrefix(key, "extra.") || strings.Contains(key, ".extra.") {
		return value // kept verbatim, in xl.cfg syntax
	}
	if strings.Contains(key, "passw") || key == "name" || key == "uuid" || strings.HasSuffix(key, ".mac") {
		return value // never a number: a password "007" stays "007"
	}
	var v any
	if err := yaml.Unmarshal([]byte(value), &v); err != nil {
		return value
	}
	return v
}

// setTree sets (or with value nil, deletes) a dotted path in a YAML tree;
// key names it in errors (never the value).
func setTree(node any, path []string, value any, key string) error {
	for i, p := range path {
		last := i == len(path)-1
		switch n := node.(type) {
		case map[string]any:
			if last {
				if value == nil {
					delete(n, p)
				} else {
					n[p] = value
				}
				return nil
			}
			next, ok := n[p]
			if !ok || next == nil {
				next = map[string]any{}
				n[p] = next
			}
			node = next
		case []any:
			idx, err := strconv.Atoi(p)
			if err != nil || idx < 0 || idx >= len(n) {
				return storage.Errorf(storage.ErrInvalid, "%s: %q is not an index of that list (it has %d items: 0 to %d)", key, p, len(n), len(n)-1)
			}
			if last {
				n[idx] = value
				return nil
			}
			node = n[idx]
		default:
			return storage.Errorf(storage.ErrInvalid, "%s: %q is not a section", key, strings.Join(path[:i], "."))
		}
	}
	return nil
}

// applyList appends to (+=) or removes from (-=) a list.
func applyList(g *hvm.Guest, a assignment) error {
	list, ok := lists[a.typed]
	if !ok {
		list, ok = lists[a.key]
	}
	if !ok {
		return storage.Errorf(storage.ErrInvalid, "%s%s: += and -= work on lists (disks, nics, serial, parallel, soundhw, pci, usb_devices, and their xl names disk, vif, usbdevice); %s is not one", a.typed, a.op, a.typed)
	}
	if a.value == "" {
		return storage.Errorf(storage.ErrInvalid, "%s%s needs a value", a.typed, a.op)
	}
	add := a.op == "+="
	switch list {
	case "disks":
		if add {
			return addDisk(g, a)
		}
		return removeDisk(g, a)
	case "nics":
		if add {
			return addNIC(g, a)
		}
		return removeNIC(g, a)
	}
	l := stringList(g, list)
	if add {
		if slices.Contains(*l, a.value) {
			return storage.Errorf(storage.ErrExists, "%s: %s already has it", a, a.typed)
		}
		*l = append(*l, a.value)
		return nil
	}
	i := slices.Index(*l, a.value)
	if i < 0 && len(*l) == 0 {
		return storage.Errorf(storage.ErrNotFound, "%s: %s has none", a, a.typed)
	} else if i < 0 {
		return storage.Errorf(storage.ErrNotFound, "%s: %s has no such item (it has: %s)", a, a.typed, strings.Join(*l, ", "))
	}
	*l = slices.Delete(*l, i, i+1)
	return nil
}

// stringList is the guest's list of plain strings called list.
func stringList(g *hvm.Guest, list string) *[]string {
	return map[string]*[]string{
		"serial":      &g.Serial,
		"parallel":    &g.Parallel,
		"soundhw":     &g.SoundHW,
		"pci":         &g.PCI,
		"usb_devices": &g.USBDevices,
	}[list]
}

// addDisk appends the disk an xl spec or a volume/medium name describes.
func addDisk(g *hvm.Guest, a assignment) error {
	d, err := diskFrom(g, a.value)
	if err != nil {
		return storage.Errorf(storage.ErrInvalid, "%s: %v", a, err)
	}
	g.Disks = append(g.Disks, d)
	return nil
}

// removeDisk removes the one disk with that vdev or source; a source
// two disks share is refused, naming the vdevs to choose from.
func removeDisk(g *hvm.Guest, a assignment) error {
	var match []int
	for i, d := range g.Disks {
		_, src := d.Source()
		if d.Vdev == a.value || src == a.value && src != "" {
			match = append(match, i)
		}
	}
	switch len(match) {
	case 0:
		return storage.Errorf(storage.ErrNotFound, "%s: no disk has that vdev, volume, medium or path (the guest's: %s)", a, diskNames(g))
	case 1:
		g.Disks = slices.Delete(g.Disks, match[0], match[0]+1)
		return nil
	}
	return storage.Errorf(storage.ErrInvalid, "%s: %d disks match; give the vdev of the one to remove (%s)", a, len(match), diskNames(g))
}

// addNIC appends the NIC an xl vif spec describes.
func addNIC(g *hvm.Guest, a assignment) error {
	n, _, err := xlcfg.ParseVif(a.value)
	if err != nil {
		return storage.Errorf(storage.ErrInvalid, "%s: %v", a, err)
	}
	g.NICs = append(g.NICs, n)
	return nil
}

// removeNIC removes the first NIC with that MAC (any case) or index.
func removeNIC(g *hvm.Guest, a assignment) error {
	for i, n := range g.NICs {
		if strings.EqualFold(n.MAC, a.value) || strconv.Itoa(i) == a.value {
			g.NICs = slices.Delete(g.NICs, i, i+1)
			return nil
		}
	}
	var macs []string
	for _, n := range g.NICs {
		macs = append(macs, n.MAC)
	}
	return storage.Errorf(storage.ErrNotFound, "%s: no NIC has that MAC (the guest's: %s); give the MAC or the NIC's index", a, strings.Join(macs, ", "))
}

func diskNames(g *hvm.Guest) string {
	var out []string
	for _, d := range g.Disks {
		_, src := d.Source()
		out = append(out, d.Vdev+" "+src)
	}
	return strings.Join(out, ", ")
}

// diskFrom reads the value of disks+=: an xl disk spec (it has a comma)
// or VOLUME[:VDEV], where a VOLUME with a '/' is a host path (a device
// under /dev/) and a missing VDEV is the next free one.
func diskFrom(g *hvm.Guest, value string) (hvm.Disk, error) {
	if strings.Contains(value, ",") {
		return xlcfg.ParseDisk(value)
	}
	src, vdev, _ := strings.Cut(value, ":")
	d := hvm.Disk{Vdev: vdev}
	switch {
	case strings.HasPrefix(src, "/dev/"):
		d.Device = src
	case strings.Contains(src, "/"):
		d.Path = src
	default:
		d.Volume = src
	}
	if vdev == "" {
		used := map[string]bool{}
		hasCD := false
		for _, k := range g.Disks {
			used[k.Vdev] = true
			hasCD = hasCD || k.CDROM
		}
		for i := 0; ; i++ {
			if v := DiskVdev(i, hasCD); !used[v] {
				d.Vdev = v
				break
			}
		}
	}
	return d, nil
}

// setCDROM puts a medium (an iso name, or a host path) in the guest's
// first CD-ROM drive, adding the drive (hdc, or the first free IDE
// device) if it has none; an empty value empties the drive.
func setCDROM(g *hvm.Guest, value string) error {
	i := slices.IndexFunc(g.Disks, func(d hvm.Disk) bool { return d.CDROM })
	if i < 0 {
		if value == "" {
			return nil
		}
		used := map[string]bool{}
		for _, d := range g.Disks {
			used[d.Vdev] = true
		}
		vdev := ""
		for _, v := range []string{"hdc", "hdd", "hdb", "hda"} {
			if !used[v] {
				vdev = v
				break
			}
		}
		if vdev == "" {
			return storage.Errorf(storage.ErrInvalid, "cdrom=%s: the four IDE devices (hda-hdd) are taken: add the drive with disks+=, e.g. disk+=%s,,sdb,cdrom", value, value)
		}
		g.Disks = append(g.Disks, hvm.Disk{Vdev: vdev, CDROM: true})
		i = len(g.Disks) - 1
	}
	d := &g.Disks[i]
	d.Volume, d.Media, d.Path, d.Device = "", "", "", ""
	switch {
	case value == "":
		d.Format = ""
	case strings.HasPrefix(value, "/dev/"):
		d.Device = value
	case strings.Contains(value, "/"):
		d.Path = value
	default:
		d.Media = value
	}
	return nil
}
