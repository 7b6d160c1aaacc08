package hvm_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
)

// A config rendered without its passwords never has a console off
// loopback that the password guarded: it is moved to loopback, with a
// note saying so; a console on loopback keeps its address.
func TestWithoutSecretsKeepsConsolesPrivate(t *testing.T) {
	g := &hvm.Guest{Name: "g", Memory: hvm.Int(256)}
	g.Display.VNC, g.Display.VNCListen, g.Display.VNCPasswd = hvm.Bool(true), "0.0.0.0", "s3cret"
	g.Display.Spice = &hvm.Spice{Enabled: true, Host: "192.0.2.5", Passwd: "sp1ce"}
	c, notes := g.WithoutSecrets()
	if c.Display.VNCListen != "127.0.0.1" || c.Display.Spice.Host != "127.0.0.1" || !c.Display.VNCPasswd.IsZero() || !c.Display.Spice.Passwd.IsZero() {
		t.Errorf("without secrets: vnc %q pw %q, spice %q pw %q", c.Display.VNCListen, c.Display.VNCPasswd.Value(), c.Display.Spice.Host, c.Display.Spice.Passwd.Value())
	}
	all := strings.Join(notes, "\n")
	if len(notes) != 2 || !strings.Contains(all, "0.0.0.0") || !strings.Contains(all, "192.0.2.5") || strings.Contains(all, "s3cret") || strings.Contains(all, "sp1ce") {
		t.Errorf("notes %q", notes)
	}
	if g.Display.VNCListen != "0.0.0.0" || g.Display.Spice.Host != "192.0.2.5" {
		t.Error("WithoutSecrets changed the original")
	}
	// On loopback, or with ticketing off (open anyway: lint's business),
	// nothing moves.
	g.Display.VNCListen, g.Display.Spice.Host = "127.0.0.1", "::1"
	if c, notes := g.WithoutSecrets(); len(notes) != 0 || c.Display.VNCListen != "127.0.0.1" || c.Display.Spice.Host != "::1" {
		t.Errorf("loopback consoles moved: %q", notes)
	}
}

// A value kept verbatim that holds a password inside it (a vfb spec with
// vncpasswd=, QEMU's password= or a secret object) is a secret as a whole.
func TestPasswordInsideExtraValueIsSecret(t *testing.T) {
	for _, v := range []string{`[ "vnc=1,vnclisten=0.0.0.0,vncpasswd=hunter2" ]`, `[ "-spice", "port=5930,password=hunter2" ]`, `[ "-object", "secret,id=s,data=hunter2" ]`} {
		g := &hvm.Guest{Name: "g", Memory: hvm.Int(256), Extra: map[string]string{"vfb": v}}
		if !g.HasSecrets() {
			t.Errorf("%s: HasSecrets false", v)
		}
		if r := g.Redacted(); strings.Contains(r.Extra["vfb"], "hunter2") {
			t.Errorf("Redacted keeps %s", r.Extra["vfb"])
		}
		if c, notes := g.WithoutSecrets(); len(c.Extra) != 0 || len(notes) != 1 {
			t.Errorf("WithoutSecrets keeps %v (notes %q)", c.Extra, notes)
		}
	}
}
