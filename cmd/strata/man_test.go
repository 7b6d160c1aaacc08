package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make man writes strata(1) from the CLI definition: man reads it, it
// documents every command, and the generator is not in the strata binary.
func TestMakeManWritesAPageManReadsAndStrataLacksTheGenerator(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("make", "-s", "-C", root, "man").CombinedOutput()
	if err != nil {
		t.Fatalf("make man: %v\n%s", err, out)
	}
	page := filepath.Join(root, "bin", "strata.1")
	cmd := exec.Command("man", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=100")
	text, err := cmd.Output()
	if err != nil {
		t.Fatalf("man -l %s: %v", page, err)
	}
	for _, want := range []string{"strata(1)", "guest", "snapshot", "rollback", "golden", "completion", "--lock-timeout"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("strata(1) does not mention %q", want)
		}
	}
	syms, err := exec.Command("go", "tool", "nm", strataBinary(t)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(syms), "ToMan") || strings.Contains(string(syms), "md2man") {
		t.Error("the strata binary links the man page generator")
	}
}
