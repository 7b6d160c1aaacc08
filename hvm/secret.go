package hvm

import (
	"encoding/json"
	"log/slog"
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
	return c
}
