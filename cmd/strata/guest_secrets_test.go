package main_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runStdin runs strata with stdin, for passwords given through it.
func runStdin(t *testing.T, home, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(strataBinary(t), append([]string{"--home", home}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return result{stdout.String(), stderr.String(), code}
}

const leak = "Sekr1tPw"

// guest set takes no password on the command line, where ps and shell
// history show it, and its refusal never repeats it: not for a password
// key, an alias, an unknown sub-key of one, a verbatim value holding one,
// nor a stray word that may be one.
func TestGuestSetRefusesPasswordsOnCommandLine(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	ok(t, h, "guest", "define", "g", "--nic", "bridge=br0", "--vnc", "--vncpasswd-file", writeFile(t, "old-pw\n"))
	before := ok(t, h, "-o", "yaml", "guest", "show", "g", "--show-secrets")
	for _, args := range [][]string{
		{"vncpasswd=" + leak},
		{"display.vncpasswd=" + leak},
		{"spicepasswd=" + leak},
		{"display.spice.passwd=" + leak},
		{"display.vncpasswd.x=" + leak},
		{"display.spice.passwd.y=" + leak},
		{"extra.spicepasswd=" + leak},
		{"nics.0.extra.passwd=" + leak},
		{`extra.vfb=[ "vnc=1,vncpasswd=` + leak + `" ]`},
		{`extra.device_model_args=[ "-spice", "port=5930,password=` + leak + `" ]`},
		{"vncpasswd=", leak},
		{"memory=1024", leak},
	} {
		r := runIn(t, h, nil, append([]string{"guest", "set", "g"}, args...)...)
		if r.code != 2 || strings.Contains(r.stderr+r.stdout, leak) || strings.Contains(r.stderr, "Sekr1") {
			t.Errorf("guest set g %q: exit %d, want 2 without the password:\n%s", args, r.code, r.stderr)
		}
	}
	if after := ok(t, h, "-o", "yaml", "guest", "show", "g", "--show-secrets"); after != before {
		t.Errorf("a refused set changed the guest:\n%s", after)
	}
}

// Passwords come from a file or stdin (- ), as define takes them; an
// empty assignment still unsets one.
func TestGuestSetPasswordFromFileOrStdin(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	ok(t, h, "guest", "define", "g", "--vnc")
	ok(t, h, "guest", "set", "g", "--vncpasswd-file", writeFile(t, "from-file\n"))
	if y := ok(t, h, "-o", "yaml", "guest", "show", "g", "--show-secrets"); !strings.Contains(y, "vncpasswd: from-file") {
		t.Errorf("--vncpasswd-file not set:\n%s", y)
	}
	r := runStdin(t, h, "007\n", "guest", "set", "g", "display.spice.enabled=true", "--secret-file", "spicepasswd=-")
	if r.code != 0 {
		t.Fatalf("--secret-file spicepasswd=-: exit %d: %s", r.code, r.stderr)
	}
	y := ok(t, h, "-o", "yaml", "guest", "show", "g", "--show-secrets")
	if !strings.Contains(y, `passwd: "007"`) {
		t.Errorf("SPICE password from stdin not kept as typed:\n%s", y)
	}
	// (Quoted: a random uuid may hold the digits 007.)
	if out := ok(t, h, "-o", "yaml", "guest", "show", "g"); strings.Contains(out, `"007"`) || strings.Contains(out, "from-file") {
		t.Errorf("show prints a password:\n%s", out)
	}
	ok(t, h, "guest", "set", "g", "--secret-file", "extra.vfb="+writeFile(t, `[ "vnc=1,vnclisten=0.0.0.0,vncpasswd=vfb-pw" ]`))
	if y := ok(t, h, "-o", "yaml", "guest", "show", "g", "--show-secrets"); !strings.Contains(y, "vncpasswd=vfb-pw") {
		t.Errorf("extra.vfb from a file not set:\n%s", y)
	}
	ok(t, h, "guest", "set", "g", "vncpasswd=")
	if y := ok(t, h, "-o", "yaml", "guest", "show", "g", "--show-secrets"); strings.Contains(y, "from-file") {
		t.Errorf("vncpasswd= did not unset the password:\n%s", y)
	}
	// define takes it from stdin too.
	if r := runStdin(t, h, "std-in-pw\n", "guest", "define", "d", "--vnc", "--vncpasswd-file", "-"); r.code != 0 {
		t.Fatalf("define --vncpasswd-file -: exit %d: %s", r.code, r.stderr)
	}
	if y := ok(t, h, "-o", "yaml", "guest", "show", "d", "--show-secrets"); !strings.Contains(y, "vncpasswd: std-in-pw") {
		t.Errorf("define --vncpasswd-file - did not set the password:\n%s", y)
	}
	// Only password keys, each once, stdin once.
	fails(t, h, 2, []string{"memory", "not a key that holds a password"}, "guest", "set", "g", "--secret-file", "memory="+writeFile(t, "1024"))
	fails(t, h, 2, []string{"stdin"}, "guest", "set", "g", "--secret-file", "vncpasswd=-", "--secret-file", "spicepasswd=-")
	fails(t, h, 2, []string{"KEY=FILE"}, "guest", "set", "g", "--secret-file", "vncpasswd")
}

// define and import never quote a password in an error either: a YAML
// definition with a sub-key under a password, an xl config whose
// password line is broken, libvirt XML that trips the parser inside one.
func TestGuestDefineImportErrorsNeverQuotePasswords(t *testing.T) {
	h := filepath.Join(t.TempDir(), "home")
	for _, y := range []string{
		"api_version: strata/v1\nname: y\nmemory: 256\ndisplay: {vncpasswd: {x: " + leak + "}}\n",
		"api_version: strata/v1\nname: y\nmemory: 256\ndisplay: {vncpasswd: [" + leak + "]}\n",
		"api_version: strata/v1\nname: y\nmemory: 256\nnics: [{extra: {passwd: \"" + leak + ",x\"}}]\n",
	} {
		r := runIn(t, h, nil, "guest", "define", "-f", writeFile(t, y))
		if r.code != 2 || strings.Contains(r.stderr, leak) {
			t.Errorf("define -f %q: exit %d, want 2 without the password:\n%s", y, r.code, r.stderr)
		}
	}
	for _, cfg := range []string{
		"name = \"x\"\ntype = \"hvm\"\nmemory = 256\nvncpasswd = " + leak + "\n",
		"name = \"x\"\ntype = \"hvm\"\nmemory = 256\nvncpasswd = \"" + leak + "\\q\"\n",
		"name = \"x\"\ntype = \"hvm\"\nmemory = 256\nvfb = [ \"vncpasswd=" + leak + "\" ) ]\n",
		"name = \"x\"\ntype = \"hvm\"\nmemory = 256\ndisk = [ \"target=/x,vdev=hda,passwd=" + leak + ",bogus\" ]\n",
	} {
		r := runIn(t, h, nil, "guest", "import", writeFile(t, cfg))
		if r.code != 2 || strings.Contains(r.stderr, leak) || strings.Contains(r.stderr, "'S'") {
			t.Errorf("import %q: exit %d, want 2 without the password:\n%s", cfg, r.code, r.stderr)
		}
	}
	xml := "<domain type='kvm'><name>x</name><os><type>hvm</type></os><devices><graphics type='vnc' passwd='a&" + leak + ";'/></devices></domain>"
	r := runIn(t, h, nil, "guest", "import", "--libvirt", writeFile(t, xml))
	if r.code != 2 || strings.Contains(r.stderr, leak) {
		t.Errorf("import --libvirt: exit %d, want 2 without the password:\n%s", r.code, r.stderr)
	}
}
