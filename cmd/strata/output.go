package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog/log"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/strata-vm/strata/storage"
)

// emit prints a result: as indented JSON with --output json, else through
// table, which writes aligned columns.
func emit(c *cli.Context, v any, table func(w *tabwriter.Writer)) error {
	if c.String("output") == "yaml" {
		return storage.Errorf(storage.ErrInvalid, "--output yaml is only for guest show: use table or json")
	}
	out := bufio.NewWriter(os.Stdout)
	if c.String("output") == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
		return out.Flush()
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(w)
	if err := w.Flush(); err != nil {
		return err
	}
	return out.Flush()
}

// oneOrList says how a result that is one item (T) or a list of them
// ([]T) prints as a table: an item alone as its fields, a list as a
// header and a row per item. JSON prints either as given.
type oneOrList[T any] struct {
	fields func(w *tabwriter.Writer, one T)
	header []any
	row    func(one T) []any
}

// emitOneOrList prints v, a T or a []T, with p (emit).
func emitOneOrList[T any](c *cli.Context, v any, p oneOrList[T]) error {
	switch v := v.(type) {
	case T:
		return emit(c, v, func(w *tabwriter.Writer) { p.fields(w, v) })
	case []T:
		return emit(c, v, func(w *tabwriter.Writer) {
			row(w, p.header...)
			for _, one := range v {
				row(w, p.row(one)...)
			}
		})
	}
	return fmt.Errorf("internal error: cannot print a %T", v)
}

// printResult prints what a library call returns, v with print, or
// returns its error: `return printResult(c, emitVolumes)(st.Volume(...))`.
func printResult[T any](c *cli.Context, print func(*cli.Context, T) error) func(v T, err error) error {
	return func(v T, err error) error {
		if err != nil {
			return err
		}
		return print(c, v)
	}
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

// bar is a one-line progress display: done, total, rate and ETA, redrawn
// at most ten times a second. (A library bar cost every strata command
// 0.6 ms of start-up.)
type bar struct {
	what        string
	total, done int64
	start, last time.Time
}

func (p *bar) Start(total int64, what string) {
	p.what, p.total, p.start = what, total, time.Now()
}

func (p *bar) Add(n int64) {
	p.done += n
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.draw()
	}
}

func (p *bar) draw() {
	el := time.Since(p.start).Seconds()
	rate := float64(p.done) / max(el, 1e-3)
	pct, eta := 100.0, "0s"
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
		if rate > 0 {
			eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
		}
	}
	fmt.Fprintf(os.Stderr, "\r\033[K%s %5.1f%% %s/%s %s/s ETA %s", p.what, pct,
		storage.FormatSize(p.done), storage.FormatSize(p.total), storage.FormatSize(int64(rate)), eta)
}

func (p *bar) Done() {
	p.draw()
	fmt.Fprintln(os.Stderr)
}

// reported logs what a command deleted or wrote when it prints nothing
// on stdout (a delete, a backup): its one line on stderr. The libraries
// log their own steps at debug only; the command says what was done.
// kv are field pairs (name, value), as the line's key=value fields.
func reported(err error, msg string, kv ...string) error {
	if err != nil {
		return err
	}
	ev := log.Info()
	for i := 0; i+1 < len(kv); i += 2 {
		ev = ev.Str(kv[i], kv[i+1])
	}
	ev.Msg(msg)
	return nil
}
