package hvm

import (
	"encoding/json"
	"log/slog"
	"strings"
)

const redactedText = "[redacted]"

// Secret is a password kept in a guest definition. Its value is written
// only where it is needed (YAML definitions, rendered configs, QEMU's
// QMP); fmt, JSON and slog print "[redacted]" instead.
type Secret string

// Value returns the password itself.
func (s Secret) Value() string { return string(s) }

// IsZero reports whether no password is set.
func (s Secret) IsZero() bool { return s == "" }

// String hides the password from fmt and loggers.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redactedText
}

// GoString hides the password from %#v.
func (s Secret) GoString() string { return `hvm.Secret("` + s.String() + `")` }

// MarshalJSON hides the password from JSON output (--output json, zerolog).
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue hides the password from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Redacted returns a deep copy of g with every password replaced by
// "[redacted]", safe to print or log in full.
func (g *Guest) Redacted() *Guest {
	c := g.Clone()
	if !c.Display.VNCPasswd.IsZero() {
		c.Display.VNCPasswd = redactedText
	}
	if c.Display.Spice != nil && !c.Display.Spice.Passwd.IsZero() {
		c.Display.Spice.Passwd = redactedText
	}
	for k := range c.Extra {
		if SecretKey(k) {
			c.Extra[k] = redactedText
		}
	}
	for i := range c.NICs {
		for k := range c.NICs[i].Extra {
			if SecretKey(k) {
				c.NICs[i].Extra[k] = redactedText
			}
		}
	}
	return c
}

// SecretKey tells whether a config key strata keeps verbatim (extra) holds
// a password (vncpasswd, spicepasswd, ...): it is printed and rendered
// only as the modelled passwords are.
func SecretKey(k string) bool { return strings.Contains(strings.ToLower(k), "passw") }

// WithoutSecrets returns a deep copy of g with every password removed, for
// a rendered config meant to be shown; Redacted marks them instead.
func (g *Guest) WithoutSecrets() *Guest {
	c := g.Clone()
	c.Display.VNCPasswd = ""
	if c.Display.Spice != nil {
		c.Display.Spice.Passwd = ""
	}
	for k := range c.Extra {
		if SecretKey(k) {
			delete(c.Extra, k)
		}
	}
	for i := range c.NICs {
		for k := range c.NICs[i].Extra {
			if SecretKey(k) {
				delete(c.NICs[i].Extra, k)
			}
		}
	}
	return c
}

// HasSecrets tells whether g holds any password.
func (g *Guest) HasSecrets() bool {
	if !g.Display.VNCPasswd.IsZero() || (g.Display.Spice != nil && !g.Display.Spice.Passwd.IsZero()) {
		return true
	}
	for k := range g.Extra {
		if SecretKey(k) {
			return true
		}
	}
	for _, n := range g.NICs {
		for k := range n.Extra {
			if SecretKey(k) {
				return true
			}
		}
	}
	return false
}
