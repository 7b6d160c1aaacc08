package xlcfg

import (
	"maps"
	"slices"
	"strings"

	"github.com/strata-vm/strata/hvm"
)

// vifKeys are the vif keys strata models; others are kept in NIC.Extra.
var vifKeys = []string{"mac", "bridge", "model", "type", "script", "vifname", "rate", "ip", "mtu"}

// ParseVif parses one xl vif spec (xl-network-configuration(5)):
// comma-separated key=value, e.g. "mac=00:16:3e:00:00:01,bridge=xenbr0".
// Keys strata does not model are kept in NIC.Extra; their names are
// returned so the caller can mention them.
func ParseVif(spec string) (hvm.NIC, []string, error) {
	var n hvm.NIC
	var unknown []string
	if len(spec) > MaxSpecSize {
		return n, nil, specError("vif", spec, "longer than %d bytes", MaxSpecSize)
	}
	for tok := range strings.SplitSeq(spec, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		k, v, ok := strings.Cut(tok, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok && (k == "trusted" || k == "untrusted") {
			// Flags (xl-network-configuration(5)), kept with no value.
			if n.Extra == nil {
				n.Extra = map[string]string{}
			}
			n.Extra[k] = ""
			continue
		}
		if !ok || k == "" {
			return n, nil, specError("vif", spec, "%q is not key=value (e.g. bridge=xenbr0)", tok)
		}
		switch k {
		case "mac":
			m, err := hvm.NormalizeMAC(v)
			if err != nil {
				return n, nil, specError("vif", spec, "%v", err)
			}
			n.MAC = m
		case "bridge":
			n.Bridge = v
		case "model":
			n.Model = v
		case "type":
			// libvirt's Xen converter writes the PV-only NIC as
			// type=netfront; xl calls it type=vif.
			if v == "netfront" {
				v = "vif"
			}
			n.Type = v
		case "script":
			n.Script = v
		case "vifname":
			n.VifName = v
		case "rate":
			n.Rate = v
		case "ip":
			n.IP = v
		case "mtu":
			m, err := ParseInt(v)
			if err != nil || m < 0 || m > 1<<20 {
				return n, nil, specError("vif", spec, "mtu %q is not a number", v)
			}
			n.MTU = hvm.Int(int(m))
		default:
			if n.Extra == nil {
				n.Extra = map[string]string{}
			}
			n.Extra[k] = v
			unknown = append(unknown, k)
		}
	}
	return n, unknown, nil
}

// FormatVif writes n as an xl vif spec.
func FormatVif(n hvm.NIC) (string, error) {
	var parts []string
	add := func(k, v string) error {
		if v == "" {
			if n.Extra != nil && (k == "trusted" || k == "untrusted") {
				if _, flag := n.Extra[k]; flag {
					parts = append(parts, k)
				}
			}
			return nil
		}
		if strings.Contains(v, ",") {
			return specError("vif", v, "%s cannot contain a comma", k)
		}
		parts = append(parts, k+"="+v)
		return nil
	}
	mtu := ""
	if n.MTU != nil {
		mtu = itoa(*n.MTU)
	}
	for _, kv := range [][2]string{{"mac", n.MAC}, {"bridge", n.Bridge}, {"model", n.Model}, {"type", n.Type}, {"script", n.Script}, {"vifname", n.VifName}, {"rate", n.Rate}, {"ip", n.IP}, {"mtu", mtu}} {
		if err := add(kv[0], kv[1]); err != nil {
			return "", err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(n.Extra)) {
		if slices.Contains(vifKeys, k) {
			continue
		}
		if err := add(k, n.Extra[k]); err != nil {
			return "", err
		}
	}
	return strings.Join(parts, ","), nil
}
