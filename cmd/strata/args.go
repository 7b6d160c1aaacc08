package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves a command's flags in front of its positional
// arguments, so that "strata volume create NAME --size 20G" works: urfave/cli
// v2, like Go's flag package, stops reading flags at the first positional
// argument. Everything from a "--" on is left as it is, and kept as the
// app's afterDash.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	var early []string // global flags found between commands
	i := 1
	flags, cmds := app.Flags, app.Commands
	for i < len(args) {
		// Flags of the current level stay where they are.
		for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
			n, ok := flagWidth(flags, args[i])
			if !ok && len(out) > 1 {
				// A global flag after a command ("volume -o json list"):
				// it goes in front, with its value.
				if gn, gok := flagWidth(app.Flags, args[i]); gok {
					if i+gn > len(args) {
						// Its value is missing: alone after the global
						// flags, so that urfave/cli says so (before the
						// command, it would take its name for the value).
						return append(append([]string{out[0]}, early...), args[i])
					}
					early = append(early, args[i:min(i+gn, len(args))]...)
					i += gn
					continue
				}
			}
			out = append(out, args[i:min(i+n, len(args))]...)
			i += n
		}
		if i >= len(args) {
			return append(append([]string{out[0]}, early...), out[1:]...)
		}
		cmd := findCommand(cmds, args[i])
		if cmd == nil {
			break
		}
		out = append(out, args[i])
		i++
		flags, cmds = cmd.Flags, cmd.Subcommands
		if len(cmds) == 0 {
			break
		}
	}
	var global, moved, positional []string
	for i < len(args) {
		a := args[i]
		if a == "--" {
			stateOf(app).afterDash = args[i+1:]
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			n, ok := flagWidth(flags, a)
			dst := &moved
			if !ok {
				if gn, gok := flagWidth(app.Flags, a); gok {
					n, dst = gn, &global
				}
			}
			if i+n > len(args) {
				// The last argument, its value missing: it goes last, so
				// that urfave/cli says so (it would take a name for the
				// value, or a slice would be out of range).
				if dst == &global {
					return append(append(append([]string{out[0]}, early...), global...), a)
				}
				out = append(append(append([]string{out[0]}, early...), global...), out[1:]...)
				return append(append(out, moved...), a)
			}
			*dst = append(*dst, args[i:min(i+n, len(args))]...)
			i += n
			continue
		}
		positional = append(positional, a)
		i++
	}
	out = append(append(append([]string{out[0]}, early...), global...), out[1:]...)
	out = append(out, moved...)
	out = append(out, positional...)
	return append(out, args[i:]...)
}

// flagWidth is 2 for a flag written apart from its value ("--size 20G"),
// else 1; ok tells whether flags define it.
func flagWidth(flags []cli.Flag, arg string) (width int, ok bool) {
	name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				if tv, ok := f.(cli.DocGenerationFlag); ok && tv.TakesValue() && !hasValue {
					return 2, true
				}
				return 1, true
			}
		}
	}
	return 1, false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
