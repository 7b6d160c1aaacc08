//go:build strata_man

package main

import (
	"fmt"
	"os"
)

// The man page: built only by `make man` (go run -tags strata_man
// ./cmd/strata __man), so that urfave/cli's generator and its markdown
// library, which every command would pay for at start-up, stay out of
// the strata binary.
func init() {
	if len(os.Args) != 2 || os.Args[1] != "__man" {
		return
	}
	app := newApp()
	withUsageErrors(app.Commands)
	page, err := app.ToManWithSection(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata: man page:", err)
		os.Exit(1)
	}
	fmt.Print(page)
	os.Exit(0)
}
