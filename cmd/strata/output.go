package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/strata-vm/strata/storage"
)

// emit prints a result: as indented JSON with --output json, else through
// table, which writes aligned columns.
func emit(c *cli.Context, v any, table func(w *tabwriter.Writer)) error {
	if c.String("output") == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func row(w *tabwriter.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
		if s[i] == "" {
			s[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// needArgs checks the count of positional arguments.
func needArgs(c *cli.Context, names ...string) error {
	if c.NArg() != len(names) {
		return storage.Errorf(storage.ErrInvalid, "%s takes %d argument(s): %s (got %d; see --help)", c.Command.FullName(), len(names), strings.Join(names, " "), c.NArg())
	}
	return nil
}

// progress draws a bar on stderr when it is a terminal, else nothing.
func progress() storage.Progress {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return storage.NoProgress{}
	}
	return &bar{}
}

type bar struct{ b *progressbar.ProgressBar }

func (p *bar) Start(total int64, what string) {
	p.b = progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what), progressbar.OptionThrottle(100_000_000), progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish())
}
func (p *bar) Add(n int64) { _ = p.b.Add64(n) }
func (p *bar) Done()       { _ = p.b.Finish() }
