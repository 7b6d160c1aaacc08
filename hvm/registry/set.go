package registry

import (
	"context"
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
func (r *Registry) Set(ctx context.Context, name string, assignments []string) (*hvm.Guest, []lint.Finding, error) {
	if len(assignments) == 0 {
		return nil, nil, storage.Errorf(storage.ErrInvalid, "give at least one KEY=VALUE, e.g. memory=1024 or acpi=0")
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
		for _, a := range assignments {
			key, value, ok := strings.Cut(a, "=")
			if !ok || key == "" {
				return storage.Errorf(storage.ErrInvalid, "invalid assignment %q: write KEY=VALUE (an empty VALUE unsets KEY)", a)
			}
			if key == "api_version" || key == "install" || strings.HasPrefix(key, "install.") {
				return storage.Errorf(storage.ErrInvalid, "%q cannot be set: strata records it", key)
			}
			if full, ok := aliases[key]; ok {
				key = full
			}
			if err := setPath(tree, strings.Split(key, "."), parseValue(key, value), a); err != nil {
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
	if strings.Contains(key, "passw") || key == "name" || key == "uuid" || strings.HasSuffix(key, ".mac") {
		return value // never a number: a password "007" stays "007"
	}
	var v any
	if err := yaml.Unmarshal([]byte(value), &v); err != nil {
		return value
	}
	return v
}

// setPath sets (or with value nil, deletes) a dotted path in a YAML tree.
func setPath(node any, path []string, value any, orig string) error {
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
				return storage.Errorf(storage.ErrInvalid, "invalid key in %q: %q is not an index of that list (0 to %d)", orig, p, len(n)-1)
			}
			if last {
				n[idx] = value
				return nil
			}
			node = n[idx]
		default:
			return storage.Errorf(storage.ErrInvalid, "invalid key in %q: %q is not a section", orig, strings.Join(path[:i], "."))
		}
	}
	return nil
}

// redactAssignments hides the values of password keys for messages.
func redactAssignments(as []string) []string {
	out := make([]string, len(as))
	for i, a := range as {
		k, _, _ := strings.Cut(a, "=")
		out[i] = a
		if strings.Contains(strings.ToLower(k), "passw") {
			out[i] = k + "=[redacted]"
		}
	}
	return out
}
