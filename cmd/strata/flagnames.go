package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Flag names, computed once.
//
// urfave/cli/v2 recomputes a flag's names on every call of Names(), with
// a regular expression (it strips v1-style "name, alias" text), and calls
// it in loops over loops: Context.IsSet of a flag not given looks through
// every flag of every level, and each level runs IsSet for each of its
// flags (runFlagActions). A `volume create` made about 270 such calls,
// about 0.25 ms of a 5 ms command; wrapped, about 20. Before a command runs, every flag is
// wrapped in a type that keeps its names: the wrapper embeds the
// urfave/cli flag, so every interface the library asks for (help,
// required, visible, actionable flags) is still met by the same methods,
// and String() still renders the embedded flag itself.

type (
	stringFlag struct {
		*cli.StringFlag
		names []string
	}
	boolFlag struct {
		*cli.BoolFlag
		names []string
	}
	intFlag struct {
		*cli.IntFlag
		names []string
	}
	durationFlag struct {
		*cli.DurationFlag
		names []string
	}
	float64Flag struct {
		*cli.Float64Flag
		names []string
	}
	stringSliceFlag struct {
		*cli.StringSliceFlag
		names []string
	}
)

func (f *stringFlag) Names() []string      { return flagNames(&f.names, f.Name, f.Aliases) }
func (f *boolFlag) Names() []string        { return flagNames(&f.names, f.Name, f.Aliases) }
func (f *intFlag) Names() []string         { return flagNames(&f.names, f.Name, f.Aliases) }
func (f *durationFlag) Names() []string    { return flagNames(&f.names, f.Name, f.Aliases) }
func (f *float64Flag) Names() []string     { return flagNames(&f.names, f.Name, f.Aliases) }
func (f *stringSliceFlag) Names() []string { return flagNames(&f.names, f.Name, f.Aliases) }

// flagNames is urfave/cli's FlagNames (name and aliases, each cut at its
// first comma or space) without its regular expression, computed into
// *cached the first time.
func flagNames(cached *[]string, name string, aliases []string) []string {
	if *cached == nil {
		names := make([]string, 0, 1+len(aliases))
		for _, n := range append([]string{name}, aliases...) {
			if i := strings.IndexAny(n, ", "); i >= 0 {
				n = n[:i]
			}
			names = append(names, n)
		}
		*cached = names
	}
	return *cached
}

// withFixedFlagNames wraps the flags of the app and of every command so
// that Names() is computed once, when first asked for. A flag of a type
// not listed is kept as it is (correct, only slower). (The library's own
// Apply still calls its own Names(), once per flag.)
func withFixedFlagNames(app *cli.App) {
	// The help and version flags urfave/cli adds to every level.
	if b, ok := cli.HelpFlag.(*cli.BoolFlag); ok {
		cli.HelpFlag = &boolFlag{BoolFlag: b}
	}
	if b, ok := cli.VersionFlag.(*cli.BoolFlag); ok {
		cli.VersionFlag = &boolFlag{BoolFlag: b}
	}
	fixFlagNames(app.Flags)
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			fixFlagNames(c.Flags)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}

func fixFlagNames(flags []cli.Flag) {
	for i, f := range flags {
		switch t := f.(type) {
		case *cli.StringFlag:
			flags[i] = &stringFlag{StringFlag: t}
		case *cli.BoolFlag:
			flags[i] = &boolFlag{BoolFlag: t}
		case *cli.IntFlag:
			flags[i] = &intFlag{IntFlag: t}
		case *cli.DurationFlag:
			flags[i] = &durationFlag{DurationFlag: t}
		case *cli.Float64Flag:
			flags[i] = &float64Flag{Float64Flag: t}
		case *cli.StringSliceFlag:
			flags[i] = &stringSliceFlag{StringSliceFlag: t}
		}
	}
}
