package main

import "github.com/urfave/cli/v2"

// goldenCommand is filled in by the golden-image work (issue 4).
func goldenCommand() *cli.Command {
	return &cli.Command{Name: "golden", Usage: "golden images: frozen templates to clone guests from", Hidden: true}
}

// cloneCommand is filled in by the golden-image work (issue 4).
func cloneCommand() *cli.Command {
	return &cli.Command{Name: "clone", Usage: "clone a golden image into new guests or volumes", Hidden: true}
}

// flattenCommand is the "flatten" subcommand of volume (guest=false) and
// guest (guest=true); filled in by the golden-image work (issue 4).
func flattenCommand(guest bool) *cli.Command {
	return &cli.Command{Name: "flatten", Usage: "detach linked clones from their golden image", Hidden: true}
}
