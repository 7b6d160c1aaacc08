package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/strata-vm/strata/snapshot"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/catalog"
	"github.com/strata-vm/strata/storage/media"
	"github.com/strata-vm/strata/storage/store"
)

// Shell completion. The scripts `strata completion SHELL` prints call the
// hidden `strata __complete WORD...` with the words typed so far, the last
// being the one completed (maybe empty); it prints one candidate per line:
// subcommands, flags, and the names of guests, volumes, pools, isos,
// goldens and points from the catalog. It never creates a state home or a
// catalog, waits at most completionLockWait for the catalog, and prints
// nothing (the shell then completes file names) when it has nothing.

const completeCommand = "__complete"

// completionLockWait bounds how long a completion waits for a catalog
// another strata process writes: a shell must not hang on TAB.
const completionLockWait = 300 * time.Millisecond

func newCompletionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish (see README: Shell completion)",
		ArgsUsage: "bash|zsh|fish",
		Action:    completionAction,
	}
}

func completionAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return storage.Errorf(storage.ErrInvalid, "completion takes one argument, the shell: bash, zsh or fish")
	}
	script, ok := completionScripts[c.Args().First()]
	if !ok {
		return storage.Errorf(storage.ErrInvalid, "invalid shell %q: give bash, zsh or fish", c.Args().First())
	}
	_, err := io.WriteString(c.App.Writer, script)
	return err
}

var completionScripts = map[string]string{
	// -o default: file names where strata offers nothing (FILE arguments).
	"bash": `# strata completion for bash: source it, or put it in /etc/bash_completion.d/strata
_strata_complete() {
	local IFS=$'\n'
	COMPREPLY=($("${COMP_WORDS[0]}" ` + completeCommand + ` "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _strata_complete strata
`,
	"zsh": `#compdef strata
# strata completion for zsh: put it in a directory of $fpath as _strata
_strata() {
	local -a opts
	opts=("${(@f)$("${words[1]}" ` + completeCommand + ` "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	if [[ -n "${opts[1]}" ]]; then
		compadd -a opts
	else
		_files
	fi
}
compdef _strata strata
`,
	"fish": `# strata completion for fish: put it in ~/.config/fish/completions/strata.fish
function __strata_complete
	set -l tokens (commandline -opc)
	set -l cur (commandline -ct)
	set -l out ($tokens[1] ` + completeCommand + ` $tokens[2..-1] "$cur" 2>/dev/null)
	if test (count $out) -eq 0
		__fish_complete_path "$cur"
	else
		printf '%s\n' $out
	end
end
complete -c strata -f -a '(__strata_complete)'
`,
}

// completionState is what the words before the one completed say.
type completionState struct {
	cmd        *cli.Command // nil at the top
	flags      []cli.Flag   // the flags valid at this level
	cmds       []*cli.Command
	positional []string
	values     map[string]string // flag name (without dashes) → value
	pending    string            // a flag whose value is being typed
	stop       bool              // past "--": a command's own arguments
}

// complete prints the candidates for the last of words.
func complete(app *cli.App, w io.Writer, words []string) {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	s := completionState{flags: app.Flags, cmds: app.Commands, values: map[string]string{}}
	for i := 0; i < len(words)-1; i++ {
		word := words[i]
		switch {
		case s.stop:
		case word == "--":
			s.stop = true
		case strings.HasPrefix(word, "-") && len(word) > 1:
			n, ok := flagWidth(s.flags, word)
			if !ok {
				n, _ = flagWidth(app.Flags, word)
			}
			name, value, _ := strings.Cut(strings.TrimLeft(word, "-"), "=")
			if n == 2 {
				if i+1 == len(words)-1 {
					s.pending = name
					break
				}
				value = words[i+1]
				i++
			}
			s.values[name] = value
		default:
			if len(s.positional) == 0 {
				if c := findCommand(s.cmds, word); c != nil {
					s.cmd, s.flags, s.cmds = c, c.Flags, c.Subcommands
					continue
				}
			}
			s.positional = append(s.positional, word)
		}
	}
	if s.stop {
		return
	}
	var out []string
	switch {
	case s.pending != "":
		out = s.flagValues(app, s.pending)
	case strings.HasPrefix(cur, "-"):
		for _, f := range append(slices.Clone(s.flags), app.Flags...) {
			if h, ok := f.(interface{ IsVisible() bool }); ok && !h.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				if len(n) > 1 {
					out = append(out, "--"+n)
				}
			}
		}
	case len(s.cmds) > 0 && len(s.positional) == 0:
		for _, c := range s.cmds {
			if !c.Hidden && c.Name != "help" {
				out = append(out, c.Name)
			}
		}
	case s.cmd != nil:
		out = s.argValues(app)
	}
	for _, o := range out {
		if strings.HasPrefix(o, cur) {
			fmt.Fprintln(w, o)
		}
	}
}

// argKinds are what a command's arguments name, from its ArgsUsage:
// GUEST, POINT, ISO, GOLDEN, or NAME (an existing thing of the kind the
// parent command manages; new names are not completed).
func (s *completionState) argKinds(parent string) []string {
	var kinds []string
	for _, f := range strings.Fields(s.cmd.ArgsUsage) {
		f = strings.Trim(f, "[]().")
		kind, _, _ := strings.Cut(f, "|")
		if kind == "NAME" {
			switch s.cmd.Name {
			case "create", "add", "define", "build", "capture", "import":
				kind = ""
			default:
				kind = parent
			}
		}
		kinds = append(kinds, kind)
	}
	if s.values["volume"] != "" && len(kinds) > 0 && kinds[0] == "GUEST" {
		kinds = kinds[1:] // snapshot COMMAND --volume NAME POINT
	}
	return kinds
}

func (s *completionState) argValues(app *cli.App) []string {
	parent := ""
	for _, c := range app.Commands {
		if slices.Contains(c.Subcommands, s.cmd) {
			parent = strings.ToUpper(c.Name)
		}
	}
	kinds := s.argKinds(parent)
	if strings.HasSuffix(s.cmd.ArgsUsage, "...") {
		for len(kinds) > 0 && len(kinds) <= len(s.positional) {
			kinds = append(kinds, kinds[len(kinds)-1]) // POINT...: any number
		}
	}
	if len(s.positional) >= len(kinds) {
		return nil
	}
	target := snapshot.TargetRef{Name: first(s.positional)}
	if v := s.values["volume"]; v != "" {
		target = snapshot.TargetRef{Name: v, Volume: true}
	}
	return names(app, s.values, kinds[len(s.positional)], target)
}

func (s *completionState) flagValues(app *cli.App, flag string) []string {
	switch flag {
	case "pool":
		return names(app, s.values, "POOL", snapshot.TargetRef{})
	case "disk", "volume":
		return names(app, s.values, "VOLUME", snapshot.TargetRef{})
	case "cdrom", "media":
		return names(app, s.values, "ISO", snapshot.TargetRef{})
	case "output", "o":
		return []string{"table", "json", "yaml"}
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// names lists the catalog's names of one kind (points: of target), or
// nothing when the home has no catalog or it is busy. Errors are dropped
// on purpose: a completion offers what it could read, and anything it
// printed about an error the shell would offer as a candidate.
func names(app *cli.App, values map[string]string, kind string, target snapshot.TargetRef) []string {
	home := values["home"]
	if home == "" {
		home = os.Getenv("STRATA_HOME")
	}
	if home == "" {
		home = defaultHome()
	}
	shared := catalog.Options{URL: os.Getenv("STRATA_CATALOG"), Host: os.Getenv("STRATA_HOST")}
	if _, err := os.Stat(filepath.Join(home, catalog.FileName)); err != nil && shared.URL == "" {
		return nil
	}
	st, err := store.OpenWith(home, completionLockWait, shared)
	if err != nil {
		return nil
	}
	ctx := context.Background()
	var out []string
	switch kind {
	case "GUEST":
		_ = st.Catalog.View(func(tx *catalog.Tx) error {
			gs, err := tx.Guests()
			for _, g := range gs {
				out = append(out, g.Name)
			}
			return err
		})
	case "VOLUME":
		_ = st.Catalog.View(func(tx *catalog.Tx) error {
			vs, err := tx.Volumes()
			for _, v := range vs {
				out = append(out, v.Name)
			}
			return err
		})
	case "POOL":
		_ = st.Catalog.View(func(tx *catalog.Tx) error {
			ps, err := tx.Pools()
			for _, p := range ps {
				out = append(out, p.Name)
			}
			return err
		})
	case "ISO":
		ms, _ := media.New(st.Catalog).List(ctx)
		for _, m := range ms {
			out = append(out, m.Name)
		}
	case "GOLDEN":
		gs, _ := snapshot.New(st, completionLockWait).GoldenList(ctx)
		for _, g := range gs {
			out = append(out, g.Name)
		}
	case "POINT":
		if target.Name == "" {
			return nil
		}
		ps, _ := snapshot.New(st, completionLockWait).List(ctx, &target)
		for _, p := range ps {
			out = append(out, strconv.Itoa(p.ID))
			if p.Name != "" {
				out = append(out, p.Name)
			}
		}
	}
	return out
}
