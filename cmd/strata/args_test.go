package main_test

// How the command line is read: commands, global flags anywhere.

import (
	"strings"
	"testing"
)

// An unknown command is an invalid argument (2), not an internal error (1).
func TestUnknownCommandExits2(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"nosuchcmd"}, {"volume", "nosuchsub"}} {
		if r := runIn(t, home, nil, args...); r.code != 2 {
			t.Errorf("strata %v: exit %d, want 2; stderr %q", args, r.code, r.stderr)
		}
	}
}

// Global flags may be written between a command and its subcommand.
func TestGlobalFlagBetweenCommandAndSubcommand(t *testing.T) {
	home := t.TempDir()
	if r := runIn(t, home, nil, "volume", "-o", "json", "list"); r.code != 0 || !strings.HasPrefix(r.stdout, "[") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// A flag written last without its value is a usage error naming it (exit
// 2), wherever it is: not a crash (a slice read past the arguments), and a
// global flag after a command never takes the command's name for its
// value (`volume --home` would have opened a state home called "volume").
func TestFlagWithoutItsValueIsAUsageError(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"volume", "create", "a", "--size"},
		{"volume", "create", "a", "--size", "1M", "--pool"},
		{"snapshot", "list", "--volume"},
		{"volume", "list", "-o"},
		{"volume", "list", "--home"},
		{"volume", "-o"},
		{"volume", "--log-level"},
		{"volume", "-o", "json", "--home"},
	} {
		r := runIn(t, home, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "flag needs an argument") || strings.Contains(r.stderr, "panic") {
			t.Errorf("strata %v: exit %d, want 2 and \"flag needs an argument\"; stderr %q", args, r.code, r.stderr)
		}
	}
}
