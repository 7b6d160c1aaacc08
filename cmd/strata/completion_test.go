package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completionHome is a state home with a guest, a volume, a named point and
// an iso, for completions to offer.
func completionHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	ok(t, home, "volume", "create", "sys", "--size", "64M")
	ok(t, home, "guest", "define", "web", "--disk", "sys")
	ok(t, home, "snapshot", "create", "web", "--name", "before-sp3")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "setup.exe"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, home, "iso", "build", dir, "drivers")
	return home
}

func lines(s string) []string { return strings.Fields(s) }

// completeIn runs `strata __complete WORDS...` as the shell scripts do:
// __complete first, the home from the environment.
func completeIn(t *testing.T, home string, words ...string) string {
	t.Helper()
	cmd := exec.Command(strataBinary(t), append([]string{"__complete"}, words...)...)
	cmd.Env = append(os.Environ(), "STRATA_HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("strata __complete %q: %v", words, err)
	}
	return string(out)
}

// strata __complete offers subcommands, flags and the catalog's names
// where each belongs.
func TestCompletionOffersCommandsFlagsAndCatalogNames(t *testing.T) {
	home := completionHome(t)
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"gu"}, []string{"guest"}},
		{[]string{"guest", "st"}, []string{"start", "stop", "status"}},
		{[]string{"guest", "start", ""}, []string{"web"}},
		{[]string{"guest", "start", "--pa"}, []string{"--paused"}},
		{[]string{"snapshot", "rollback", "web", ""}, []string{"1", "before-sp3"}},
		{[]string{"snapshot", "rollback", "web", "be"}, []string{"before-sp3"}},
		{[]string{"guest", "define", "new", "--disk", ""}, []string{"sys"}},
		{[]string{"guest", "define", "new", "--cdrom", ""}, []string{"drivers"}},
		{[]string{"volume", "create", "x", "--pool", ""}, []string{"default"}},
		{[]string{"iso", "info", ""}, []string{"drivers"}},
		{[]string{"guest", "define", ""}, nil},                    // a new name
		{[]string{"guest", "import", ""}, nil},                    // a file: the shell completes it
		{[]string{"snapshot", "run", "web", "--", "ls", ""}, nil}, // the command's own words
	} {
		got := lines(completeIn(t, home, c.words...))
		if !slices.Equal(got, c.want) {
			t.Errorf("complete %q: got %q, want %q", c.words, got, c.want)
		}
	}
}

// Completing never creates a state home or a catalog.
func TestCompletionCreatesNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "nothing-here")
	if out := completeIn(t, home, "guest", "start", ""); out != "" {
		t.Errorf("completion in a missing home offered %q", out)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("completion created the home: %v", err)
	}
}

// The scripts `strata completion SHELL` prints work in bash, zsh and fish:
// each shell, given a typed line, gets the point names.
func TestCompletionScriptsWorkInBashZshAndFish(t *testing.T) {
	home := completionHome(t)
	bin := t.TempDir()
	if err := os.Symlink(strataBinary(t), filepath.Join(bin, "strata")); err != nil {
		t.Fatal(err)
	}
	shells := map[string][]string{
		"bash": {"bash", "-c", `source <(strata completion bash); COMP_WORDS=(strata snapshot rollback web ""); COMP_CWORD=4; _strata_complete; printf '%s\n' "${COMPREPLY[@]}"`},
		// zsh's completion widgets need a terminal: compadd and compdef
		// are stood in for, the script's own logic runs.
		"zsh":  {"zsh", "-c", `compdef() {}; compadd() { print -l -- ${(P)2} }; _files() { print FILES }; source <(strata completion zsh); words=(strata snapshot rollback web ""); CURRENT=5; _strata`},
		"fish": {"fish", "-c", `strata completion fish | source; complete -C "strata snapshot rollback web "`},
	}
	for shell, argv := range shells {
		if _, err := exec.LookPath(shell); err != nil {
			t.Fatalf("%s is not installed (make test-deps installs it)", shell)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STRATA_HOME="+home)
		out, err := cmd.CombinedOutput()
		if got := lines(string(out)); err != nil || !slices.Equal(got, []string{"1", "before-sp3"}) {
			t.Errorf("%s: %v: completions %q", shell, err, out)
		}
	}
	fails(t, home, 2, []string{"bash, zsh or fish"}, "completion", "tcsh")
}
