package registry

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/lint"
	"github.com/strata-vm/strata/storage"
)

// aliases maps xl.cfg key names to their place in the YAML definition, so
// admins can write `strata guest set win acpi=0 vnclisten=0.0.0.0`.
var aliases = map[string]string{
	"acpi": "features.acpi", "apic": "features.apic", "pae": "features.pae", "hap": "features.hap",
	"hpet": "features.hpet", "nx": "features.nx",
	"vnc": "display.vnc", "vnclisten": "display.vnclisten", "vncdisplay": "display.vncdisplay",
	"vncunused": "display.vncunused", "vncpasswd": "display.vncpasswd", "sdl": "display.sdl",
	"keymap": "display.keymap", "vga": "display.vga", "videoram": "display.videoram",
	"on_poweroff": "lifecycle.on_poweroff", "on_reboot": "lifecycle.on_reboot", "on_crash": "lifecycle.on_crash",
	"usbdevice": "usb_devices", "device_model_version": "device_model.version",
	"spicepasswd": "display.spice.passwd",
}

// boolKeys take xl's 0/1 as well as true/false.
var boolKeys = map[string]bool{
	"features.acpi": true, "features.apic": true, "features.pae": true, "features.hap": true, "features.hpet": true,
	"features.nx": true, "display.vnc": true, "display.vncunused": true, "display.sdl": true, "usb": true,
}

// Set changes keys of a stored definition: KEY=VALUE with KEY an xl name
// (acpi, vnclisten, on_reboot, ...) or a dotted path into the YAML schema
// (features.viridian.enabled, nics.0.bridge); an empty VALUE unsets the
// key. The result must validate, or nothing changes.
//
// A password is never taken from an assignment, which the command line
// (ps, shell history) shows: secrets holds passwords by key, read from a
// file or stdin by the caller, for the keys PasswordKey accepts; an
// assignment may only unset one. No error quotes a value of such a key.
func (r *Registry) Set(ctx context.Context, name string, assignments []string, secrets map[string]hvm.Secret) (*hvm.Guest, []lint.Finding, error) {
	if len(assignments) == 0 && len(secrets) == 0 {
		return nil, nil, storage.Errorf(storage.ErrInvalid, "give at least one KEY=VALUE, e.g. memory=1024 or acpi=0")
	}
	type assignment struct {
		key   string
		value any
	}
	var todo []assignment
	for i, a := range assignments {
		key, value, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			// Not quoted: a word without '=' may be a password typed
			// as its own argument.
			return nil, nil, storage.Errorf(storage.ErrInvalid, "assignment %d is not KEY=VALUE (an empty VALUE unsets KEY)", i+1)
		}
		if key == "api_version" || key == "install" || strings.HasPrefix(key, "install.") {
			return nil, nil, storage.Errorf(storage.ErrInvalid, "%q cannot be set: strata records it", key)
		}
		if full, ok := aliases[key]; ok {
			key = full
		}
		if value != "" && hvm.SecretKey(key) {
			if !PasswordKey(key) {
				return nil, nil, storage.Errorf(storage.ErrInvalid, "%s is not a key strata knows: the password keys (display.vncpasswd, display.spice.passwd) have no sub-keys", key)
			}
			return nil, nil, storage.Errorf(storage.ErrInvalid, "%s holds a password, which is not taken on the command line (ps and shell history show it): give it from a file with --secret-file %s=FILE (FILE - reads stdin)", key, key)
		}
		if value != "" && strings.Contains(key, "extra") && hvm.SecretValue(value) {
			return nil, nil, storage.Errorf(storage.ErrInvalid, "the value given for %s holds a password, which is not taken on the command line (ps and shell history show it): give it from a file with --secret-file %s=FILE (FILE - reads stdin)", key, key)
		}
		todo = append(todo, assignment{key, parseValue(key, value)})
	}
	for _, k := range slices.Sorted(maps.Keys(secrets)) {
		key := k
		if full, ok := aliases[key]; ok {
			key = full
		}
		if !PasswordKey(key) {
			return nil, nil, storage.Errorf(storage.ErrInvalid, "%q is not a key that holds a password: --secret-file takes vncpasswd, spicepasswd, display.vncpasswd, display.spice.passwd, extra.KEY or nics.N.extra.KEY", k)
		}
		if secrets[k].IsZero() {
			return nil, nil, storage.Errorf(storage.ErrInvalid, "the password given for %s is empty: to unset it, write %s=", key, key)
		}
		todo = append(todo, assignment{key, secrets[k].Value()})
	}
	return r.Update(ctx, name, func(g *hvm.Guest) error {
		doc, err := hvm.Marshal(g)
		if err != nil {
			return err
		}
		var tree map[string]any
		if err := yaml.Unmarshal(doc, &tree); err != nil {
			return err
		}
		for _, a := range todo {
			if err := setPath(tree, strings.Split(a.key, "."), a.value, a.key); err != nil {
				return err
			}
		}
		out, err := yaml.Marshal(tree)
		if err != nil {
			return err
		}
		ng, err := hvm.Unmarshal("guest set", out)
		if err != nil {
			return storage.Errorf(storage.ErrInvalid, "invalid %s: %w", strings.Join(redactAssignments(assignments), " "), err)
		}
		*g = *ng
		return nil
	})
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

func parseValue(key, value string) any {
	if value == "" {
		return nil
	}
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
	if strings.HasPrefix(key, "extra.") || strings.Contains(key, ".extra.") {
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

// setPath sets (or with value nil, deletes) a dotted path in a YAML tree;
// key names it in errors (never the value).
func setPath(node any, path []string, value any, key string) error {
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
				return storage.Errorf(storage.ErrInvalid, "invalid key %q: %q is not an index of that list (0 to %d)", key, p, len(n)-1)
			}
			if last {
				n[idx] = value
				return nil
			}
			node = n[idx]
		default:
			return storage.Errorf(storage.ErrInvalid, "invalid key %q: %q is not a section", key, strings.Join(path[:i], "."))
		}
	}
	return nil
}

// redactAssignments hides the values of password keys for messages.
func redactAssignments(as []string) []string {
	out := make([]string, len(as))
	for i, a := range as {
		k, v, _ := strings.Cut(a, "=")
		out[i] = a
		if hvm.SecretKey(k) || hvm.SecretValue(v) {
			out[i] = k + "=[redacted]"
		}
	}
	return out
}
