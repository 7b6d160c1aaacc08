package main_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// helpFlag is one flag as `strata COMMAND --help` shows it.
type helpFlag struct {
	command, line string
}

// helpFlags walks the command tree through the binary's own help, as a
// user reads it, and returns every flag line.
func helpFlags(t *testing.T, home string, path ...string) []helpFlag {
	t.Helper()
	out := ok(t, home, append(append([]string{}, path...), "--help")...)
	var flags []helpFlag
	section := ""
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasSuffix(l, ":") && !strings.HasPrefix(l, " "):
			section = l
		case section == "COMMANDS:" && strings.HasPrefix(l, "   ") && !strings.HasPrefix(l, "    "):
			name := strings.TrimSuffix(strings.Fields(l)[0], ",")
			if name != "help" {
				flags = append(flags, helpFlags(t, home, append(path, name)...)...)
			}
		case strings.HasSuffix(section, "OPTIONS:") && strings.HasPrefix(strings.TrimSpace(l), "--"):
			flags = append(flags, helpFlag{strings.Join(path, " "), strings.TrimSpace(l)})
		}
	}
	return flags
}

// Help states each flag's default once, and only a default that means
// something: no "(default: false)" on a switch, no "(default: 0)" where 0
// means "not given", never two defaults on one line.
func TestHelpShowsEveryDefaultOnceAndMeaningfully(t *testing.T) {
	home := t.TempDir()
	flags := helpFlags(t, home)
	if len(flags) < 100 {
		t.Fatalf("walked only %d flags: the help walker is broken", len(flags))
	}
	// A default is stated as "(default ...", "default: ..." or "by default".
	word := regexp.MustCompile(`(?i)\(default\b|\bdefault:|\bby default\b`)
	for _, f := range flags {
		bad := ""
		switch {
		case strings.Contains(f.line, "(default: false)"):
			bad = "a switch shows (default: false)"
		case strings.Contains(f.line, "(default: 0)") || strings.Contains(f.line, `(default: "")`):
			bad = "a zero shown as the default"
		case len(word.FindAllString(f.line, -1)) > 1:
			bad = "two defaults on one line"
		}
		if bad != "" {
			t.Errorf("strata %s: %s: %s", f.command, bad, f.line)
		}
	}
}

// The defaults guest define's help shows are the ones a guest defined
// without flags gets.
func TestGuestDefineHelpDefaultsAreTheRealDefaults(t *testing.T) {
	home := t.TempDir()
	shown := map[string]string{}
	re := regexp.MustCompile(`^--([a-z-]+).*\(default: (.*)\)$`)
	for _, f := range helpFlags(t, home, "guest", "define") {
		if m := re.FindStringSubmatch(f.line); m != nil {
			shown[m[1]] = strings.Trim(m[2], `"`)
		} else if strings.HasPrefix(f.line, "--") {
			shown[strings.Fields(strings.TrimPrefix(f.line, "--"))[0]] = ""
		}
	}
	ok(t, home, "guest", "define", "g")
	var g map[string]any
	if err := json.Unmarshal([]byte(ok(t, home, "-o", "json", "guest", "show", "g")), &g); err != nil {
		t.Fatal(err)
	}
	field := func(path ...string) string {
		var v any = g
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	want := map[string]string{
		"memory":      field("memory"),
		"vcpus":       field("vcpus"),
		"maxmem":      "--memory", // unset: the ceiling is the boot memory
		"maxvcpus":    "--vcpus",
		"acpi":        field("features", "acpi"),
		"apic":        field("features", "apic"),
		"viridian":    field("features", "viridian"),
		"vnc":         field("display", "vnc"),
		"tablet":      field("usb"),
		"boot":        field("boot"),
		"driver":      "auto",
		"on-reboot":   field("lifecycle", "on_reboot"),
		"on-poweroff": field("lifecycle", "on_poweroff"),
		"on-crash":    field("lifecycle", "on_crash"),
	}
	if field("maxmem") != "" || field("maxvcpus") != "" || field("driver") != "" {
		t.Fatalf("a guest defined without flags has maxmem %q, maxvcpus %q, driver %q: the help's defaults say unset", field("maxmem"), field("maxvcpus"), field("driver"))
	}
	for flag, real := range want {
		got, listed := shown[flag]
		if !listed {
			t.Errorf("--%s is not in guest define's help", flag)
			continue
		}
		if real == "false" {
			real = "" // a switch off by default shows no default
		}
		if got != real {
			t.Errorf("--%s: help says default %q, a guest defined without it has %q", flag, got, real)
		}
	}
}
