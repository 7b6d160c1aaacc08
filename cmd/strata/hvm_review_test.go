package main_test

// Tests from a review of guest definitions and install media: each failed
// before its fix.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reviewISO builds a small ISO with strata in a throwaway home and returns
// a copy of it outside any state home.
func reviewISO(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("hi\n"), 0o644)
	h := t.TempDir()
	ok(t, h, "iso", "build", src, "fixture")
	var m struct{ Path string }
	jsonOf(t, h, &m, "iso", "info", "fixture")
	out := filepath.Join(t.TempDir(), "fixture.iso")
	data, _ := os.ReadFile(m.Path)
	os.WriteFile(out, data, 0o644)
	return out
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// 1. Rendering the QEMU argv without --show-secrets must not drop VNC auth:
// the password never is on argv anyway (it goes through QMP).
func TestGuestReviewQemuRenderKeepsVNCAuth(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "guest", "define", "w", "--vnc", "--vnclisten", "0.0.0.0", "--vncpasswd-file", writeFile(t, "s3cret\n"))
	argv := ok(t, h, "guest", "render", "w", "--format", "qemu")
	if !strings.Contains(argv, "0.0.0.0:0,to=99,password=on") {
		t.Fatalf("VNC on 0.0.0.0 rendered without password=on:\n%s", argv)
	}
}

// 2. A SPICE console must stay on loopback unless asked, and an exposed
// one without a ticket must be linted.
func TestGuestReviewSpiceDefaultsToLoopback(t *testing.T) {
	h := t.TempDir()
	y := "api_version: strata/v1\nname: sp\nmemory: 256\ndisplay: {vnc: false, spice: {enabled: true, port: 5930, disable_ticketing: true}}\n"
	ok(t, h, "guest", "define", "-f", writeFile(t, y))
	cfg := ok(t, h, "guest", "render", "sp", "--format", "xl")
	if !strings.Contains(cfg, `spicehost = "127.0.0.1"`) {
		t.Errorf("xl.cfg has spice without spicehost (xl: any interface):\n%s", cfg)
	}
	ok(t, h, "guest", "set", "sp", "display.spice.host=0.0.0.0")
	if ids := lintIDs(t, h, "sp"); !strings.Contains(ids, "exposed") {
		t.Errorf("SPICE on 0.0.0.0 without a ticket: lint found only %s", ids)
	}
}

// 3. iso import in place must refuse a file strata manages (a volume's image).
func TestGuestReviewISOImportRefusesVolumeImage(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "volume", "import", reviewISO(t), "--copy", "--name", "isovol")
	var v struct{ Path string }
	jsonOf(t, h, &v, "volume", "info", "isovol")
	fails(t, h, 2, []string{"strata"}, "iso", "import", v.Path, "--name", "stolen")
	runIn(t, h, nil, "iso", "delete", "stolen", "--purge")
	if _, err := os.Stat(v.Path); err != nil {
		t.Fatalf("volume isovol lost its image: %v", err)
	}
}

// 4. A FIFO given to iso capture/import/info is refused, not opened.
func TestGuestReviewISOFifoRefused(t *testing.T) {
	h := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"iso", "capture", fifo, "c"}, {"iso", "import", fifo, "--name", "c"}, {"iso", "info", fifo}} {
		cmd := exec.Command(strataBinary(t), append([]string{"--home", h}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ee, _ := err.(*exec.ExitError); ee == nil || ee.ExitCode() != 2 {
				t.Errorf("%v: %v, want exit 2", args, err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%v: still blocked on the FIFO after 5s", args)
		}
	}
}

// 5. iso delete is refused while a guest's CD-ROM names the iso's image by path.
func TestGuestReviewISODeleteInUseByPath(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "iso", "import", reviewISO(t), "--pool", "default", "--name", "inst")
	var m struct{ Path string }
	jsonOf(t, h, &m, "iso", "info", "inst")
	ok(t, h, "guest", "define", "g", "--cdrom", m.Path)
	fails(t, h, 5, []string{"inst"}, "iso", "delete", "inst")
	if _, err := os.Stat(m.Path); err != nil {
		t.Fatalf("guest g's CD-ROM image was deleted: %v", err)
	}
}

// 6. A number that is not an integer is refused, not truncated.
func TestGuestReviewNonIntegerRefused(t *testing.T) {
	h := t.TempDir()
	fails(t, h, 2, []string{"memory"}, "guest", "define", "-f", writeFile(t, "api_version: strata/v1\nname: f\nmemory: 1.9\n"))
	ok(t, h, "guest", "define", "g")
	before := ok(t, h, "--output", "yaml", "guest", "show", "g")
	fails(t, h, 2, []string{"vcpus"}, "guest", "set", "g", "vcpus=2.5")
	if after := ok(t, h, "--output", "yaml", "guest", "show", "g"); after != before {
		t.Errorf("refused set changed the guest:\n%s", after)
	}
}

// 7. guest set keeps a SPICE password as typed (leading zeros); it comes
// from a file, never the command line.
func TestGuestReviewSpicePasswordKeptVerbatim(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "guest", "define", "g")
	ok(t, h, "guest", "set", "g", "display.spice.enabled=true", "--secret-file", "display.spice.passwd="+writeFile(t, "007\n"))
	y := ok(t, h, "--output", "yaml", "guest", "show", "g", "--show-secrets")
	if !strings.Contains(y, `passwd: "007"`) {
		t.Errorf("spice password changed:\n%s", y)
	}
}

// 8. An imported spicepasswd (kept in extra) is never shown without --show-secrets.
func TestGuestReviewExtraSpicePasswdRedacted(t *testing.T) {
	h := t.TempDir()
	ok(t, h, "guest", "import", writeFile(t, "name=\"sp\"\ntype=\"hvm\"\nmemory=256\nspicepasswd=\"topsecret1\"\n"))
	for _, o := range []string{"yaml", "json", "table"} {
		if out := ok(t, h, "--output", o, "guest", "show", "sp"); strings.Contains(out, "topsecret1") {
			t.Errorf("guest show -o %s prints the SPICE password:\n%s", o, out)
		}
	}
}
