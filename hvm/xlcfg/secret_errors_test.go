package xlcfg_test

import (
	"strings"
	"testing"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/hvm/xlcfg"
)

// A config that fails to parse never has a password, or a character of
// one, quoted in the error: the line that holds it, a statement whose key
// is a password key on a later line, a bad escape inside it.
func TestParseErrorsNeverQuotePasswords(t *testing.T) {
	const pw = "Zq9pw"
	for _, cfg := range []string{
		"name = \"a\"\nvncpasswd = " + pw + "\n",                // unquoted
		"name = \"a\"\nvncpasswd = \"" + pw + "\" trailing\n",   // text after the value
		"name = \"a\"\nvncpasswd = \"" + pw + "\\q\"\n",         // unknown escape
		"name = \"a\"\nspicepasswd = [\n \"" + pw + "\" x\n]\n", // a later line of the statement
		"name = \"a\"\nvfb = [ \"vncpasswd=" + pw + "\" ) ]\n",  // inside another key's value
		"name = \"a\"\nvfb = [ \"vnc=1,vncpasswd=" + pw + "\\z\" ]\n",
		"name = \"a\"\nVNCPASSWD = \"" + pw + "\"\n", // not a key at all
	} {
		_, _, err := xlcfg.Parse("t.cfg", []byte(cfg))
		if err == nil {
			t.Errorf("%q parsed", cfg)
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "Zq") || strings.Contains(err.Error(), `\q`) || strings.Contains(err.Error(), `\z`) || strings.Contains(err.Error(), "'Z'") {
			t.Errorf("error quotes the password: %v", err)
		}
		if !strings.Contains(err.Error(), "t.cfg:") {
			t.Errorf("error does not name file and line: %v", err)
		}
	}
	// A line without a password is still quoted, to help.
	_, _, err := xlcfg.Parse("t.cfg", []byte("name = \"a\"\nmemory = 512 oops\n"))
	if err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("a plain syntax error lost its line: %v", err)
	}
}

// Rendering an extra value holding a password that is not xl syntax
// does not quote it.
func TestRenderErrorNeverQuotesPassword(t *testing.T) {
	g := &hvm.Guest{Name: "a", Memory: hvm.Int(256), Extra: map[string]string{"vfb": `[ "vncpasswd=Zq9pw" junk`}}
	if _, err := xlcfg.Render(g); err == nil || strings.Contains(err.Error(), "Zq9pw") {
		t.Errorf("render error %v", err)
	}
}
