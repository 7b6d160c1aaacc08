package hvm

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
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
	for k, v := range c.Extra {
		if secretExtra(k, v) {
			c.Extra[k] = redactedText
		}
	}
	for i := range c.NICs {
		for k, v := range c.NICs[i].Extra {
			if secretExtra(k, v) {
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

// SecretValue tells whether a value kept verbatim holds a password inside
// it: a vfb spec with vncpasswd=, device model arguments with QEMU's
// password= or a secret object. It is treated as a password as a whole.
func SecretValue(v string) bool {
	l := strings.ToLower(v)
	return strings.Contains(l, "passw") || strings.Contains(l, "secret")
}

func secretExtra(k, v string) bool { return SecretKey(k) || SecretValue(v) }

// WithoutSecrets returns a deep copy of g with every password removed, for
// a rendered config meant to be shown; Redacted marks them instead. A
// console off loopback that a password guarded would be open to anyone
// without it, so the copy has it on loopback instead; notes say which
// (for the one who renders it, never holding a password).
func (g *Guest) WithoutSecrets() (*Guest, []string) {
	c := g.Clone()
	var notes []string
	d := &c.Display
	if !d.VNCPasswd.IsZero() && d.VNCEnabled() && !IsLoopback(d.EffectiveVNCListen()) {
		notes = append(notes, fmt.Sprintf("the VNC console is on %s here, not %s as defined: its password is left out", DefaultVNCListen, d.EffectiveVNCListen()))
		d.VNCListen = DefaultVNCListen
	}
	d.VNCPasswd = ""
	if s := d.Spice; s != nil {
		if !s.Passwd.IsZero() && s.Enabled && !IsLoopback(SpiceListen(s.Host)) && !Val(s.DisableTicketing, false) {
			notes = append(notes, fmt.Sprintf("the SPICE console is on %s here, not %s as defined: its password is left out", DefaultVNCListen, SpiceListen(s.Host)))
			s.Host = DefaultVNCListen
		}
		s.Passwd = ""
	}
	for k, v := range c.Extra {
		if secretExtra(k, v) {
			delete(c.Extra, k)
			notes = append(notes, fmt.Sprintf("extra key %s is left out: it holds a password", k))
		}
	}
	for i := range c.NICs {
		for k, v := range c.NICs[i].Extra {
			if secretExtra(k, v) {
				delete(c.NICs[i].Extra, k)
			}
		}
	}
	slices.Sort(notes)
	return c, notes
}

// HasSecrets tells whether g holds any password.
func (g *Guest) HasSecrets() bool {
	if !g.Display.VNCPasswd.IsZero() || (g.Display.Spice != nil && !g.Display.Spice.Passwd.IsZero()) {
		return true
	}
	for k, v := range g.Extra {
		if secretExtra(k, v) {
			return true
		}
	}
	for _, n := range g.NICs {
		for k, v := range n.Extra {
			if secretExtra(k, v) {
				return true
			}
		}
	}
	return false
}
