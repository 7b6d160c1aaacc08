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
