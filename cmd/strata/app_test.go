package main

// How the command line is built for a run: only the command named, its
// flags' names computed once. Both must leave what a user sees unchanged.

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func commandNames(app *cli.App) []string {
	var names []string
	for _, c := range app.Commands {
		names = append(names, c.Names()...)
	}
	return names
}

// The table newAppFor looks names up in names each command as it names
// itself (an alias would not be found, and cost the whole tree).
func TestCommandTableNamesEachCommand(t *testing.T) {
	var want []string
	for _, c := range commands {
		want = append(want, c.name)
	}
	if got := commandNames(newApp()); !slices.Equal(got, want) {
		t.Fatalf("commands build %v, the table names %v", got, want)
	}
}

func TestAppForARunHoldsTheCommandNamedOnly(t *testing.T) {
	all := commandNames(newApp())
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"strata", "volume", "create", "v", "--size", "1G"}, []string{"volume"}},
		{[]string{"strata", "--home", "/h", "-o", "json", "--lock-timeout=5s", "clone", "g", "c"}, []string{"clone"}},
		{[]string{"strata", "--log-level", "volume", "pool", "list"}, []string{"pool"}}, // "volume" is --log-level's value
		{[]string{"strata", "volume", "--help"}, []string{"volume"}},
		{[]string{"strata", "--help", "volume"}, all},
		{[]string{"strata", "-h"}, all},
		{[]string{"strata", "help", "volume"}, all},
		{[]string{"strata", "nosuch"}, all},
		{[]string{"strata"}, all},
		{[]string{"strata", completeCommand, "vol"}, all},
	} {
		if got := commandNames(newAppFor(tc.args)); !slices.Equal(got, tc.want) {
			t.Errorf("%q: commands %v, want %v", tc.args, got, tc.want)
		}
	}
}

// flagTree is every flag of app with the path of its command.
func flagTree(app *cli.App) map[string][]cli.Flag {
	out := map[string][]cli.Flag{"": app.Flags}
	var walk func(string, []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := path + " " + c.Name
			out[p] = c.Flags
			walk(p, c.Subcommands)
		}
	}
	walk("", app.Commands)
	return out
}

// helpOf is `strata PATH... --help` as app prints it.
func helpOf(t *testing.T, app *cli.App, path []string) string {
	t.Helper()
	var b bytes.Buffer
	app.Writer, app.ErrWriter = &b, &b
	if err := app.Run(append(append([]string{"strata"}, path...), "--help")); err != nil {
		t.Fatalf("strata %v --help: %v", path, err)
	}
	return b.String()
}

// Wrapped flags keep their names, every interface urfave/cli asks of
// them, and their help.
func TestFixedFlagNamesChangeNothingAUserSees(t *testing.T) {
	plain, fixed := newApp(), newApp()
	withUsageErrors(plain.Commands)
	withUsageErrors(fixed.Commands)
	withFixedFlagNames(fixed)
	want, got := flagTree(plain), flagTree(fixed)
	wrapped := 0
	for path, flags := range want {
		for i, f := range flags {
			g := got[path][i]
			if !slices.Equal(g.Names(), f.Names()) {
				t.Errorf("strata%s: flag %v is named %v once wrapped", path, f.Names(), g.Names())
			}
			if g.String() != f.String() {
				t.Errorf("strata%s: flag %v reads %q once wrapped, was %q", path, f.Names(), g.String(), f.String())
			}
			_, plainDoc := f.(cli.DocGenerationFlag)
			_, fixedDoc := g.(cli.DocGenerationFlag)
			_, plainVis := f.(cli.VisibleFlag)
			_, fixedVis := g.(cli.VisibleFlag)
			_, plainReq := f.(cli.RequiredFlag)
			_, fixedReq := g.(cli.RequiredFlag)
			_, plainAct := f.(cli.ActionableFlag)
			_, fixedAct := g.(cli.ActionableFlag)
			if plainDoc != fixedDoc || plainVis != fixedVis || plainReq != fixedReq || plainAct != fixedAct {
				t.Errorf("strata%s: flag %v lost an interface once wrapped", path, f.Names())
			}
			if g != f {
				wrapped++
			}
		}
	}
	if wrapped < 100 {
		t.Errorf("only %d flags wrapped: a flag type is missing from fixFlagNames", wrapped)
	}
	// The app main runs (the command named only, flags wrapped) prints
	// the help the whole tree does, for every command.
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	if len(paths) < 70 {
		t.Fatalf("only %d command paths: %v", len(paths), paths)
	}
	for _, p := range paths {
		path := strings.Fields(p)
		run := newAppFor(append([]string{"strata"}, path...))
		withUsageErrors(run.Commands)
		withFixedFlagNames(run)
		if w, g := helpOf(t, plain, path), helpOf(t, run, path); g != w {
			t.Errorf("strata %v --help as run:\n%s\nwith the whole tree, flags as made:\n%s", path, g, w)
		}
	}
}
