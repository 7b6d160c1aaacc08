package hvm

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/strata-vm/strata/storage"
)

// XenOUI is the organisationally unique identifier assigned to Xen; strata
// generates MAC addresses in it.
const XenOUI = "00:16:3e"

// NormalizeMAC checks a MAC address (six two-digit hex octets separated by
// ':') and returns it in lower case.
func NormalizeMAC(mac string) (string, error) {
	parts := strings.Split(mac, ":")
	if len(parts) != 6 {
		return "", storage.Errorf(storage.ErrInvalid, "invalid MAC address %q: write six hex octets separated by ':', e.g. 00:16:3e:12:34:56", mac)
	}
	for _, p := range parts {
		if len(p) != 2 || !isHex(p[0]) || !isHex(p[1]) {
			return "", storage.Errorf(storage.ErrInvalid, "invalid MAC address %q: write six hex octets separated by ':', e.g. 00:16:3e:12:34:56", mac)
		}
	}
	return strings.ToLower(mac), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// GenerateMAC returns a random MAC address in Xen's OUI 00:16:3e that is
// not in inUse (keys in any case). Like libxl it keeps the top bit of the
// fourth octet clear, leaving 00:16:3e:80:00:00 and above for addresses
// assigned by hand.
func GenerateMAC(inUse map[string]bool) (string, error) {
	used := make(map[string]bool, len(inUse))
	for m, ok := range inUse {
		if ok {
			used[strings.ToLower(m)] = true
		}
	}
	var b [3]byte
	for range 1000 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("generate MAC address: %w", err)
		}
		mac := fmt.Sprintf("%s:%02x:%02x:%02x", XenOUI, b[0]&0x7f, b[1], b[2])
		if !used[mac] {
			return mac, nil
		}
	}
	return "", storage.Errorf(storage.ErrPrecondition, "no free MAC address found in %s after 1000 tries: too many addresses in use", XenOUI)
}

// PinMACs gives every NIC without a MAC address a generated one, unique
// among inUse and the guest's own NICs, and adds the new addresses to
// inUse (which may be nil). Windows activation hashes the MAC, so a guest
// should keep one address for life.
func (g *Guest) PinMACs(inUse map[string]bool) error {
	used := map[string]bool{}
	for m, ok := range inUse {
		if ok {
			used[strings.ToLower(m)] = true
		}
	}
	for _, n := range g.NICs {
		if n.MAC != "" {
			used[strings.ToLower(n.MAC)] = true
		}
	}
	for i := range g.NICs {
		if g.NICs[i].MAC != "" {
			continue
		}
		mac, err := GenerateMAC(used)
		if err != nil {
			return err
		}
		g.NICs[i].MAC = mac
		used[mac] = true
		if inUse != nil {
			inUse[mac] = true
		}
	}
	return nil
}
